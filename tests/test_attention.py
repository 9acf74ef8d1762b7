import importlib

import pytest
import torch

from vlkit.ops import AttentionBackendError, attention, available_backends
from vlkit.ops.attention import BACKENDS, CPU_LOW_PRECISION_MATH_SCORES, auto_backend


def _qkv(b=2, h=3, lq=5, lk=7, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, lq, d, generator=g),
        torch.randn(b, h, lk, d, generator=g),
        torch.randn(b, h, lk, d, generator=g),
    )


def _padding_mask(b=2, lk=7):
    mask = torch.ones(b, lk, dtype=torch.bool)
    mask[0, 5:] = False
    mask[1, 2:] = False
    return mask


@pytest.mark.parametrize('causal', [False, True])
@pytest.mark.parametrize('masked', [False, True])
def test_sdpa_matches_math(causal, masked):
    q, k, v = _qkv()
    mask = _padding_mask() if masked else None
    expected = attention(q, k, v, mask, causal=causal, backend='math')
    torch.testing.assert_close(attention(q, k, v, mask, causal=causal, backend='sdpa'), expected)


def test_math_matches_explicit_softmax():
    q, k, v = _qkv()
    mask = _padding_mask()
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~mask[:, None, None], float('-inf'))
    torch.testing.assert_close(attention(q, k, v, mask, backend='math'), scores.softmax(-1) @ v)


def test_masked_keys_do_not_change_output():
    q, k, v = _qkv()
    mask = _padding_mask()
    out = attention(q, k, v, mask)
    k2, v2 = k.clone(), v.clone()
    k2[~mask[:, None, :, None].expand_as(k)] = 100.0
    v2[~mask[:, None, :, None].expand_as(v)] = -100.0
    torch.testing.assert_close(attention(q, k2, v2, mask), out)


@pytest.mark.parametrize('backend', ['math', 'sdpa'])
def test_rows_without_visible_keys_are_zero(backend):
    q, k, v = _qkv()
    mask = torch.ones(2, 5, 7, dtype=torch.bool)
    mask[0, 1] = False  # query 1 of sample 0 sees nothing (text before the first image)
    out = attention(q, k, v, mask, backend=backend)
    assert out.isfinite().all()
    assert (out[0, :, 1] == 0).all() and (out[0, :, 0] != 0).any()


def test_gradients_flow_through_every_backend_on_cpu():
    for backend in available_backends(_qkv()[0]):
        q, k, v = (t.requires_grad_() for t in _qkv())
        attention(q, k, v, _padding_mask(), backend=backend).sum().backward()
        assert all(t.grad is not None and t.grad.isfinite().all() for t in (q, k, v))


class _HostReads(torch.overrides.TorchFunctionMode):
    """Counts what reads a tensor's value on the host (a device sync): bool(), item(), tolist(), int()."""

    READS = {torch.Tensor.__bool__, torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__int__}

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            self.reads.append(func.__name__)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize('backend', ['math', 'sdpa'])
@pytest.mark.parametrize('causal', [False, True])
def test_masked_and_causal_attention_reads_nothing_on_the_host(backend, causal):
    q, k, v = _qkv()
    mask = torch.ones(2, 5, 7, dtype=torch.bool)
    mask[0, 1] = False  # an empty row too
    with _HostReads() as spy:
        attention(q, k, v, mask, causal=causal, backend=backend)
        attention(q, k, v, _padding_mask(), causal=causal, backend=backend)
    assert spy.reads == [], f'{backend} attention read values on the host: {spy.reads}'


def test_explicit_backend_that_cannot_run_lists_why():
    q, k, v = _qkv()
    with pytest.raises(AttentionBackendError, match="'xformers' cannot run.*needs cuda"):
        attention(q, k, v, backend='xformers')
    with pytest.raises(AttentionBackendError, match="unknown attention backend 'flash9'"):
        attention(q, k, v, backend='flash9')


def test_auto_picks_sdpa_on_cpu_for_fp32_and_math_for_short_bf16():
    q, k, v = _qkv()
    assert available_backends(q)[0] == 'sdpa' and auto_backend(q, k, v) == 'sdpa'
    assert auto_backend(q.bfloat16(), k.bfloat16(), v.bfloat16()) == 'math'
    side = int(CPU_LOW_PRECISION_MATH_SCORES**0.5)  # one more query than the square limit: sdpa
    long_q, long_k = torch.zeros(1, 1, side + 1, 8, dtype=torch.bfloat16), torch.zeros(1, 1, side, 8)
    assert auto_backend(long_q, long_k.bfloat16()) == 'sdpa'
    assert auto_backend(long_q[:, :, :side], long_k.bfloat16()) == 'math'


def test_bad_shapes_and_mask_dtype_are_refused():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match='same length'):
        attention(q, k[:, :, :3], v, backend='math')
    with pytest.raises(TypeError, match='must be bool'):
        attention(q, k, v, _padding_mask().float())


@pytest.mark.gpu
@pytest.mark.parametrize('causal', [False, True])
def test_xformers_matches_math_on_cuda(causal):
    pytest.importorskip('xformers')
    q, k, v = (t.cuda() for t in _qkv(lq=16, lk=24, d=64))
    reasons = BACKENDS['xformers'].reasons_not_supported(q, k, v)
    if reasons:  # e.g. a wheel built without CUDA kernels for this torch
        pytest.skip('; '.join(reasons))
    mask = torch.ones(2, 24, dtype=torch.bool, device='cuda')
    mask[1, 10:] = False
    expected = attention(q, k, v, mask, causal=causal, backend='math')
    torch.testing.assert_close(
        attention(q, k, v, mask, causal=causal, backend='xformers'), expected, atol=1e-4, rtol=1e-3
    )


class _FakeXformersOps:
    """Stands in for ``xformers.ops``; ``message`` set: every kernel refuses, as a wheel without CUDA
    kernels does."""

    def __init__(self, message: str | None) -> None:
        self.message = message

    def memory_efficient_attention(self, q, k, v, attn_bias=None):
        if self.message:
            raise NotImplementedError(self.message)
        return q


@pytest.mark.parametrize('works', [True, False])
def test_xformers_is_probed_once_per_kind_of_input(monkeypatch, works):
    attention_module = importlib.import_module('vlkit.ops.attention')
    message = (
        'No operator found for `memory_efficient_attention_forward` with inputs:\n'
        '     query       : shape=(1, 8, 1, 8) (torch.float32)\n'
        '`cutlassF-pt` is not supported because:\n'
        "    xFormers wasn't build with CUDA support\n"
    )
    fake = _FakeXformersOps(None if works else message)
    monkeypatch.setattr(attention_module, '_xformers_ops', lambda: fake)
    attention_module._xformers_kernel_problem.cache_clear()
    try:
        problem = attention_module._xformers_kernel_problem(torch.device('cpu'), torch.float32, 8, 8)
    finally:
        attention_module._xformers_kernel_problem.cache_clear()
    if works:
        assert problem is None
    else:
        assert "no kernel for torch.float32 (q/k width 8, v width 8) on cpu: xFormers wasn't build" in problem
