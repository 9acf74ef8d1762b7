"""One-shot check of vlkit on a CUDA machine: attention backends, connectors, a tiny VLM, connector speed.

    python benchmarks/gpu_check.py [--out PATH] [--only SECTION ...] [--setting small|medium]
                                   [--repeats N] [--warmup N] [--max-seconds S] [--device cuda|cpu]

Sections, in order (``--only`` picks some):

* ``env``: torch / CUDA / GPU, package versions, whether xformers imports, the attention backends available
  for fp32 and bf16 tensors on the device, and whether ``auto`` picks xformers there.
* ``attention``: every backend against ``math`` (fp32 and bf16; no mask, key padding, per-query mask, a query
  row with no visible key, causal, causal with padding, a non-default scale), outputs and q/k/v gradients.
* ``connectors``: every registered connector at its tiny preset size (vlkit.testing): forward +
  backward on the device with the default ``auto`` backend, finite values, every parameter reached, the
  same output as on the CPU, and which attention backends and paths it used.
* ``vlm``: the tiny VLM of vlkit.testing (perceiver connector) with each fusion, on samples with 0, 1
  and 3 images: 5 AdamW steps (finite, falling loss), then ``mode='predict'``.
* ``speed``: the attention connectors at a setting of benchmarks/references.py (``medium`` on CUDA), forward +
  backward in fp32 and in bf16 autocast, with each attention backend forced and with ``auto``, median of
  ``--repeats`` synchronised runs after ``--warmup``; a Markdown table that also says which backends ``auto``
  ran and how many calls took MultiheadAttention's context-space path.

Without CUDA every section runs on the CPU (xformers is then SKIP), so the script can be tried anywhere.
A failing check does not stop the others. Each check prints one ``PASS`` / ``FAIL`` / ``SKIP`` line; the lines
and the table go to stdout and to ``$OUT/gpu_check.md`` (or ``--out``), written as they come, so a run cut
short keeps what it measured. When a CUDA error leaves the process's context unusable, the remaining
sections run in a fresh process that appends to the same report. The exit status is 1 when any check failed.

fp32 here is full fp32: TF32 is switched off for matmuls and convolutions, so that the device can be
compared with the CPU at fp32 tolerances.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from importlib import metadata
from pathlib import Path
from unittest import mock

import torch
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.references, run as a script
os.environ.setdefault('HF_HUB_OFFLINE', '1')

from vlkit.ops import AttentionBackendError, attention, available_backends  # noqa: E402  (torch only)
from vlkit.ops.attention import BACKENDS  # noqa: E402

SECTIONS = ['env', 'attention', 'connectors', 'vlm', 'speed']
PACKAGES = ['transformers', 'tokenizers', 'timm', 'einops', 'peft', 'mmengine', 'webdataset', 'braceexpand',
            'opencv-python', 'opencv-python-headless', 'numpy', 'pillow', 'xformers']  # fmt: skip
TOLERANCES = {torch.float32: dict(atol=1e-4, rtol=1e-3), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
DEVICE_TOL = dict(atol=1e-4, rtol=1e-3)  # a connector on the device against the same weights on the CPU
SPEED_CONNECTORS = {  # label: (registry name, hyper-parameters in references.Setting.hp, projects to out_dim)
    'BLIP-2 Q-Former': ('QFormer', 'blip2_qformer', True),
    'BLIP-3 perceiver': ('PerceiverResampler', 'blip3_perceiver', True),
    'open_flamingo perceiver': ('PerceiverResampler', 'flamingo_perceiver', False),
}
SPEED_BACKENDS = ['xformers', 'sdpa', 'math', 'auto']


class Skip(Exception):
    """Raised by a check that does not apply here (reported as SKIP, not as a failure)."""


# -- reporting -------------------------------------------------------------------------------------------


class Report:
    """Prints each line and appends it to a Markdown file as it comes; counts PASS / FAIL / SKIP."""

    def __init__(self, path: Path | None, append: bool = False) -> None:
        self.path = path
        self.counts: Counter[str] = Counter()
        self.failed: list[str] = []
        if path is not None and not append:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text('')

    def line(self, text: str = '') -> None:
        print(text, flush=True)
        if self.path is not None:
            with open(self.path, 'a') as f:
                f.write(text + '\n')

    def status(self, status: str, name: str, detail: str = '') -> None:
        self.counts[status] += 1
        if status == 'FAIL':
            self.failed.append(name)
        self.line(f'- {status} {name}' + (f': {detail}' if detail else ''))

    def fail(self, name: str, err: Exception) -> None:
        """A FAIL line with the error; and, unless a check's assertion, where it was raised."""
        self.status('FAIL', name, _one_line(err))
        if not isinstance(err, AssertionError):
            tb = ''.join(traceback.format_exception(err)[-6:]).rstrip()
            self.line('\n'.join('      ' + ln for ln in tb.splitlines()))

    def check(self, name: str, fn: Callable, *args, **kwargs):
        """Runs ``fn``: PASS with the text it returns, SKIP on :class:`Skip`, FAIL with the error (and its
        traceback) on any other exception. Returns what ``fn`` returned, None when it raised."""
        try:
            detail = fn(*args, **kwargs)
        except Skip as why:
            self.status('SKIP', name, str(why))
        except Exception as err:  # noqa: BLE001  (one failing check must not stop the others)
            self.fail(name, err)
        else:
            self.status('PASS', name, detail if isinstance(detail, str) else '')
            return detail
        return None


def _one_line(err: BaseException, limit: int = 600) -> str:
    text = ' | '.join(ln.strip() for ln in str(err).splitlines() if ln.strip())
    text = f'{type(err).__name__}: {text}'
    return text if len(text) <= limit else text[: limit - 3] + '...'


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix('torch.')


def _probe(device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """A small [B, H, L, Dh] tensor, to ask which attention backends can run on ``device`` in ``dtype``."""
    return torch.zeros(1, 1, 8, 64, device=device, dtype=dtype)


def _max_diff(a: Tensor, b: Tensor) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


# -- which attention ran ---------------------------------------------------------------------------------


@contextmanager
def attention_spy() -> Iterator[Counter]:
    """Counts the attention calls per backend that ran them, and the calls that
    :class:`~vlkit.models.layers.MultiheadAttention` made in the context's space (few queries over many
    wide tokens, :func:`vlkit.ops.context_space_attention`) under the key ``'context space'``."""
    from vlkit.models.layers import MultiheadAttention

    calls: Counter[str] = Counter()

    def counted(backend):
        def run(*args):
            calls[backend.name] += 1
            return backend.run(*args)

        return dataclasses.replace(backend, run=run)

    original = MultiheadAttention._forward_in_context_space

    def in_context_space(module, *args, **kwargs):
        calls['context space'] += 1
        return original(module, *args, **kwargs)

    with (
        mock.patch.dict(BACKENDS, {name: counted(b) for name, b in BACKENDS.items()}),
        mock.patch.object(MultiheadAttention, '_forward_in_context_space', in_context_space),
    ):
        yield calls


def describe_calls(calls: Counter) -> str:
    """``'xformers 4, math 2 (2 in context space)'``, or ``'no attention'``."""
    used = [f'{name} {n}' for name, n in sorted(calls.items()) if name != 'context space']
    text = ', '.join(used) or 'no attention'
    return text + (f' ({calls["context space"]} in context space)' if calls['context space'] else '')


# -- 1. environment --------------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _xformers_import() -> str:
    """Imports ``xformers.ops`` (as vlkit does on first use); its version and any warning it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        import xformers
        import xformers.ops  # noqa: F401
    said = '; '.join(dict.fromkeys(str(w.message).splitlines()[0] for w in caught))
    return f'xformers {xformers.__version__} imports' + (f' (warned: {said})' if said else '')


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True
        )
    except OSError:
        return 'unknown (no git)'
    return out.stdout.strip() or 'unknown (not a git checkout)'


def check_environment(report: Report, device: torch.device) -> None:
    report.line(
        f'- vlkit at commit {_git_commit()}; python {platform.python_version()} on {platform.platform()}'
    )
    cuda = (
        f'CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}'
        if torch.version.cuda
        else 'no CUDA'
    )
    report.line(f'- torch {torch.__version__} ({cuda}); device {device}')
    if device.type == 'cuda':
        props = torch.cuda.get_device_properties(device)
        report.line(f'- GPU {props.name}, compute capability {props.major}.{props.minor}, '
                    f'{props.total_memory / 2**30:.0f} GiB')  # fmt: skip
    report.line(
        f'- TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}'
    )
    report.line('- packages: ' + ', '.join(f'{d} {_version(d) or "absent"}' for d in PACKAGES))
    if device.type == 'cuda':
        report.check('xformers imports', _xformers_import)
    else:
        report.status('SKIP', 'xformers imports', 'no CUDA device (xformers has no CPU kernel)')
    for dtype in (torch.float32, torch.bfloat16):
        names = available_backends(_probe(device, dtype))
        report.line(f'- available_backends({device.type} {_name(dtype)}): {names}')
    report.check('auto picks xformers', _auto_picks_xformers, device)


def _auto_backend(device: torch.device, dtype: torch.dtype = torch.float32) -> str:
    """The backend that ``auto`` takes for tensors of ``dtype`` on ``device``."""
    return available_backends(_probe(device, dtype))[0]


def _auto_picks_xformers(device: torch.device) -> str:
    if device.type != 'cuda':
        raise Skip('no CUDA device')
    first = _auto_backend(device)
    assert first == 'xformers', f"backend='auto' picks {first!r} on CUDA, expected 'xformers'"
    return 'on CUDA'


# -- 2. attention backends against math ------------------------------------------------------------------

B, H, LQ, LK, DH = 2, 4, 37, 53, 64  # lengths off multiples of 8, to exercise xformers' bias alignment


def _key_padding(g: torch.Generator) -> Tensor:
    mask = torch.ones(B, LK, dtype=torch.bool)
    mask[1, 20:] = False
    return mask


def _per_query(g: torch.Generator, empty_row: bool = False) -> Tensor:
    mask = torch.rand(B, LQ, LK, generator=g) < 0.6
    mask[..., 0] = True  # every row sees a key ...
    if empty_row:
        mask[0, 3] = False  # ... but this one (Flamingo's text before its first image)
    return mask


# name: (mask builder or None, causal, scale)
ATTENTION_CASES = {
    'no mask': (None, False, None),
    'key padding': (_key_padding, False, None),
    'per-query mask': (_per_query, False, None),
    'row without keys': (lambda g: _per_query(g, empty_row=True), False, None),
    'causal': (None, True, None),
    'causal + key padding': (_key_padding, True, None),
    'scale 0.05 + key padding': (_key_padding, False, 0.05),
}


def _attend(backend: str, case: str, device: torch.device, dtype: torch.dtype, compute: torch.dtype):
    """The output and the q, k, v gradients of ``backend`` on ``case``: inputs rounded to ``dtype``, then
    computed in ``compute`` (fp32 for the reference, so that it sees the same rounded inputs)."""
    g = torch.Generator().manual_seed(0)
    make_mask, causal, scale = ATTENTION_CASES[case]
    inputs = [torch.randn(B, H, n, DH, generator=g) for n in (LQ, LK, LK, LQ)]
    q, k, v, grad = (t.to(device, dtype).to(compute) for t in inputs)
    mask = make_mask(g).to(device) if make_mask else None
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    out = attention(q, k, v, mask, causal=causal, scale=scale, backend=backend)
    out.backward(grad)
    return out.detach(), q.grad, k.grad, v.grad


def _compare_attention(backend: str, case: str, device: torch.device, dtype: torch.dtype) -> str:
    """``backend`` in ``dtype`` against ``math`` in fp32 on the same inputs; outputs and gradients."""
    expected = _attend('math', case, device, dtype, torch.float32)
    got = _attend(backend, case, device, dtype, dtype)
    names = ('out', 'dq', 'dk', 'dv')
    for name, a, e in zip(names, got, expected, strict=True):
        assert a.isfinite().all(), f'{name} has non-finite values'
        torch.testing.assert_close(a.float(), e, **TOLERANCES[dtype], msg=lambda m, n=name: f'{n}: {m}')
    if case == 'row without keys':
        assert (got[0][0, :, 3] == 0).all(), 'the query row that sees no key does not output zeros'
    return 'max |diff| ' + ', '.join(
        f'{n} {_max_diff(a, e):.1e}' for n, a, e in zip(names, got, expected, strict=True)
    )


def check_attention(report: Report, device: torch.device) -> None:
    report.line(f'q [{B}, {H}, {LQ}, {DH}], k/v [{B}, {H}, {LK}, {DH}]; reference: math in fp32; '
                f'tolerances {({_name(d): t for d, t in TOLERANCES.items()})}')  # fmt: skip
    for dtype in (torch.float32, torch.bfloat16):
        backends = ['xformers', 'sdpa'] + (['math'] if dtype != torch.float32 else [])
        for backend in backends:
            probe = _probe(device, dtype)
            reasons = BACKENDS[backend].reasons_not_supported(probe, probe, probe)
            if reasons:  # one line, not one per case; expected on a CPU, a failure on CUDA
                status = 'SKIP' if device.type != 'cuda' else 'FAIL'
                report.status(status, f'attention {backend} {_name(dtype)}', '; '.join(reasons))
                continue
            for case in ATTENTION_CASES:
                name = f'attention {backend} {_name(dtype)} {case}'
                report.check(name, _compare_attention, backend, case, device, dtype)


# -- 3. connectors on the device against the CPU ---------------------------------------------------------


GRID = (4, 6)  # a non-square token grid of 24 tokens, 32 wide


def _connector_on(name: str, device: torch.device) -> str:
    """One connector at its tiny preset size (vlkit.testing): forward + backward on ``device`` with ``auto``
    attention, compared with the same weights on the CPU."""
    from vlkit.registry import CONNECTORS
    from vlkit.testing import TINY_CONNECTORS

    torch.manual_seed(0)
    grid = {'input_grid': GRID} if CONNECTORS.get(name).wants_input_grid() else {}
    cpu = CONNECTORS.build(dict(type=name, in_dim=32, out_dim=48, **grid, **TINY_CONNECTORS[name])).eval()
    x, mask = torch.randn(2, GRID[0] * GRID[1], 32), torch.ones(2, GRID[0] * GRID[1], dtype=torch.bool)
    mask[1, -5:] = False
    with torch.no_grad():
        expected = cpu(x, mask, GRID)
    module = copy.deepcopy(cpu).to(device)
    with attention_spy() as calls:
        y = module(x.to(device), mask.to(device), GRID)
    y.square().mean().backward()
    assert y.isfinite().all(), 'non-finite output'
    bad = [
        n for n, p in module.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())
    ]
    assert not bad, f'parameters without a gradient: {bad}'
    assert all(p.grad.isfinite().all() for p in module.parameters() if p.grad is not None), 'non-finite grads'
    torch.testing.assert_close(y.detach().cpu(), expected, **DEVICE_TOL)
    _assert_auto_backends(calls, _auto_backend(device))
    return (
        f'max |device - cpu| {_max_diff(y.detach().cpu(), expected):.1e}; attention: {describe_calls(calls)}'
    )


def _assert_auto_backends(calls: Counter, first: str) -> None:
    """Under ``auto``, calls in the context's space run ``math``, every other call the first available."""
    in_context = calls['context space']
    ran = Counter({k: n for k, n in calls.items() if k != 'context space'})
    expected = Counter({first: sum(ran.values()) - in_context}) + Counter({'math': in_context})
    assert ran == expected, f'auto ran {dict(ran)}, expected {dict(expected)} ({in_context} in context space)'


def check_connectors(report: Report, device: torch.device) -> None:
    from vlkit.registry import CONNECTORS

    report.line(f'tolerance against the CPU: {DEVICE_TOL}')
    CONNECTORS.import_from_location()
    for name in sorted(CONNECTORS.module_dict):
        report.check(f'connector {name}', _connector_on, name, device)


# -- 4. a tiny VLM with each fusion ----------------------------------------------------------------------


def _tiny_data_root(parent: str) -> str:
    """The small synthetic benchmark of the tests (and its tokenizer) under ``parent``."""
    from vlkit.data.prepare import ensure_synthetic_data
    from vlkit.testing import TINY_IMAGE_SIZE, TINY_SPLITS

    root = ensure_synthetic_data(Path(parent) / 'synthetic', TINY_SPLITS, TINY_IMAGE_SIZE, shard_size=100,
                                 verbose=False)  # fmt: skip
    return str(root)


def _losses(model: nn.Module, batch: dict, steps: int) -> list[float]:
    """The loss at each of ``steps`` AdamW steps on ``batch``."""
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        optim.zero_grad()
        loss = model(**batch, mode='loss')['loss']
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses


def _train_and_predict(root: str, fusion: dict, device: torch.device, steps: int = 5) -> str:
    """``steps`` AdamW steps on a fixed batch (0, 1 and 3 images per sample), then ``mode='predict'``."""
    from mmengine.registry import DefaultScope

    from vlkit.registry import MODELS
    from vlkit.testing import TEXTS, TINY_CONNECTORS, text_batch, tiny_model_cfg

    torch.manual_seed(0)
    connector = dict(type='PerceiverResampler', **TINY_CONNECTORS['PerceiverResampler'])
    with DefaultScope.overwrite_default_scope('vlkit'):
        model = MODELS.build(tiny_model_cfg(root, connector=connector, fusion=fusion)).to(device).train()
    with attention_spy() as calls:
        losses = _losses(model, {k: v.to(device) for k, v in text_batch(model, TEXTS).items()}, steps)
    shown = ' '.join(f'{x:.3f}' for x in losses)
    assert all(map(math.isfinite, losses)), f'non-finite loss: {shown}'
    assert losses[-1] < losses[0], f'loss did not fall: {shown}'
    _assert_auto_backends(calls, _auto_backend(device))
    prompts = [t.rsplit(' ', 1)[0] for t in TEXTS]  # without the answer word
    out = model.eval()(**{k: v.to(device) for k, v in text_batch(model, prompts, generating=True).items()},
                       mode='predict')  # fmt: skip
    answers = [o['prediction'] for o in out]
    assert len(answers) == len(prompts) and all(isinstance(a, str) for a in answers), f'predict gave {out}'
    return f'loss {shown}; attention: {describe_calls(calls)}; predictions {answers}'


def check_vlm(report: Report, device: torch.device) -> None:
    from vlkit.testing import TINY_FUSIONS

    with tempfile.TemporaryDirectory(prefix='vlkit-gpu-check-') as parent:
        root = report.check('synthetic data and tokenizer', _tiny_data_root, parent)
        if root is None:
            return
        for name, settings in TINY_FUSIONS.items():
            report.check(f'tiny VLM {name}', _train_and_predict, root, dict(type=name, **settings), device)


# -- 5. speed per attention backend ----------------------------------------------------------------------


def _set_backend(module: nn.Module, backend: str) -> None:
    from vlkit.models.layers import MultiheadAttention

    for m in module.modules():
        if isinstance(m, MultiheadAttention):
            m.backend = backend


def _timed_ms(step: Callable[[], None], device: torch.device, repeats: int, warmup: int) -> float:
    """Median milliseconds of ``repeats`` synchronised runs of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _train_step(module: nn.Module, x: Tensor, grad: Tensor, autocast: bool) -> Callable[[], None]:
    """Forward + backward from fresh gradients, in bf16 autocast or in fp32."""

    def step() -> None:
        module.zero_grad(set_to_none=True)
        ctx = torch.autocast(x.device.type, dtype=torch.bfloat16) if autocast else nullcontext()
        with ctx:
            y = module(x)
        (y.float() * grad).sum().backward()

    return step


def _speed_cell(report: Report, label: str, step: Callable, device: torch.device, args) -> str:
    """One table cell: the median time, ``n/a`` with a SKIP line, or ``error`` with a FAIL line."""
    if time.perf_counter() - args.start > args.max_seconds:
        report.status('SKIP', label, f'past --max-seconds {args.max_seconds:.0f}')
        return 'skipped'
    try:
        ms = _timed_ms(step, device, args.repeats, args.warmup)
    except AttentionBackendError as why:
        report.status('SKIP', label, _one_line(why, 200))
        return 'n/a'
    except Exception as err:  # noqa: BLE001  (the other cells still run)
        report.fail(label, err)
        return 'error'
    return f'{ms:.2f}'


def _calls_under_auto(module: nn.Module, step: Callable[[], None]) -> str:
    """One ``step`` with every attention layer on ``auto``: which backends and paths it took."""
    _set_backend(module, 'auto')
    with attention_spy() as calls:
        step()
    return describe_calls(calls)


def _speed_rows(report: Report, label: str, module: nn.Module, x: Tensor, device: torch.device, args) -> list:
    """Table rows of one connector: fp32 and bf16 autocast, a time per backend, and its path under auto."""
    with torch.no_grad():
        grad = torch.randn_like(module(x).float())
    rows = []
    for autocast in (False, True):
        precision = 'bf16 autocast' if autocast else 'fp32'
        step = _train_step(module, x, grad, autocast)
        name = f'speed {label} {precision}'
        calls = report.check(f'{name} runs under auto', _calls_under_auto, module, step) or 'error'
        cells = []
        for backend in SPEED_BACKENDS:
            _set_backend(module, backend)
            cells.append(_speed_cell(report, f'{name} {backend}', step, device, args))
        _set_backend(module, 'auto')
        rows.append([label, precision, calls, *cells])
    return rows


def _connector_rows(report: Report, label: str, cfg: dict, x: Tensor, device: torch.device, args) -> list:
    """The rows of one connector, built from ``cfg``. Its input is a frozen encoder's tokens (no gradient);
    if even the ``math`` backend fails so, the rows are measured again with an input that needs a
    gradient, which takes the other path through the perceiver's media norm
    (``vlkit.ops.layer_norm_linear``)."""
    from vlkit.registry import CONNECTORS

    torch.manual_seed(0)
    module = CONNECTORS.build(cfg).to(device)
    rows = _speed_rows(report, label, module, x, device, args)
    math_cell = 3 + SPEED_BACKENDS.index('math')
    if any(row[math_cell] == 'error' for row in rows):
        trainable = x.detach().clone().requires_grad_()
        rows += _speed_rows(report, f'{label} (input needs grad)', module, trainable, device, args)
    return rows


def _speed_table(report: Report, device: torch.device, args) -> list[str]:
    """The speed table's lines; one line per connector, precision and backend on the way."""
    from benchmarks.references import SETTINGS

    s = SETTINGS[args.setting]
    x = torch.randn(s.batch, s.grid[0] * s.grid[1], s.in_dim, device=device)
    rows = []
    for label, (name, hp_key, projects) in SPEED_CONNECTORS.items():
        cfg = dict(type=name, in_dim=s.in_dim, out_dim=s.out_dim if projects else None, **s.hp[hp_key])
        rows += (
            report.check(f'speed {label} measured', _connector_rows, report, label, cfg, x, device, args)
            or []
        )
    head = [
        'connector',
        'precision',
        'attention calls under auto (forward)',
        *(f'{b} ms' for b in SPEED_BACKENDS),
    ]
    return [
        f'**{s.name}** (batch {s.batch}, {s.grid[0] * s.grid[1]} tokens of {s.in_dim} -> {s.out_dim}); '
        f'forward + backward, median of {args.repeats} after {args.warmup} warm-up, on {device}',
        '',
        '| ' + ' | '.join(head) + ' |',
        '|---' * len(head) + '|',
        *('| ' + ' | '.join(r) + ' |' for r in rows),
    ]


def check_speed(report: Report, device: torch.device, *, args) -> None:
    lines = report.check('speed table built', _speed_table, report, device, args)
    if lines is not None:
        report.line()
        report.line('\n'.join(lines))


# -- main ------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    out = Path(os.environ['OUT']) / 'gpu_check.md' if os.environ.get('OUT') else None
    parser.add_argument(
        '--out', type=Path, default=out, help=f'Markdown file (default $OUT/gpu_check.md: {out})'
    )
    parser.add_argument('--only', nargs='+', choices=SECTIONS, default=SECTIONS, metavar='SECTION',
                        help=f'run only these sections (default all: {" ".join(SECTIONS)})')  # fmt: skip
    parser.add_argument('--device', choices=['cuda', 'cpu'], default='cuda' if cuda else 'cpu')
    parser.add_argument(
        '--setting',
        choices=['small', 'medium'],
        default='medium' if cuda else 'small',
        help='speed setting of benchmarks/references.py (default medium on CUDA, else small)',
    )
    parser.add_argument('--repeats', type=int, default=20 if cuda else 3, help='timed runs per cell')
    parser.add_argument('--warmup', type=int, default=3 if cuda else 1, help='untimed runs per cell first')
    parser.add_argument(
        '--max-seconds',
        type=float,
        default=170.0,
        help='speed cells after this many seconds of the whole run are skipped (default 170)',
    )
    parser.add_argument('--append', action='store_true', help='add to --out instead of starting it anew')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not cuda:
        parser.error('--device cuda: torch sees no CUDA device')
    return args


SECTION_TITLES = {
    'env': '1. Environment',
    'attention': '2. Attention backends against math',
    'connectors': '3. Connectors on the device against the CPU',
    'vlm': '4. Tiny VLM, each fusion',
    'speed': '5. Connector speed per attention backend',
}


def _device_usable(device: torch.device) -> bool:
    """False once a CUDA error (an illegal access, a device-side assert) has broken the process's context,
    after which every CUDA call fails."""
    try:
        torch.ones(1, device=device).add_(1).item()
    except Exception:  # noqa: BLE001
        return False
    return True


def run_sections(report: Report, device: torch.device, args) -> list[str]:
    """Runs the sections of ``--only`` in order; returns those left when the device broke."""
    checks = {'env': check_environment, 'attention': check_attention, 'connectors': check_connectors,
              'vlm': check_vlm, 'speed': partial(check_speed, args=args)}  # fmt: skip
    for i, key in enumerate(args.only):
        report.line(f'\n## {SECTION_TITLES[key]}\n')
        began = time.perf_counter()
        report.check(f'section {key} ran to its end', checks[key], report, device)
        report.line(f'\n({time.perf_counter() - began:.1f} s)')
        rest = args.only[i + 1 :]
        if rest and not _device_usable(device):
            report.status('FAIL', 'device usable', f'not after section {key}; {rest} run in a fresh process')
            return rest
    return []


def run_fresh(sections: list[str], args) -> int:
    """Runs ``sections`` in a new process (a fresh CUDA context) that appends to the same report."""
    left = max(0.0, args.max_seconds - (time.perf_counter() - args.start))
    cmd = [sys.executable, str(Path(__file__).resolve()), '--only', *sections, '--append',
           '--device', args.device, '--setting', args.setting, '--repeats', str(args.repeats),
           '--warmup', str(args.warmup), '--max-seconds', f'{left:.0f}']  # fmt: skip
    return subprocess.run(cmd + (['--out', str(args.out)] if args.out else [])).returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.start = time.perf_counter()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 (see the module docstring)
    torch.backends.cudnn.allow_tf32 = False
    report = Report(args.out, append=args.append)
    title = '\n# vlkit GPU check, continued in a fresh process' if args.append else '# vlkit GPU check'
    report.line(f'{title} ({time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})')
    if device.type != 'cuda':
        report.line('\nNo CUDA device: the checks run on the CPU; xformers is SKIP.')
    rest = run_sections(report, device, args)
    fresh_rc = run_fresh(rest, args) if rest else 0
    total = time.perf_counter() - args.start
    summary = ', '.join(f'{report.counts[s]} {s}' for s in ('PASS', 'FAIL', 'SKIP'))
    failed = f'; failed: {report.failed}' if report.failed else ''
    fresh = f'; sections {rest} in a fresh process: exit status {fresh_rc}' if rest else ''
    report.line(f'\n## Summary\n\n{summary} in {total:.0f} s{failed}{fresh}')
    return 1 if report.failed or fresh_rc else 0


if __name__ == '__main__':
    sys.exit(main())
