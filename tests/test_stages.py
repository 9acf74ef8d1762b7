"""Stages as configs: what each stage trains (profile-only builds of the papers' parts), per-part learning
rates and the effective batch, and stage 1 -> stage 2 run in sequence on tiny parts and test data: stage 2
starts from exactly stage 1's connector and trains the LLM (in full, and through LoRA); a LoRA run killed
and resumed ends bit-equal to a straight one."""

from __future__ import annotations

import os.path as osp
from pathlib import Path

import pytest
import torch
from mmengine.optim import build_optim_wrapper

from tests.helpers import kill_after, run_tool
from vlkit.analysis.profile import build_model
from vlkit.config import load_config
from vlkit.config_check import ConfigError, check_config
from vlkit.engine import CheckpointLoadError, build_runner, load_checkpoint_file
from vlkit.testing import TINY_IMAGE_SIZE, tiny_encoder, tiny_language_model

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
PARTS = ('vision_encoder', 'connector', 'language_model')
STAGES = {  # config: the parts it trains
    'llava15/stage1_align.py': {'connector'},
    'llava15/stage2_finetune.py': {'connector', 'language_model'},
    'llava15/stage2_finetune_lora.py': {'connector', 'language_model'},
    'llava15/stage2_finetune_encoder.py': {'vision_encoder', 'connector', 'language_model'},
    'prismatic/one_stage.py': {'connector', 'language_model'},
    'blip3/pretrain.py': {'connector', 'language_model'},
    'blip3/sft.py': {'connector', 'language_model'},
}
# Vicuna-7B's Linear layers per decoder layer (in, out): q, k, v, o, gate, up, down; 32 layers
VICUNA_LINEARS = [(4096, 4096)] * 4 + [(4096, 11008)] * 2 + [(11008, 4096)]


def _stage(config: str):
    return load_config(str(CONFIGS / config))


@pytest.fixture(scope='module')
def stage_models():
    """Profile-only builds (meta device, no files read) of every stage config."""
    return {config: build_model(_stage(config), profile_only=True) for config in STAGES}


def _trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@pytest.mark.parametrize('config', sorted(STAGES))
def test_each_stage_trains_exactly_its_parts(config, stage_models):
    model = stage_models[config]
    trains = {part for part in PARTS if _trainable(getattr(model, part))}
    assert trains == STAGES[config]


def test_llava_lora_adapts_every_linear_layer_of_vicuna_but_the_head(stage_models):
    llm = stage_models['llava15/stage2_finetune_lora.py'].language_model
    r = 128
    assert _trainable(llm) == 32 * sum(r * (i + o) for i, o in VICUNA_LINEARS)  # 319,815,680
    assert all('lora_' in n for n, p in llm.named_parameters() if p.requires_grad)


def _lrs(config: str, model) -> dict[str, set[float]]:
    wrapper = build_optim_wrapper(model, _stage(config).optim_wrapper)
    found = {part: set() for part in PARTS}
    ids = {id(p): part for part in PARTS for p in getattr(model, part).parameters()}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            if param.requires_grad and id(param) in ids:
                found[ids[id(param)]].add(group['lr'])
    return found


@pytest.mark.parametrize(
    'config, expected',
    [
        ('llava15/stage1_align.py', dict(connector={1e-3})),
        ('llava15/stage2_finetune.py', dict(connector={2e-5}, language_model={2e-5})),
        ('llava15/stage2_finetune_lora.py', dict(connector={2e-5}, language_model={2e-4})),
        (
            'llava15/stage2_finetune_encoder.py',
            dict(vision_encoder={2e-6}, connector={2e-5}, language_model={2e-5}),
        ),
    ],
)
def test_per_part_learning_rates(config, expected, stage_models):
    found = _lrs(config, stage_models[config])
    for part in PARTS:
        assert sorted(found[part]) == pytest.approx(sorted(expected.get(part, ()))), part


@pytest.mark.parametrize(
    'config, batch', [('llava15/stage1_align.py', 256), ('llava15/stage2_finetune.py', 128)]
)
def test_the_effective_batch_is_stated_and_reached_by_accumulation(config, batch):
    cfg = _stage(config)
    assert cfg._EFFECTIVE_BATCH == batch
    accumulate = cfg.optim_wrapper.accumulative_counts
    assert cfg.train_dataloader.batch_size * cfg._GPUS * accumulate == batch
    assert cfg.train_cfg.max_iters == cfg._STEPS * accumulate


def test_a_stage_two_loads_what_its_stage_one_writes():
    # tools/train.py writes a config's run to work_dirs/<config name>; load_parts names that work dir
    for stage2, stage1 in [('llava15/stage2_finetune.py', 'stage1_align'), ('blip3/sft.py', 'pretrain')]:
        for part, path in _stage(stage2).load_parts.items():
            assert path == f'work_dirs/{stage1}', (stage2, part)
    assert 'load_parts' not in _stage('prismatic/one_stage.py')


# -- stage 1 -> stage 2 on tiny parts and the synthetic data ----------------------------------------------


def _tiny_stage(config: str, tmp_path: Path, root: str, **settings) -> str:
    """``config`` with vlkit's tiny parts and data in place of the papers' (its train settings kept)."""
    cfg = _stage(config)
    keep = {p: {k: cfg[p][k] for k in ('train', 'lora') if k in cfg[p]} for p in PARTS}
    encoder = {**tiny_encoder(), **keep['vision_encoder']}
    llm = {**tiny_language_model(root), **keep['language_model'], 'gradient_checkpointing': True}
    dataset = dict(
        type='SyntheticShards', split='train', mode='train', data_root=None, tokenizer=None, image_size=None
    )
    lines = [
        f'_base_ = [{str(CONFIGS / config)!r}]',
        f'data_root = {root!r}',
        f'image_size = {TINY_IMAGE_SIZE}',
        f'vision_encoder = dict(_delete_=True, **{encoder!r})',
        f'language_model = dict(_delete_=True, **{llm!r})',
        f'train_dataloader = dict(batch_size=8, num_workers=0, dataset=dict(_delete_=True, **{dataset!r}))',
        'train_cfg = dict(max_iters=4)',
        'param_scheduler = None',
        'optim_wrapper = dict(accumulative_counts=2)',  # 2 batches of 8 per step
        'default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=4))',
        *(f'{key} = {value!r}' for key, value in settings.items()),
    ]
    path = tmp_path / f'tiny_{Path(config).stem}.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def _train(config: str, work_dir: str, *options: str) -> dict:
    run_tool('train.py', config, '--work-dir', work_dir, *options, OMP_NUM_THREADS='1')
    return load_checkpoint_file(osp.join(work_dir, 'iter_4.pth'))['state_dict']


def _part(state: dict, part: str) -> dict:
    return {k[len(part) + 1 :]: v for k, v in state.items() if k.startswith(f'{part}.')}


@pytest.fixture(scope='module')
def stage1(synthetic_root, tmp_path_factory) -> tuple[str, dict]:
    tmp = tmp_path_factory.mktemp('stage1')
    work_dir = str(tmp / 'work')
    return work_dir, _train(_tiny_stage('llava15/stage1_align.py', tmp, synthetic_root), work_dir)


def _starting_weights(config: str, work_dir: str) -> dict:
    """The model's weights where training begins: built by the runner, then what it loads first."""
    cfg = load_config(config)
    cfg.work_dir = work_dir
    runner = build_runner(cfg)
    runner.load_or_resume()  # what runner.train() does first
    return runner.model.state_dict()


def test_a_checkpoint_inside_an_accumulated_step_is_refused(synthetic_root, tmp_path):
    config = _tiny_stage('llava15/stage1_align.py', tmp_path, synthetic_root)
    check_config(load_config(config))  # 4 iterations, checkpoints every 4, steps of 2
    with pytest.raises(
        ConfigError, match=r'checkpoint.interval=3 is not a multiple of .*accumulative_counts=2'
    ):
        check_config(load_config(config, {'default_hooks.checkpoint.interval': 3}))


@pytest.mark.slow
def test_stage1_trains_the_connector_alone(stage1, synthetic_root, tmp_path):
    _, end = stage1
    start = _starting_weights(
        _tiny_stage('llava15/stage1_align.py', tmp_path, synthetic_root), str(tmp_path / 'w')
    )
    for part in PARTS:
        changed = {
            k for k in _part(start, part) if not torch.equal(_part(start, part)[k], _part(end, part)[k])
        }
        assert changed == (set(_part(start, part)) if part == 'connector' else set()), part


@pytest.mark.slow
@pytest.mark.parametrize('stage', ['stage2_finetune', 'stage2_finetune_lora'])
def test_stage2_starts_from_stage1s_connector_and_trains_the_llm(stage, stage1, synthetic_root, tmp_path):
    stage1_dir, first = stage1
    config = _tiny_stage(
        f'llava15/{stage}.py', tmp_path, synthetic_root, load_parts=dict(connector=stage1_dir)
    )
    start = _part(_starting_weights(config, str(tmp_path / 'probe')), 'connector')
    for key, value in _part(first, 'connector').items():
        assert torch.equal(start[key], value), key

    second = _train(config, str(tmp_path / 'work'))
    for part in ('vision_encoder', 'connector'):
        changed = [k for k, v in _part(first, part).items() if not torch.equal(_part(second, part)[k], v)]
        assert bool(changed) is (part == 'connector'), (part, changed)
    llm1, llm2 = _part(first, 'language_model'), _part(second, 'language_model')
    layer = 'model.model.layers.0.self_attn.q_proj'
    if stage.endswith('lora'):
        assert llm2[f'{layer}.base_layer.weight'].equal(llm1[f'{layer}.weight'])  # the base stays frozen
        adapters = [v for k, v in llm2.items() if 'lora_B' in k]
        assert adapters and all(v.abs().sum() > 0 for v in adapters)  # B starts at zero
    else:
        assert not llm2[f'{layer}.weight'].equal(llm1[f'{layer}.weight'])


@pytest.mark.slow
def test_a_lora_stage_killed_and_resumed_equals_a_straight_run(stage1, synthetic_root, tmp_path):
    stage1_dir, _ = stage1
    config = _tiny_stage(
        'llava15/stage2_finetune_lora.py', tmp_path, synthetic_root, load_parts=dict(connector=stage1_dir)
    )
    # LoRA dropout draws random numbers every step; checkpoints fall between accumulated steps (of 2)
    options = ('--cfg-options', 'train_cfg.max_iters=8', 'default_hooks.checkpoint.interval=2')
    straight, killed = str(tmp_path / 'straight'), str(tmp_path / 'killed')
    run_tool('train.py', config, '--work-dir', straight, *options, OMP_NUM_THREADS='1')
    kill_after([config, '--work-dir', killed, *options], osp.join(killed, 'iter_4.pth'))
    assert not osp.exists(osp.join(killed, 'iter_8.pth'))
    out = run_tool('train.py', config, '--work-dir', killed, '--resume', *options, OMP_NUM_THREADS='1')
    assert 'resumed' in (out.stdout + out.stderr).lower()
    a = load_checkpoint_file(osp.join(straight, 'iter_8.pth'))['state_dict']
    b = load_checkpoint_file(osp.join(killed, 'iter_8.pth'))['state_dict']
    assert a.keys() == b.keys() and any('lora_A' in k for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]


def test_load_parts_under_a_sharding_strategy_is_refused_not_ignored():
    cfg = _stage('llava15/stage2_finetune.py')
    cfg.strategy = dict(type='FSDPStrategy')
    with pytest.raises(
        CheckpointLoadError, match=r"load_parts=.* does not work with strategy='FSDPStrategy'"
    ):
        build_runner(cfg)


def test_under_deepspeed_a_stage_keeps_its_per_part_rates_and_hands_over_accumulation_and_clipping():
    """tools/train.py swaps the optim_wrapper for DeepSpeed's: the LoRA stage's connector rate (lr_mult 0.1)
    must survive, and the accumulation and clipping go to DeepSpeed, which steps and clips itself."""
    import sys

    from mmengine.config import Config

    sys.path.insert(0, str(ROOT / 'tools'))
    from train import use_deepspeed_optim_wrapper

    cfg = Config.fromfile(str(ROOT / 'configs/llava15/stage2_finetune_lora.py'))
    cfg.optim_wrapper.accumulative_counts, cfg.optim_wrapper.clip_grad = 4, dict(max_norm=0.5)
    cfg.strategy = dict(type='DeepSpeedStrategy', gradient_clipping=1.0)
    custom_keys = cfg.optim_wrapper.paramwise_cfg.custom_keys
    use_deepspeed_optim_wrapper(cfg)
    assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys == custom_keys and custom_keys  # the per-part rates
    assert cfg.strategy.gradient_accumulation_steps == 4 and cfg.strategy.gradient_clipping == 0.5
    unclipped = Config(
        dict(optim_wrapper=dict(optimizer=dict(type='AdamW')), strategy=dict(gradient_clipping=1.0))
    )
    use_deepspeed_optim_wrapper(unclipped)
    assert unclipped.strategy.gradient_clipping == 0.0  # the schedule clips nothing, nor does DeepSpeed
    by_value = Config(
        dict(optim_wrapper=dict(optimizer={}, clip_grad=dict(type='value', clip_value=1)), strategy={})
    )
    with pytest.raises(SystemExit, match='DeepSpeed clips by norm only'):
        use_deepspeed_optim_wrapper(by_value)
