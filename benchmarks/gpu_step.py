"""A training step at paper scale on a GPU: tokens/s, step time, peak memory and MFU, eager against compiled.

    python benchmarks/gpu_step.py [--configs llava15_mlp blip3_perceiver] [--batch 8] [--steps 5]
        [--out benchmarks/gpu_step.md]
    python benchmarks/gpu_step.py --smoke    # the same code on tiny models, compiled with backend='eager'

Each config of ``configs/paper/`` (SigLIP-so400m/384 and Phi-3-mini shapes, random weights) is built on the
device with every part's weights in fp32 and trained under bf16 autocast, the language model trained too,
with AdamW: ``--steps`` timed steps after two warm-up steps, first eager, then with ``torch.compile``
applied to the connector and to each decoder layer of the language model (regional compilation: the
compiled code is reused across the identical layers). Reported per config and mode:

* step time (median), tokens per second (visual + text tokens through the language model);
* peak memory (``torch.cuda.max_memory_allocated``);
* MFU: the step's model FLOPs (2·MAC, forward + backward, counted by ``vlkit.analysis.count_flops`` on the
  same batch) / step time / 989 TFLOP/s, the H100 and H200 dense bf16 peak; and the same FLOP rate against the
  matrix-product rate measured in this run (``--matmul``: a large bf16 product, about 790 TFLOP/s on an
  H200).

It also times the connectors alone at a paper batch (16 images x 729 tokens, forward + backward, bf16
autocast) and checks SDPA's memory-efficient kernel against the ``math`` backend (values and gradients, with
key padding and per-query masks). The report goes to ``--out`` as Markdown (the GPU machine's run is kept
in the repository as that file); the same lines are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DENSE_BF16_PEAK = 989e12  # H100 / H200 SXM, dense bf16 (the MFU convention)
PAPER_CONFIGS = ['llava15_mlp', 'blip3_perceiver']


def device() -> torch.device:
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def load_model(name: str, smoke: bool, dev: torch.device):
    """The paper config's model (random weights) on ``dev`` in bf16 precision; a tiny one with ``smoke``."""
    from mmengine.registry import DefaultScope

    from vlkit.config import load_config
    from vlkit.registry import MODELS

    cfg = load_config(str(ROOT / 'configs' / 'paper' / f'{name}.py'))
    model_cfg = cfg.model.to_dict()
    image_size = cfg.model.image_size
    if smoke:
        model_cfg, image_size = _tiny(model_cfg), 32
    model_cfg['precision'] = 'bf16' if dev.type == 'cuda' or _cpu_bf16() else 'fp32'
    with DefaultScope.overwrite_default_scope('vlkit'):
        model = MODELS.build(model_cfg).to(dev).train()
    return model, image_size


def _cpu_bf16() -> bool:
    from vlkit.engine.precision import cpu_bf16_units

    return bool(cpu_bf16_units())


def _tiny(model_cfg: dict) -> dict:
    """The same parts, at the test presets' size (a smoke run on the CPU)."""
    from vlkit.testing import TINY_CONNECTORS, TINY_ENCODERS

    connector = model_cfg['connector']['type']
    llm = dict(model_cfg['language_model'])
    llm['model'] = dict(llm['model'], hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                        num_attention_heads=2, num_key_value_heads=2, vocab_size=64)  # fmt: skip
    llm['tokenizer'] = dict(type='vocab_size_tokenizer', vocab_size=64)
    return dict(model_cfg, vision_encoder=TINY_ENCODERS['HFVisionEncoder'], language_model=llm,
                connector=dict(type=connector, **TINY_CONNECTORS[connector]), image_size=32)  # fmt: skip


def compile_regions(model, **options) -> None:
    """``torch.compile`` on the connector and on each decoder layer of the language model, in place."""
    from vlkit.models.fusion import decoder_layers

    model.connector.compile(**options)
    for layer in decoder_layers(model.language_model.model):
        layer.compile(**options)


def timed_steps(model, batch: dict, steps: int) -> list[float]:
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, fused=None)
    times = []
    for i in range(steps + 2):  # two warm-up steps: compilation, optimizer states
        synchronize()
        start = time.perf_counter()
        model(**batch, mode='loss')['loss'].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize()
        if i >= 2:
            times.append(time.perf_counter() - start)
    return times


def step_flops(model, batch: dict) -> int:
    from vlkit.analysis import count_flops

    flops = count_flops(lambda: model(**batch, mode='loss')['loss'].backward())
    model.zero_grad(set_to_none=True)
    return flops


def matmul_rate(dev: torch.device, n: int = 8192) -> float:
    """FLOP/s of a large bf16 matrix product on ``dev`` (the best of five)."""
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    best = float('inf')
    for _ in range(6):
        synchronize()
        start = time.perf_counter()
        a @ b
        synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def measure_config(name: str, args, dev: torch.device, matmul: float) -> list[str]:
    from vlkit.analysis import make_batch

    rows = []
    for mode in ('eager', 'compiled'):
        torch.manual_seed(0)
        model, image_size = load_model(name, args.smoke, dev)
        batch = make_batch(model, image_size=image_size, text_tokens=args.text_tokens, batch_size=args.batch)
        flops = step_flops(model, batch)
        if mode == 'compiled':  # the smoke run checks the wiring only: no code generation on a CPU
            compile_regions(model, **({'backend': 'eager'} if args.smoke else {}))
        if dev.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        seconds = statistics.median(timed_steps(model, batch, args.steps))
        peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == 'cuda' else float('nan')
        visual = model.connector.num_output_tokens(model.vision_encoder.num_tokens(image_size))
        tokens = args.batch * (visual + args.text_tokens + 1)
        rate = flops / seconds
        rows.append(f'| {name} | {mode} | {args.batch} | {seconds * 1e3:.0f} | {tokens / seconds:,.0f} | '
                    f'{peak:.1f} | {flops / 1e12:.1f} | {100 * rate / DENSE_BF16_PEAK:.1f}% | '
                    f'{100 * rate / matmul:.1f}% |')  # fmt: skip
        print(rows[-1], flush=True)
        del model
        if dev.type == 'cuda':
            torch.cuda.empty_cache()
    return rows


def connector_rows(args, dev: torch.device) -> list[str]:
    """Each paper connector alone: 16 images x 729 SigLIP tokens (1152 wide) -> Phi-3's 3072, fwd + bwd."""
    from vlkit.registry import CONNECTORS
    from vlkit.testing import TINY_CONNECTORS

    rows = []
    connectors = {
        'MLPProjector': dict(depth=2), 'QFormer': {}, 'CAbstractor': dict(input_grid=(27, 27)),
        'PerceiverResampler': dict(num_latents=128, depth=6, num_heads=16, head_dim=96),
    }  # fmt: skip
    images, grid, width, out = (2, (4, 6), 32, 48) if args.smoke else (16, (27, 27), 1152, 3072)
    for name, hp in connectors.items():
        if args.smoke:
            hp = dict(TINY_CONNECTORS[name], **({'input_grid': grid} if name == 'CAbstractor' else {}))
        module = CONNECTORS.build(dict(type=name, in_dim=width, out_dim=out, **hp)).to(dev)
        x = torch.randn(images, grid[0] * grid[1], width, device=dev)
        times = []
        for i in range(args.steps + 2):
            synchronize()
            start = time.perf_counter()
            with torch.autocast(dev.type, dtype=torch.bfloat16) if dev.type == 'cuda' else nullcontext():
                y = module(x, None, grid)
            y.float().square().mean().backward()
            synchronize()
            if i >= 2:
                times.append(time.perf_counter() - start)
        rows.append(f'| {name} | {images} x {grid[0] * grid[1]} | {statistics.median(times) * 1e3:.1f} |')
        print(rows[-1], flush=True)
    return rows


def sdpa_check(dev: torch.device) -> list[str]:
    """SDPA's memory-efficient kernel (CUDA) or the CPU's SDPA against ``math``: values and gradients."""
    from vlkit.ops import attention

    lines = []
    g = torch.Generator(device='cpu').manual_seed(0)
    q, k, v = (torch.randn(2, 8, 33, 64, generator=g).to(dev) for _ in range(3))
    padding = torch.arange(33, device=dev) < torch.tensor([[33], [20]], device=dev)
    per_query = torch.rand(2, 33, 33, generator=g).to(dev) > 0.3
    for label, mask in (('no mask', None), ('key padding', padding), ('per-query', per_query)):
        outs = []
        for backend in ('sdpa', 'math'):
            qs, ks, vs = (t.clone().requires_grad_() for t in (q, k, v))
            kernels = nullcontext()
            if dev.type == 'cuda' and backend == 'sdpa':
                from torch.nn.attention import SDPBackend, sdpa_kernel

                kernels = sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION])
            with kernels:
                out = attention(qs, ks, vs, mask, backend=backend)
            out.square().sum().backward()
            outs.append([out.detach(), qs.grad, ks.grad, vs.grad])
        diff = max((a - b).abs().max().item() for a, b in zip(*outs, strict=True))
        lines.append(f'| {label} | {diff:.1e} |')
        print(lines[-1], flush=True)
    return lines


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--configs', nargs='+', default=PAPER_CONFIGS, choices=PAPER_CONFIGS)
    parser.add_argument('--batch', type=int, default=8, help='samples per step (default 8)')
    parser.add_argument('--text-tokens', type=int, default=64, help='text tokens per sample (default 64)')
    parser.add_argument('--steps', type=int, default=5, help='timed steps (default 5)')
    parser.add_argument('--smoke', action='store_true', help='tiny models on whatever device there is')
    parser.add_argument('--out', help='write the Markdown report here')
    args = parser.parse_args(argv)
    if args.smoke:
        args.batch, args.text_tokens, args.steps = 2, 8, 1
    dev = device()
    matmul = matmul_rate(dev, 512 if args.smoke else 8192)
    name = torch.cuda.get_device_name(0) if dev.type == 'cuda' else 'CPU'
    lines = [f'# GPU step ({name}, torch {torch.__version__}, bf16 matmul {matmul / 1e12:.0f} TFLOP/s)', '',
             '| config | mode | batch | step ms | tokens/s | peak GiB | TFLOP/step | MFU (989) | of matmul |',
             '|---|---|---|---|---|---|---|---|---|']  # fmt: skip
    for config in args.configs:
        lines += measure_config(config, args, dev, matmul)
    lines += ['', '| connector | tokens | fwd + bwd ms |', '|---|---|---|', *connector_rows(args, dev)]
    lines += ['', '| SDPA vs math | max abs diff (values, grads) |', '|---|---|', *sdpa_check(dev)]
    report = '\n'.join(lines) + '\n'
    if args.out:
        Path(args.out).write_text(report)
    return report


if __name__ == '__main__':
    main()
