"""A vlkit model as transformers' ``LlavaForConditionalGeneration``, and back.

HF LLaVA is: a vision tower read at one of its ``hidden_states`` (the first token dropped with
``vision_feature_select_strategy='default'``, none with ``'full'``), a projector of two Linear layers with an
activation between (``linear_1``: vision width -> text width, ``linear_2``: text width -> text width), and a
causal LM whose ``<image>`` positions (one per visual token) take the projected tokens. A vlkit model is
that exactly when it has an :class:`~vlkit.models.encoders.HFVisionEncoder` with a ``layer`` and at most one
prefix (CLS) token, an ``MLPProjector`` of depth 2 and hidden width = output width, the fully autoregressive
fusion, an :class:`~vlkit.models.llms.HFCausalLM`, and no any-resolution crop separator.
:func:`llava_blockers` names every way a model is not; :func:`to_llava` refuses such a model with them.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from ..constants import IMAGE_TOKEN
from .encoders import HFVisionEncoder
from .encoders.hf_encoder import preprocessing_of
from .fusion import AutoregressiveFusion
from .llms import HFCausalLM
from .training import has_lora

PROJECTOR_ACTS = {nn.GELU: 'gelu', nn.ReLU: 'relu', nn.SiLU: 'silu'}  # vlkit's MLP activations in HF's names
LEGACY_TOWER = 'vision_tower.vision_model.'  # where published LLaVA checkpoints keep a CLIP/SigLIP tower
CONFIG_BOOKKEEPING = ('transformers_version', '_name_or_path', 'architectures', 'dtype', 'torch_dtype')


def num_prefix_tokens(encoder: HFVisionEncoder, image_size: int) -> int:
    """How many tokens (CLS, registers) the tower puts before its patch tokens (a blank image's forward)."""
    with torch.no_grad():
        pixels = torch.zeros(1, 3, image_size, image_size, device=next(encoder.parameters()).device)
        out = encoder.model(pixel_values=pixels, output_hidden_states=True)
    return out.hidden_states[-1].shape[1] - encoder.num_tokens(image_size)


def _projector_act(connector: nn.Module) -> str | None:
    layers = list(getattr(connector, 'net', []))
    return PROJECTOR_ACTS.get(type(layers[1])) if len(layers) == 3 else None


def llava_blockers(model: nn.Module) -> list[str]:
    """Every reason why HF LLaVA cannot express ``model`` (empty: it can)."""
    encoder, connector, llm = model.vision_encoder, model.connector, model.language_model
    found = []
    if not isinstance(encoder, HFVisionEncoder):
        found.append(
            f'the vision encoder is a {type(encoder).__name__}; HF LLaVA takes a Hugging Face vision tower'
        )
    elif encoder.layer is None:
        found.append(
            "vision_encoder.layer=None reads the tower's final, post-LayerNorm last_hidden_state, which HF "
            'LLaVA cannot select (it reads hidden_states[vision_feature_layer]); set a layer, e.g. -1 or -2'
        )
    elif num_prefix_tokens(encoder, model.image_size) not in (0, 1):
        found.append('the vision tower puts more than one token before its patch tokens (registers?)')
    if type(connector).__name__ != 'MLPProjector' or _projector_act(connector) is None:
        found.append(
            f"the connector is a {type(connector).__name__}; HF LLaVA's projector is an MLPProjector of "
            'depth 2 (Linear, activation, Linear)'
        )
    elif connector.net[0].out_features != connector.out_dim:
        found.append("the MLPProjector's hidden width differs from its output width; HF LLaVA's are equal")
    if not isinstance(model.fusion, AutoregressiveFusion):
        found.append(f'the fusion is a {type(model.fusion).__name__}; HF LLaVA splices visual tokens')
    if getattr(model, 'crop_separator', None) is not None:
        found.append('crop_separator: HF LLaVA has no learned vector between any-resolution crops')
    if not isinstance(llm, HFCausalLM):
        found.append(f'the language model is a {type(llm).__name__}; HF LLaVA takes a Hugging Face causal LM')
    if has_lora(model):
        found.append(
            'LoRA adapters: merge them first (vlkit.models.training.merge_lora; tools/export.py does)'
        )
    return found


def llava_config(model: nn.Module):
    """The ``LlavaConfig`` of a model that :func:`llava_blockers` passes."""
    from transformers import LlavaConfig

    encoder, llm = model.vision_encoder, model.language_model
    prefix = num_prefix_tokens(encoder, model.image_size)
    return LlavaConfig(
        vision_config=encoder.config.to_dict(),
        text_config=llm.model.config.to_dict(),
        image_token_id=llm.image_token_id,
        image_seq_length=encoder.num_tokens(model.image_size),
        projector_hidden_act=_projector_act(model.connector),
        vision_feature_select_strategy='default' if prefix else 'full',
        vision_feature_layer=encoder.layer,
        multimodal_projector_bias=True,
        tie_word_embeddings=llm.model.config.tie_word_embeddings,
    )


def _tower_module(tower: nn.Module, like: nn.Module) -> nn.Module:
    """The module of HF LLaVA's vision tower whose weights ``like`` (a vlkit encoder's model) has: the tower
    itself, or its ``vision_model`` when vlkit kept only that (a full CLIP or SigLIP checkpoint)."""
    inner = getattr(tower, 'vision_model', None)
    return inner if type(like) is not type(tower) and type(like) is type(inner) else tower


def _pairs(model: nn.Module, llava: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
    """(vlkit module, HF LLaVA module) pairs that hold the same weights under the same names."""
    hf_llm = model.language_model.model
    return [
        (model.vision_encoder.model, _tower_module(llava.model.vision_tower, model.vision_encoder.model)),
        (model.connector.net[0], llava.model.multi_modal_projector.linear_1),
        (model.connector.net[2], llava.model.multi_modal_projector.linear_2),
        (hf_llm.base_model, llava.model.language_model),
        (hf_llm.get_output_embeddings(), llava.lm_head),
    ]


def data_blockers(datasets: list) -> list[str]:
    """Every way the training data (dataset configs) feeds images that HF LLaVA's processor cannot."""
    crops = [d['anyres'] for d in datasets if d.get('anyres')]
    if crops:
        return [
            f'the training data crops each image (anyres={crops[0]}); HF LLaVA reads each image as one view '
            'resized whole'
        ]
    return []


def to_llava(model: nn.Module, datasets: list | None = None):
    """``model`` as a ``LlavaForConditionalGeneration`` with its weights (fp32, eval mode).

    Args:
        datasets: the configs of the datasets it trained on (checked by :func:`data_blockers`).

    Raises:
        ValueError: listing everything HF LLaVA cannot express (:func:`llava_blockers`,
            :func:`data_blockers`).
    """
    from transformers import LlavaForConditionalGeneration

    blockers = llava_blockers(model) + data_blockers(datasets or [])
    if blockers:
        raise ValueError('HF LLaVA cannot express this model: ' + '; '.join(blockers))
    llava = LlavaForConditionalGeneration(llava_config(model))
    for ours, theirs in _pairs(model, llava):
        theirs.load_state_dict(ours.state_dict(), strict=True)
    llava.generation_config = model.language_model.model.generation_config
    return llava.eval()


def write_legacy_layout(out: str, tower_type: str) -> None:
    """Rewrites an exported directory in the layout the published LLaVA checkpoints have, which every
    transformers version and vLLM read: transformers 5 saves a model built from its config with a CLIP or
    SigLIP tower's weights as ``vision_tower.embeddings.*`` (its own layout), where transformers 4, vLLM and
    llava-hf's checkpoints have ``vision_tower.vision_model.embeddings.*`` (transformers 5 reads both); and
    it names the tokenizer class ``TokenizersBackend``, which transformers 4 does not know
    (``PreTrainedTokenizerFast`` is the same class in both)."""
    from safetensors.torch import load_file, save_file

    folder = Path(out)
    if tower_type in ('clip_vision_model', 'siglip_vision_model'):
        names = {}
        for path in sorted(folder.glob('*.safetensors')):
            tensors = load_file(path)
            renamed = {_legacy_tower_name(k): v for k, v in tensors.items()}
            if list(renamed) != list(tensors):
                save_file(renamed, path, metadata={'format': 'pt'})
            names.update({k: _legacy_tower_name(k) for k in tensors})
        index = folder / 'model.safetensors.index.json'
        if index.is_file():
            data = json.loads(index.read_text())
            data['weight_map'] = {names.get(k, k): f for k, f in data['weight_map'].items()}
            index.write_text(json.dumps(data, indent=2))
    tokenizer_config = folder / 'tokenizer_config.json'
    if tokenizer_config.is_file():
        data = json.loads(tokenizer_config.read_text())
        if data.get('tokenizer_class') == 'TokenizersBackend':
            data['tokenizer_class'] = 'PreTrainedTokenizerFast'
            tokenizer_config.write_text(json.dumps(data, indent=2, ensure_ascii=False))


def _legacy_tower_name(key: str) -> str:
    if key.startswith('vision_tower.') and not key.startswith(LEGACY_TOWER):
        return LEGACY_TOWER + key[len('vision_tower.') :]
    return key


def hf_image_processor(preprocessing: dict):
    """transformers' image processor doing what vlkit's data pipeline does with ``preprocessing`` (``mean``,
    ``std``, ``size``, ``resample`` as a PIL filter number, ``shortest_edge``, ``pad``:
    :func:`vlkit.inference.image_preprocessing`): ``CLIPImageProcessor``, or ``LlavaImageProcessor`` with
    ``do_pad`` where the images were padded to a square in the mean colour (as LLaVA-1.5's stage 2)."""
    from transformers import CLIPImageProcessor, LlavaImageProcessor

    size, shortest_edge = preprocessing['size'], preprocessing.get('shortest_edge')
    settings = dict(
        do_resize=True,
        size={'shortest_edge': shortest_edge} if shortest_edge else {'height': size, 'width': size},
        resample=preprocessing['resample'],
        do_center_crop=bool(shortest_edge),
        crop_size={'height': size, 'width': size},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(preprocessing['mean']),
        image_std=list(preprocessing['std']),
        do_convert_rgb=True,
    )
    if preprocessing.get('pad'):
        return LlavaImageProcessor(do_pad=True, **settings)
    return CLIPImageProcessor(**settings)


def llava_processor(model: nn.Module, preprocessing: dict, chat_template: str | None):
    """The ``LlavaProcessor`` that turns an image and a prompt into what :func:`to_llava`'s model reads;
    ``preprocessing`` is the model's (:func:`hf_image_processor`), ``chat_template`` the Jinja of the
    template it trained with (:func:`vlkit.data.chat.jinja_template`)."""
    from transformers import LlavaProcessor

    encoder, tokenizer = model.vision_encoder, model.language_model.tokenizer
    image_processor = hf_image_processor(preprocessing)
    prefix = num_prefix_tokens(encoder, model.image_size)
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=encoder.config.patch_size,
        vision_feature_select_strategy='default' if prefix else 'full',
        chat_template=chat_template,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=prefix,
    )


def _model_dict(config) -> dict:
    """A transformers config as a vlkit part's ``model`` dict: what differs from the defaults, with the
    model type and the vocabulary size always written."""
    found = {k: v for k, v in config.to_diff_dict().items() if k not in CONFIG_BOOKKEEPING}
    found['model_type'] = config.model_type
    if hasattr(config, 'vocab_size'):
        found['vocab_size'] = config.vocab_size
    return found


def import_blockers(config, tokenizer) -> list[str]:
    """Every reason why vlkit cannot express an HF LLaVA of ``config`` (empty: it can)."""
    found = []
    if not isinstance(config.vision_feature_layer, int):
        found.append(f'vision_feature_layer={config.vision_feature_layer} concatenates layers')
    if not config.multimodal_projector_bias:
        found.append('multimodal_projector_bias=False: the MLPProjector has biases')
    if config.projector_hidden_act not in PROJECTOR_ACTS.values():
        found.append(
            f'projector_hidden_act={config.projector_hidden_act!r} (vlkit: {sorted(PROJECTOR_ACTS.values())})'
        )
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        found.append(f'the tokenizer has no {IMAGE_TOKEN!r} token')
    return found


def llava_parts(config, tokenizer_spec: str, processor: dict | None = None) -> dict:
    """The vlkit parts (top-level config keys) of an HF LLaVA of ``config``; ``processor``, its image
    processor's settings (``to_dict()``), gives the input size the model runs at (an export of a model
    trained below its tower's own size, e.g. DINOv2 at 112 px of 518) and the preprocessing the encoder
    declares."""
    encoder = dict(
        type='HFVisionEncoder', model=_model_dict(config.vision_config), layer=config.vision_feature_layer
    )
    image_size = config.vision_config.image_size
    if processor is not None:
        encoder['preprocessing'] = preprocessing_of(processor)
        size = encoder['preprocessing']['size']
        image_size = size if isinstance(size, int) else image_size
    return dict(
        image_size=image_size,
        vision_encoder=encoder,
        connector=dict(type='MLPProjector', depth=2, act=config.projector_hidden_act),
        language_model=dict(
            type='HFCausalLM', model=_model_dict(config.text_config), tokenizer=tokenizer_spec
        ),
        fusion=dict(type=AutoregressiveFusion.__name__),
    )


def load_from_llava(model: nn.Module, llava: nn.Module) -> None:
    """Copies an HF LLaVA's weights into a vlkit model built from :func:`llava_parts`, strictly; refuses a
    LLaVA whose selection of vision tokens vlkit would read differently."""
    prefix = num_prefix_tokens(model.vision_encoder, model.image_size)
    dropped = 1 if llava.config.vision_feature_select_strategy == 'default' else 0
    if prefix != dropped:
        raise ValueError(
            f'vision_feature_select_strategy={llava.config.vision_feature_select_strategy!r} drops {dropped} '
            f'token(s), but the tower puts {prefix} before its patch tokens, all of which vlkit drops'
        )
    for ours, theirs in _pairs(model, llava):
        ours.load_state_dict(theirs.state_dict(), strict=True)
