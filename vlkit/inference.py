"""A trained model from its config and checkpoint, and one question about one image.

>>> from vlkit.inference import ask, load_model
>>> model = load_model('configs/llava15/small_stage1_align.py', 'work_dirs/small_stage1_align/iter_60.pth')
>>> ask(model, 'photo.png', 'What is in the image?')

``tools/chat.py`` is the same on the command line, and ``tools/export.py`` builds its models with
:func:`load_model`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from PIL import Image

from .config import declared_preprocessing, load_config
from .constants import IMAGE_TOKEN
from .data.chat import ChatTokenizer, check_template
from .data.templates import format_prompt
from .data.transforms import MEAN, RESAMPLE, STD, image_to_tensor, resolve_image_processor, shortest_edge_for
from .engine import PRETRAINING_STAGES, ensure_packaged_weights, load_checkpoint_file
from .engine.checkpoint import check_state_dict
from .registry import MODELS


def load_model(config, checkpoint: str | None = None, cfg_options: dict | None = None):
    """The config's model with the checkpoint's weights (every weight, strictly), in eval mode on the CPU;
    its ``image_processor`` is what the config's datasets normalise images with (:func:`image_processor`).

    Args:
        config: a config file or a loaded config.
        checkpoint: a vlkit checkpoint (read weights-only); ``None`` keeps the weights the config builds.
        cfg_options: overrides, as ``tools/train.py --cfg-options`` takes them.
    """
    cfg = load_config(config, cfg_options) if isinstance(config, str) else config
    if checkpoint is not None:
        for stage in PRETRAINING_STAGES:  # the checkpoint holds the parts' weights too
            cfg[stage] = None
    ensure_packaged_weights(cfg)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        loaded = load_checkpoint_file(checkpoint)
        state = loaded.get('state_dict', loaded)
        check_state_dict(model.state_dict(), state, checkpoint)
        model.load_state_dict(state)
    model.image_processor = image_processor(cfg)
    model.template = training_template(cfg)
    return model.eval()


def image_processor(cfg: Mapping) -> dict | None:
    """What ``cfg``'s datasets preprocess images with (``load_config`` hands them the same): the encoder's
    declared preprocessing, checked, and the training data's padding to a square (where every training
    dataset pads: LLaVA-1.5's stage 2); ``None`` for vlkit's default (mean and std 0.5, bicubic)."""
    padded = [bool(d.get('pad_to_square', False)) for d in training_datasets(cfg)]
    pad = bool(padded) and all(padded)
    return resolve_image_processor(declared_preprocessing(cfg['model']['vision_encoder']), pad_to_square=pad)


def training_datasets(cfg: Mapping) -> list[Mapping]:
    """The dataset configs that ``cfg`` trains on: ``train_dataloader.dataset``, or a mixture's sources."""
    found, todo = [], [((cfg.get('train_dataloader') or {}).get('dataset'))]
    while todo:
        dataset = todo.pop(0)
        if isinstance(dataset, Mapping) and 'sources' in dataset:
            todo.extend(source.get('dataset') for source in dataset['sources'])
        elif isinstance(dataset, Mapping):
            found.append(dataset)
    return found


def training_template(cfg: Mapping) -> str | None:
    """The chat template (a dataset's ``template``) that every training dataset of ``cfg`` uses; ``None``
    where they differ or there are none."""
    templates = {d.get('template', 'vlkit') for d in training_datasets(cfg)}
    return templates.pop() if len(templates) == 1 else None


def image_preprocessing(cfg: Mapping) -> dict:
    """:func:`image_processor` in full, for another library's processor: ``mean``, ``std``, ``size`` (the
    model's ``image_size``), ``resample`` (a PIL filter number), ``shortest_edge`` (``None``: the image
    is resized to ``size`` whole; else its shortest edge, then the centre cropped) and ``pad`` (padded to a
    square in the mean colour first)."""
    processor = image_processor(cfg) or {}
    return dict(
        mean=tuple(processor.get('mean', (MEAN,) * 3)),
        std=tuple(processor.get('std', (STD,) * 3)),
        size=cfg['model']['image_size'],
        resample=int(RESAMPLE[processor.get('resample', 'bicubic')]),
        shortest_edge=shortest_edge_for(processor, cfg['model']['image_size']),
        pad=bool(processor.get('pad', False)),
    )


def prompt_template(tokenizer, template: str | None = None, trained: str | None = None) -> str:
    """The template a prompt is written in: ``template``, else the one the model trained with
    (``trained``: :func:`training_template`), else the tokenizer's chat template where it has one, else
    vlkit's prompt format."""
    return template or trained or ('chat' if getattr(tokenizer, 'chat_template', None) else 'vlkit')


def chat_prompt(tokenizer, prompt: str, template: str | None = None) -> list[int]:
    """Token ids of a user turn with one image and ``prompt``, ready for the answer.

    Args:
        template: a dataset's ``template`` (:mod:`vlkit.data.chat`): ``'vlkit'``, vlkit's prompt format;
            ``'chat'``, the tokenizer's own chat template; ``'plain'`` or ``'vicuna_v1'``, LLaVA's (the ids
            its training gives). ``None``: as :func:`prompt_template` chooses.
    """
    template = prompt_template(tokenizer, template)
    text = f'{IMAGE_TOKEN}\n{prompt}'
    if template != 'vlkit':
        check_template(template, tokenizer)  # names the templates there are
        messages = [{'role': 'user', 'content': text}, {'role': 'assistant', 'content': ''}]
        return ChatTokenizer(tokenizer, template)(messages, 'prompt', for_generation=True)['input_ids']
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    return bos + tokenizer(format_prompt(text), add_special_tokens=False)['input_ids']


@torch.no_grad()
def ask(
    model, image: Image.Image | str, prompt: str, max_new_tokens: int = 48, template: str | None = None
) -> str:
    """The model's greedy answer to ``prompt`` about ``image`` (a PIL image or a file), the image
    preprocessed and the prompt written as the model's training data were (``model.image_processor`` and
    ``model.template``, which :func:`load_model` sets; vlkit's default without them); ``template`` as
    :func:`chat_prompt` takes it, to write the prompt otherwise."""
    if isinstance(image, str):
        image = Image.open(image)
    pixels = image_to_tensor(image, model.image_size, getattr(model, 'image_processor', None))[None]
    template = prompt_template(model.tokenizer, template, getattr(model, 'template', None))
    ids = torch.tensor([chat_prompt(model.tokenizer, prompt, template)])
    out = model.generate_ids(pixels, ids, torch.ones_like(ids), max_new_tokens=max_new_tokens)
    return model.tokenizer.decode(out[0], skip_special_tokens=True).strip()
