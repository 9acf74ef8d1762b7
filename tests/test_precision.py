"""The precision switch: resolved per machine, refused where it cannot run, and bf16 autocast that keeps fp32
weights and gives the fp32 results within bf16's rounding."""

from __future__ import annotations

import sys

import pytest
import torch
from mmengine.config import Config

from tests.helpers import ROOT
from vlkit.engine import precision as P
from vlkit.registry import MODELS
from vlkit.testing import TEXTS, text_batch, tiny_model_cfg


def test_auto_takes_bf16_only_where_the_cpu_has_bf16_units(monkeypatch):
    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: ['avx512_bf16'])
    assert P.resolve_precision('auto', 'cpu') == 'bf16' and P.resolve_precision('bf16', 'cpu') == 'bf16'
    assert P.resolve_precision('fp32', 'cpu') == 'fp32' and P.resolve_precision(None, 'cpu') == P.DEFAULT
    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: [])
    assert P.resolve_precision('auto', 'cpu') == 'fp32'
    with pytest.raises(
        P.PrecisionError, match=r"precision='bf16' \(--amp\) needs bf16 units: this CPU reports none"
    ):
        P.resolve_precision('bf16', 'cpu')
    with pytest.raises(P.PrecisionError, match=r"precision='fp16' is not one of \('auto', 'fp32', 'bf16'\)"):
        P.resolve_precision('fp16', 'cpu')


def test_the_resolved_precision_goes_into_the_model_and_the_pretraining_stages(monkeypatch):
    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: ['amx_bf16'])
    stages = dict(encoder_pretraining=dict(iters=2), llm_pretraining=dict(iters=2))
    cfg = Config(dict(precision='auto', model=dict(type='VisionLanguageModel'), **stages))
    assert P.apply_precision(cfg, 'cpu') == 'bf16'
    assert cfg.precision == cfg.model.precision == 'bf16'
    assert cfg.encoder_pretraining.precision == cfg.llm_pretraining.precision == 'bf16'
    assert P.apply_precision(cfg, 'cpu', 'fp32') == 'fp32' and cfg.model.precision == 'fp32'


def test_a_bf16_run_on_a_gpu_pretrains_in_fp32_on_a_cpu_without_bf16_units(monkeypatch):
    """The pretraining stages run on the CPU: a bf16 run on a GPU does not send them into bf16 emulation on a
    CPU that lacks the units, and does not refuse the run for it."""
    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: [])
    monkeypatch.setattr(P.torch.cuda, 'is_bf16_supported', lambda: True)
    stages = dict(encoder_pretraining=dict(iters=2), llm_pretraining=dict(iters=2))
    cfg = Config(dict(precision='bf16', model=dict(type='VisionLanguageModel'), **stages))
    assert P.apply_precision(cfg, 'cuda') == 'bf16' and cfg.model.precision == 'bf16'
    assert cfg.encoder_pretraining.precision == cfg.llm_pretraining.precision == 'fp32'
    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: ['amx_bf16'])
    assert P.apply_precision(cfg, 'cuda') == 'bf16'
    assert cfg.encoder_pretraining.precision == cfg.llm_pretraining.precision == 'bf16'
    assert P.apply_precision(cfg, 'cuda', 'fp32') == 'fp32' and cfg.encoder_pretraining.precision == 'fp32'


def test_pretraining_alone_resolves_the_precision_as_training_does(monkeypatch):
    """tools/pretrain.py resolves ``precision='auto'`` for the run's device, as tools/train.py does, so the
    stage's cache key (which holds its precision) is the same whichever tool ran it."""
    sys.path.insert(0, str(ROOT / 'tools'))
    import pretrain  # tools/pretrain.py

    from vlkit.engine import PRETRAINING

    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: ['amx_bf16'])
    monkeypatch.setattr(P.torch.cuda, 'is_available', lambda: False)
    assert P.run_device() == 'cpu'
    seen = []
    monkeypatch.setitem(
        PRETRAINING, 'llm_pretraining', lambda cfg: seen.append(cfg.llm_pretraining.precision)
    )
    options = ['--stage', 'llm_pretraining', '--cfg-options', 'precision=auto']
    pretrain.main([str(ROOT / 'configs/blip3_perceiver_frozen_llm.py'), *options])
    assert seen == ['bf16']
    monkeypatch.setattr(P, 'cpu_bf16_units', lambda: [])
    with pytest.raises(SystemExit, match=r"config error: .*precision='bf16' \(--amp\) needs bf16 units"):
        pretrain.main(
            [str(ROOT / 'configs/blip3_perceiver_frozen_llm.py'), '--cfg-options', 'precision=bf16']
        )


def test_cpu_flags_are_read_from_proc_cpuinfo(tmp_path, monkeypatch):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor : 0\nflags : fpu avx2 avx512f avx512_bf16 sse\n')
    real_open = open
    monkeypatch.setattr(
        'builtins.open', lambda path, *a, **k: real_open(info if path == '/proc/cpuinfo' else path, *a, **k)
    )
    P.cpu_bf16_units.cache_clear()
    try:
        assert P.cpu_bf16_units() == ['avx512_bf16']
    finally:
        P.cpu_bf16_units.cache_clear()


@pytest.mark.skipif(not P.cpu_bf16_units(), reason='this CPU has no bf16 units')
def test_bf16_keeps_fp32_weights_and_the_fp32_loss_within_rounding(synthetic_root):
    losses = {}
    for precision in ('fp32', 'bf16'):
        torch.manual_seed(0)
        model = MODELS.build(dict(tiny_model_cfg(synthetic_root), precision=precision))
        batch = text_batch(model, TEXTS)
        loss = model(**batch, mode='loss')['loss']
        loss.backward()
        losses[precision] = loss.item()
        assert loss.dtype == torch.float32 and all(p.dtype == torch.float32 for p in model.parameters())
        assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)
    assert losses['bf16'] != losses['fp32'] and losses['bf16'] == pytest.approx(losses['fp32'], rel=2e-2)


def test_a_model_refuses_an_unresolved_precision(synthetic_root):
    with pytest.raises(ValueError, match="resolved to 'fp32' or 'bf16' before running, got 'auto'"):
        MODELS.build(dict(tiny_model_cfg(synthetic_root), precision='auto'))
