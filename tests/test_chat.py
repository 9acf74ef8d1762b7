"""One question about one image (vlkit.inference, tools/chat.py): the prompt through the tokenizer's chat
template or vlkit's format, the answer the model's greedy continuation, and the answer the docs show is the
one the documented command saved."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from PIL import Image

from tests.helpers import ROOT, run_tool
from vlkit.constants import IMAGE_TOKEN
from vlkit.data.templates import format_prompt
from vlkit.data.transforms import image_to_tensor
from vlkit.inference import (
    ask,
    chat_prompt,
    image_preprocessing,
    image_processor,
    load_model,
    training_template,
)
from vlkit.registry import MODELS
from vlkit.testing import CHATML, TINY_IMAGE_SIZE, tiny_model_cfg, tiny_options, tiny_overrides

sys.path.insert(0, str(ROOT / 'tools'))
import chat  # noqa: E402


@pytest.fixture(scope='module')
def model(synthetic_root):
    torch.manual_seed(0)
    return MODELS.build(tiny_model_cfg(synthetic_root)).eval()


def test_without_a_chat_template_the_prompt_is_vlkits_format(model):
    tokenizer = model.tokenizer
    expected = tokenizer(format_prompt(f'{IMAGE_TOKEN}\nwhat colour is it ?'), add_special_tokens=False)[
        'input_ids'
    ]
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    assert chat_prompt(tokenizer, 'what colour is it ?') == bos + expected


def test_with_a_chat_template_the_prompt_is_the_templates(model):
    tokenizer = model.tokenizer
    tokenizer.chat_template = CHATML
    try:
        ids = chat_prompt(tokenizer, 'what colour is it ?')
    finally:
        tokenizer.chat_template = None
    rendered = f'<|im_start|>user\n{IMAGE_TOKEN}\nwhat colour is it ?<|im_end|>\n<|im_start|>assistant\n'
    assert ids == tokenizer(rendered, add_special_tokens=False)['input_ids']
    assert ids.count(model.language_model.image_token_id) == 1


def test_the_answer_is_the_models_greedy_continuation(model):
    image = Image.fromarray((255 * torch.rand(48, 40, 3)).byte().numpy())
    ids = torch.tensor([chat_prompt(model.tokenizer, 'what shape is it ?')])
    out = model.generate_ids(
        image_to_tensor(image, TINY_IMAGE_SIZE)[None], ids, torch.ones_like(ids), max_new_tokens=5
    )
    expected = model.tokenizer.decode(out[0], skip_special_tokens=True).strip()
    assert ask(model, image, 'what shape is it ?', max_new_tokens=5) == expected


def test_the_prompt_is_written_in_the_template_the_model_trained_with(model, monkeypatch):
    def trained_on(*templates):
        sources = [dict(name=f's{i}', weight=1, dataset=dict(template=t)) for i, t in enumerate(templates)]
        return {'train_dataloader': {'dataset': dict(type='MixtureDataset', sources=sources)}}

    assert training_template(trained_on('vicuna_v1', 'vicuna_v1')) == 'vicuna_v1'
    assert training_template({'train_dataloader': {'dataset': {}}}) == 'vlkit'  # the datasets' default
    assert training_template(trained_on('plain', 'vicuna_v1')) is None and training_template({}) is None
    seen = []
    monkeypatch.setattr(
        model, 'generate_ids', lambda pixels, ids, *a, **k: seen.append(ids[0].tolist()) or ids
    )
    monkeypatch.setattr(model, 'template', 'plain', raising=False)
    image = Image.fromarray((255 * torch.rand(16, 16, 3)).byte().numpy())
    ask(model, image, 'what colour ?')
    assert (
        seen[-1]
        == chat_prompt(model.tokenizer, 'what colour ?', 'plain')
        != chat_prompt(model.tokenizer, 'x')
    )
    ask(model, image, 'what colour ?', template='vlkit')  # named: it wins
    assert seen[-1] == chat_prompt(model.tokenizer, 'what colour ?', 'vlkit')


def test_the_image_is_normalised_as_the_encoder_declares(model, monkeypatch, tmp_path):
    (tmp_path / 'preprocessor_config.json').write_text(
        json.dumps({'image_mean': [0.485, 0.456, 0.406], 'image_std': [0.229, 0.224, 0.225], 'resample': 2})
    )
    cfg = {
        'model': {
            'vision_encoder': {'type': 'HFVisionEncoder', 'pretrained': str(tmp_path)},
            'image_size': 16,
        }
    }
    processor = image_processor(cfg)
    assert processor['mean'] == (0.485, 0.456, 0.406) and processor['resample'] == 'bilinear'
    assert image_preprocessing(cfg) == {
        'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225), 'size': 16, 'resample': 2,
        'shortest_edge': None, 'pad': False,  # resized whole: no centre crop declared; no padding
    }  # fmt: skip
    assert image_processor({'model': {'vision_encoder': {'type': 'TinyViT'}}}) is None  # vlkit's default

    seen = []
    monkeypatch.setattr(
        model, 'generate_ids', lambda pixels, *a, **k: seen.append(pixels) or torch.zeros(1, 0)
    )
    monkeypatch.setattr(model, 'image_processor', processor, raising=False)
    image = Image.fromarray((255 * torch.rand(48, 40, 3)).byte().numpy())
    ask(model, image, 'what colour ?')
    assert torch.equal(seen[0][0], image_to_tensor(image, TINY_IMAGE_SIZE, processor))


@pytest.mark.slow
def test_the_tool_answers_what_the_python_api_answers(synthetic_root, tmp_path):
    config = str(ROOT / 'configs' / 'llava_mlp.py')
    options = tiny_options(synthetic_root, 2)
    torch.manual_seed(0)  # random weights: an answer of random words, not an empty one
    checkpoint = str(tmp_path / 'iter_0.pth')
    torch.save(dict(state_dict=load_model(config, None, options).state_dict()), checkpoint)
    image = tmp_path / 'photo.png'
    Image.fromarray((255 * torch.rand(48, 40, 3)).byte().numpy()).save(image)
    overrides = tiny_overrides(synthetic_root, str(tmp_path), 2)[2:]  # --cfg-options ...
    result = run_tool(
        'chat.py', config, checkpoint, '--image', str(image), '--prompt', 'what colour ?', *overrides
    )
    answer = ask(load_model(config, checkpoint, options), str(image), 'what colour ?')
    assert answer and result.stdout.rstrip('\n').split('\n')[-1] == answer


@pytest.mark.parametrize('template', ['chat', 'vlkit'])
def test_the_docs_show_the_saved_answers(template):
    name = f'chat_small_stage1_{template}'
    record = json.loads((ROOT / 'docs' / 'results' / f'{name}.json').read_text())
    assert record['template'] == template
    block = chat.results.render_chat_answer(record)
    assert (
        f'<!-- results:{name} -->\n{block}\n<!-- /results:{name} -->'
        in (ROOT / 'docs' / 'training.md').read_text()
    )
    assert f'> {record["answer"]}' in block
