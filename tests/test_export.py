"""vlkit -> transformers' LLaVA -> vlkit: equal logits (fp32, atol 1e-5) wherever the architecture is LLaVA's,
a refusal naming every reason where it is not, adapters merged on export, and the connector alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.helpers import malicious_checkpoint, run_tool
from vlkit.config import load_config
from vlkit.engine import CheckpointLoadError
from vlkit.engine.checkpoint import load_parts
from vlkit.inference import chat_prompt, load_model
from vlkit.models.hf_llava import llava_blockers, llava_parts, load_from_llava, to_llava, write_legacy_layout
from vlkit.models.training import merge_lora
from vlkit.registry import MODELS
from vlkit.testing import TEXTS, TINY_IMAGE_SIZE, text_batch, tiny_language_model, tiny_model_cfg

ROOT = Path(__file__).resolve().parents[1]
TOL = dict(atol=1e-5, rtol=0)  # fp32; the logits come out bit-equal here
TOWERS = {  # a CLS token (LLaVA's 'default' selection drops it) and none ('full')
    'clip': dict(model_type='clip_vision_model', projection_dim=16),
    'siglip': dict(model_type='siglip_vision_model', vision_use_head=False),
}


def _tower(kind: str, layer: int | None = -2) -> dict:
    model = dict(
        TOWERS[kind], hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=TINY_IMAGE_SIZE, patch_size=8,
    )  # fmt: skip
    return dict(type='HFVisionEncoder', model=model, layer=layer)


def _model(root: str, kind: str = 'clip', seed: int = 0, **changes):
    cfg = tiny_model_cfg(root)
    cfg.update(vision_encoder=_tower(kind), connector=dict(type='MLPProjector', depth=2))
    cfg.update(changes)
    torch.manual_seed(seed)
    model = MODELS.build(cfg).eval()
    with torch.no_grad():  # biases start at zero: make every weight count
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return model


def llava_inputs(batch: dict, image_token_id: int, num_tokens: int) -> dict:
    """The batch as HF LLaVA reads it: each <image> repeated once per visual token, right-padded."""
    rows = []
    for ids, mask in zip(batch['input_ids'].tolist(), batch['attention_mask'].tolist(), strict=True):
        real = [t for t, m in zip(ids, mask, strict=True) if m]
        rows.append([u for t in real for u in ([t] * num_tokens if t == image_token_id else [t])])
    width = max(map(len, rows))
    input_ids = torch.zeros(len(rows), width, dtype=torch.long)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        input_ids[i, : len(row)], attention_mask[i, : len(row)] = torch.tensor(row), 1
    return dict(input_ids=input_ids, attention_mask=attention_mask, pixel_values=batch['images'])


def assert_same_logits(model, llava, batch: dict) -> None:
    inputs = llava_inputs(
        batch, model.language_model.image_token_id, model.vision_encoder.num_tokens(model.image_size)
    )
    with torch.no_grad():
        ours = model(**batch, mode='tensor')
        theirs = llava(**inputs).logits
    real = inputs['attention_mask'].bool()
    assert ours.shape[:2] == theirs.shape[:2]
    torch.testing.assert_close(theirs[real], ours[real], **TOL)


@pytest.mark.parametrize('kind', sorted(TOWERS))
def test_a_llava_shaped_model_and_its_hf_llava_give_the_same_logits(kind, synthetic_root):
    model = _model(synthetic_root, kind)
    llava = to_llava(model)
    assert llava.config.vision_feature_select_strategy == ('default' if kind == 'clip' else 'full')
    assert_same_logits(model, llava, text_batch(model, TEXTS))


@pytest.mark.parametrize('kind', sorted(TOWERS))
def test_hf_llava_imported_into_vlkit_gives_its_logits(kind, synthetic_root):
    llava = to_llava(_model(synthetic_root, kind, seed=1))
    parts = llava_parts(llava.config, tiny_language_model(synthetic_root)['tokenizer'])
    imported = MODELS.build(dict(type='VisionLanguageModel', **parts)).eval()
    load_from_llava(imported, llava)
    assert_same_logits(imported, llava, text_batch(imported, TEXTS, seed=3))


def test_lora_adapters_are_merged_into_the_export(synthetic_root):
    lora = dict(train='lora', lora=dict(r=2, lora_alpha=4))
    model = _model(synthetic_root, language_model={**tiny_language_model(synthetic_root), **lora})
    assert 'LoRA adapters: merge them first' in llava_blockers(model)[-1]
    batch = text_batch(model, TEXTS)
    with torch.no_grad():
        before = model(**batch, mode='tensor')
        merge_lora(model.language_model)
        torch.testing.assert_close(model(**batch, mode='tensor'), before, **TOL)
    assert_same_logits(model, to_llava(model), batch)


def test_what_hf_llava_cannot_express_is_refused_with_every_reason(synthetic_root):
    cfg = tiny_model_cfg(synthetic_root, connector=dict(type='PerceiverResampler', num_latents=4, depth=1))
    cfg['fusion'] = dict(type='CrossAttentionFusion', every=1, num_heads=2, head_dim=8)
    reasons = llava_blockers(MODELS.build(cfg))
    assert len(reasons) == 3, reasons
    assert 'TimmVisionEncoder' in reasons[0] and 'PerceiverResampler' in reasons[1]
    assert 'CrossAttentionFusion' in reasons[2]
    post_norm = _model(synthetic_root, vision_encoder=_tower('siglip', layer=None))
    with pytest.raises(ValueError, match=r'vision_encoder.layer=None .* post-LayerNorm last_hidden_state'):
        to_llava(post_norm)
    linear = _model(synthetic_root, connector=dict(type='LinearProjector'))
    assert 'depth 2' in llava_blockers(linear)[0]
    crops = dict(type='PreparedShards', anyres=dict(grids=[(1, 2)], global_view=True))
    with pytest.raises(ValueError, match=r"the training data crops each image \(anyres=\{'grids'"):
        to_llava(_model(synthetic_root), [dict(type='PreparedShards'), crops])


def test_the_legacy_layout_renames_the_tower_in_every_shard_and_the_index(tmp_path):
    from safetensors.torch import load_file, save_file

    save_file(
        {'vision_tower.embeddings.w': torch.ones(1), 'lm_head.weight': torch.ones(1)},
        tmp_path / 'a.safetensors',
    )
    save_file({'vision_tower.vision_model.post.w': torch.zeros(1)}, tmp_path / 'b.safetensors')
    index = {'vision_tower.embeddings.w': 'a.safetensors', 'lm_head.weight': 'a.safetensors'}
    index['vision_tower.vision_model.post.w'] = 'b.safetensors'
    (tmp_path / 'model.safetensors.index.json').write_text(json.dumps({'metadata': {}, 'weight_map': index}))
    (tmp_path / 'tokenizer_config.json').write_text(json.dumps({'tokenizer_class': 'TokenizersBackend'}))
    write_legacy_layout(str(tmp_path), 'clip_vision_model')
    assert sorted(load_file(tmp_path / 'a.safetensors')) == [
        'lm_head.weight',
        'vision_tower.vision_model.embeddings.w',
    ]
    assert sorted(load_file(tmp_path / 'b.safetensors')) == ['vision_tower.vision_model.post.w']
    assert json.loads((tmp_path / 'model.safetensors.index.json').read_text())['weight_map'] == {
        'vision_tower.vision_model.embeddings.w': 'a.safetensors',
        'lm_head.weight': 'a.safetensors',
        'vision_tower.vision_model.post.w': 'b.safetensors',
    }
    assert json.loads((tmp_path / 'tokenizer_config.json').read_text()) == {
        'tokenizer_class': 'PreTrainedTokenizerFast'
    }
    save_file({'vision_tower.embeddings.w': torch.ones(1)}, tmp_path / 'a.safetensors')
    write_legacy_layout(str(tmp_path), 'dinov2')  # a tower that never had a vision_model: unchanged
    assert sorted(load_file(tmp_path / 'a.safetensors')) == ['vision_tower.embeddings.w']


# -- the tools, as a user runs them -------------------------------------------------------------------------


def _config(tmp_path: Path, synthetic_root: str, layer: int | None = -2) -> str:
    path = tmp_path / 'llava_tiny.py'
    llm = tiny_language_model(synthetic_root)
    path.write_text(
        f'_base_ = [{str(ROOT / "configs" / "llava_mlp.py")!r}]\n'
        f'data_root = {synthetic_root!r}\n'
        f'image_size = {TINY_IMAGE_SIZE}\n'
        'encoder_pretraining = None\n'
        f'vision_encoder = dict(_delete_=True, **{_tower("clip", layer)!r})\n'
        f'language_model = dict(_delete_=True, **{llm!r})\n'
    )
    return str(path)


def _checkpoint(config: str, tmp_path: Path, **changes) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(0)
    model = MODELS.build(load_config(config, changes).model).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn_like(param))
    path = str(tmp_path / 'iter_1.pth')
    torch.save(dict(state_dict=model.state_dict()), path)
    return model, path


@pytest.mark.slow
def test_export_to_hf_llava_and_import_back_keep_the_logits(synthetic_root, tmp_path):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    config = _config(tmp_path, synthetic_root)
    model, checkpoint = _checkpoint(config, tmp_path)
    out, back = tmp_path / 'hf', tmp_path / 'back'
    run_tool('export.py', config, checkpoint, '--to', 'hf-llava', str(out))
    assert sorted(p.name for p in out.glob('*.safetensors')) == ['model.safetensors']
    from safetensors import safe_open

    with safe_open(out / 'model.safetensors', 'pt') as f:  # the published checkpoints' layout
        tower = [k for k in f.keys() if k.startswith('vision_tower.')]
    assert tower and all(k.startswith('vision_tower.vision_model.') for k in tower)
    assert (
        json.loads((out / 'tokenizer_config.json').read_text())['tokenizer_class']
        == 'PreTrainedTokenizerFast'
    )
    llava = LlavaForConditionalGeneration.from_pretrained(out).eval()  # transformers 5 reads that layout
    batch = text_batch(model, TEXTS)
    assert_same_logits(model, llava, batch)

    processor = AutoProcessor.from_pretrained(out)
    from PIL import Image

    image = Image.fromarray((255 * torch.rand(40, 50, 3)).byte().numpy())
    inputs = processor(text='<image>\nwhat is it ?', images=image, return_tensors='pt')
    assert (inputs['input_ids'] == llava.config.image_token_id).sum() == model.vision_encoder.num_tokens(32)
    question = [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'what is it ?'}]}]
    prompt = processor.apply_chat_template(question, add_generation_prompt=True)  # the training's template
    ids = processor(text=prompt, images=image, return_tensors='pt')['input_ids'][0].tolist()
    image_id = llava.config.image_token_id
    collapsed = [t for i, t in enumerate(ids) if t != image_id or i == 0 or ids[i - 1] != image_id]
    assert collapsed == chat_prompt(model.tokenizer, 'what is it ?', 'vlkit')
    from vlkit.data.transforms import image_to_tensor

    torch.testing.assert_close(inputs['pixel_values'][0], image_to_tensor(image, 32), atol=2e-2, rtol=0)

    run_tool('import_hf.py', 'hf-llava', str(out), '--out', str(back))
    imported = load_model(str(back / 'config.py'), str(back / 'model.pth'))
    with torch.no_grad():
        torch.testing.assert_close(imported(**batch, mode='tensor'), model(**batch, mode='tensor'), **TOL)
    assert imported.image_processor == {  # the processor's preprocessing, declared by the imported encoder
        'mean': (0.5, 0.5, 0.5), 'std': (0.5, 0.5, 0.5), 'size': 32, 'resample': 'bicubic',
        'shortest_edge': None, 'pad': False,
    }  # fmt: skip


def test_an_import_runs_at_its_processors_size_with_its_preprocessing():
    """A LLaVA whose tower config says 518 px (DINOv2's) but whose processor crops 112 px runs at 112 in
    vlkit, normalised as the processor normalises."""
    from transformers import LlavaConfig

    config = LlavaConfig(
        vision_config=dict(
            model_type='dinov2', image_size=518, patch_size=14, hidden_size=32, num_attention_heads=2
        ),
        text_config=dict(model_type='llama', hidden_size=48, num_attention_heads=2, num_key_value_heads=2),
        vision_feature_layer=-2,
    )
    processor = dict(
        do_center_crop=True, crop_size={'height': 112, 'width': 112}, size={'shortest_edge': 128}, resample=3,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], do_pad=False,
    )  # fmt: skip
    parts = llava_parts(config, 'tok', processor)
    assert parts['image_size'] == 112 and llava_parts(config, 'tok')['image_size'] == 518
    assert parts['vision_encoder']['preprocessing'] == {
        'mean': (0.485, 0.456, 0.406), 'std': (0.229, 0.224, 0.225), 'size': 112, 'resample': 'bicubic',
        'shortest_edge': 128,
    }  # fmt: skip


@pytest.mark.slow
def test_the_export_tool_refuses_naming_the_reason(synthetic_root, tmp_path):
    config = _config(tmp_path, synthetic_root, layer=None)
    _, checkpoint = _checkpoint(config, tmp_path)
    result = run_tool('export.py', config, checkpoint, '--to', 'hf-llava', str(tmp_path / 'hf'), check=False)
    assert result.returncode != 0
    assert (
        f'export stopped: {config}: HF LLaVA cannot express this model: vision_encoder.layer=None'
        in result.stderr
    )
    assert '`--to connector` exports the connector alone' in result.stderr
    assert not (tmp_path / 'hf').exists()


@pytest.mark.slow
def test_the_connector_export_is_what_load_parts_loads(synthetic_root, tmp_path):
    config = _config(tmp_path, synthetic_root)
    model, checkpoint = _checkpoint(config, tmp_path)
    out = tmp_path / 'connector'
    run_tool('export.py', config, checkpoint, '--to', 'connector', str(out))
    assert sorted(p.name for p in out.iterdir()) == ['config.json', 'connector.safetensors']
    fresh = MODELS.build(load_config(config).model)
    load_parts(fresh, dict(connector=str(out)))
    for key, value in model.connector.state_dict().items():
        assert torch.equal(fresh.connector.state_dict()[key], value), key

    other = MODELS.build(
        load_config(config, {'connector': dict(_delete_=True, type='LinearProjector')}).model
    )
    with pytest.raises(
        CheckpointLoadError, match=r"load_parts.connector=.* holds a MLPProjector, but the model's"
    ):
        load_parts(other, dict(connector=str(out)))
    with pytest.raises(
        CheckpointLoadError, match=r'load_parts.vision_encoder=.* is an export of the connector'
    ):
        load_parts(fresh, dict(vision_encoder=str(out)))
    wide = MODELS.build(load_config(config, {'connector.hidden_dim': 64}).model)
    with pytest.raises(CheckpointLoadError, match=r'load_parts.connector=.* has weights of another shape'):
        load_parts(wide, dict(connector=str(out)))


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['export.py', 'import_hf.py'])  # chat.py loads as export.py does
def test_a_checkpoint_that_would_run_code_is_refused_by_the_new_tools(tool, synthetic_root, tmp_path):
    marker = tmp_path / 'ran'
    config = _config(tmp_path, synthetic_root)
    if tool == 'import_hf.py':  # an HF LLaVA directory whose weights are a pickle, read weights-only
        folder = tmp_path / 'llava'
        model = MODELS.build(load_config(config).model)
        to_llava(model).config.save_pretrained(folder)
        model.tokenizer.save_pretrained(folder)
        malicious_checkpoint(folder / 'pytorch_model.bin', marker)
        args = ['hf-llava', str(folder), '--out', str(tmp_path / 'out')]
    else:
        checkpoint = malicious_checkpoint(tmp_path / 'model.pth', marker)
        args = [config, checkpoint, '--to', 'connector', str(tmp_path / 'out')]
    result = run_tool(tool, *args, check=False)
    assert result.returncode != 0
    assert not marker.exists(), f'{tool} ran the code in the checkpoint'
    if tool != 'import_hf.py':
        assert 'refused to load' in result.stderr
