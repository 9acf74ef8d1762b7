"""Cost of the two fusions in one language-model decoder layer as images and text grow (Idefics2, Figure 4).

    python benchmarks/fusion_scaling.py [--threads 2] [--repeats 5] [--quick] [--no-save]

Fully autoregressive fusion (``AutoregressiveFusion``) replaces each ``<image>`` marker of a T-token text by
the image's M visual tokens, so the decoder layer runs over T + n·(M - 1) tokens for n images.
Cross-attention fusion (``CrossAttentionFusion``) keeps the T tokens and puts a gated cross-attention block
before the layer, each token attending to the n·M visual tokens under Flamingo's media masking. Both run
the same Hugging Face Llama decoder layer, through vlkit's own fusion modules (the cross-attention block is
attached and masked by ``CrossAttentionFusion`` itself), with every weight trainable.

Medium setting: a Llama layer of width 2048, 16 heads of 128 (no grouped keys), MLP 5632 (TinyLlama-1.1B's
widths), SDPA attention; M = 64 visual tokens per image (a perceiver's output); the cross-attention block
as configs/_base_/fusions/cross_attention.py sets it (8 heads of 64, 4x feed-forward), one per layer
(``every=1``; with ``every=k`` a layer carries 1/k of a block). Batch 1, fp32, on the CPU.

A run is forward + backward from fresh gradients (the sum of the layer's output as the loss); FA and CA
alternate; each time is the median of ``--repeats`` runs after one untimed run (fewer where a run pair
takes over ``--slow`` seconds). FLOPs (2·MAC, forward + backward, SDPA counted) by
``vlkit.analysis.count_flops``. Peak memory is the most bytes of tensor storage alive at once during one
forward + backward (``vlkit.analysis.memory.PeakMemory``, a dispatch-mode storage tracker): the layer's and
block's weights, the inputs, activations and gradients; kernel workspaces and allocator overhead are not
seen. The table is appended to benchmarks/RESULTS.md and plotted to benchmarks/fusion_scaling.png.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.config import Config
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for benchmarks.connectors, run as a script

from benchmarks.connectors import machine, matmul_peak, publish  # noqa: E402
from vlkit.analysis import flop_counter  # noqa: E402
from vlkit.analysis.memory import PeakMemory, state_tensors  # noqa: E402
from vlkit.models.fusion import FusionInputs, LanguageModelInputs  # noqa: E402
from vlkit.registry import FUSIONS, LANGUAGE_MODELS  # noqa: E402

PLOT = ROOT / 'benchmarks' / 'fusion_scaling.png'
FUSION_PRESET = ROOT / 'configs' / '_base_' / 'fusions' / 'cross_attention.py'
TEXT_TOKEN_ID = 4  # any id that is not <image>: the vocabulary of vocab_size_tokenizer
SLOW_RUNS = 3  # timed runs at the points slower than --slow
COLUMNS = ['images', 'text tokens', 'FA tokens', 'CA tokens', 'CA visual keys', 'FA ms', 'CA ms', 'CA / FA',
           'FA GFLOP', 'CA GFLOP', 'FA peak MiB', 'CA peak MiB', 'runs']  # fmt: skip


@dataclass(frozen=True)
class Setting:
    """The decoder layer (a one-layer HF config dict), visual tokens per image, and the grid."""

    name: str
    llm: dict
    visual_tokens: int
    images: tuple[int, ...]
    text_tokens: tuple[int, ...]


def _llama(hidden: int, heads: int, mlp: int) -> dict:
    """A one-layer Llama config dict (no grouped keys)."""
    return dict(
        model_type='llama',
        hidden_size=hidden,
        intermediate_size=mlp,
        num_hidden_layers=1,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=4096,
    )


SETTINGS = {
    'medium': Setting('medium', _llama(2048, 16, 5632), 64, (1, 2, 4, 8), (128, 256, 512, 1024, 2048)),
    'quick': Setting('quick', _llama(128, 4, 344), 8, (1, 2), (16, 32)),  # for tests: seconds
}


@dataclass
class Bench:
    """One decoder layer (inside a one-layer HF model) under each fusion: ``language_model`` for
    ``autoregressive``, and a copy with the same weights that ``cross`` is attached to."""

    language_model: nn.Module
    autoregressive: nn.Module
    cross_language_model: nn.Module
    cross: nn.Module

    def decoder(self, fusion: str) -> nn.Module:
        """The HF model of ``fusion`` ('FA' or 'CA') without its output head: embeddings (unused), the layer
        and the final norm."""
        model = self.language_model if fusion == 'FA' else self.cross_language_model
        return model.model.get_decoder()


def build_bench(s: Setting) -> Bench:
    """The layer with random weights, an ``AutoregressiveFusion``, and a ``CrossAttentionFusion`` from the
    cross-attention preset with one block per layer, its gates open and the layer left trainable."""
    tokenizer = dict(type='vocab_size_tokenizer', vocab_size=8)
    lm = LANGUAGE_MODELS.build(dict(type='HFCausalLM', model=s.llm, tokenizer=tokenizer, train='full'))
    cross_lm = copy.deepcopy(lm)
    preset = Config.fromfile(str(FUSION_PRESET)).fusion.to_dict()
    cross = FUSIONS.build({**preset, 'every': 1, 'freeze_language_model': False})
    cross.attach(cross_lm)
    with torch.no_grad():  # open the tanh gates, as training leaves them: gradients reach the visual tokens
        for name, p in cross.named_parameters():
            if name.endswith('_gate'):
                p.fill_(1.0)
    return Bench(lm, FUSIONS.build(dict(type='AutoregressiveFusion')), cross_lm, cross)


@dataclass
class Inputs:
    """A batch of one: T token ids with n ``<image>`` markers, the layer's input hidden states for them, and
    the n images' visual tokens (both requiring gradients, as a layer inside a trained model sees them)."""

    input_ids: Tensor  # [1, T]
    attention_mask: Tensor  # [1, T]
    text: Tensor  # [1, T, D]
    visual: Tensor  # [n, M, D]
    image_token_id: int


def make_inputs(bench: Bench, text_tokens: int, images: int, visual_tokens: int) -> Inputs:
    """Markers spread evenly through the text (an interleaved document), the first at position 0."""
    if images > text_tokens:
        raise ValueError(
            f'{images} images need at least as many text tokens (one marker each), got {text_tokens}'
        )
    image_id = bench.language_model.image_token_id
    ids = torch.full((1, text_tokens), TEXT_TOKEN_ID)
    ids[0, torch.arange(images) * text_tokens // images] = image_id
    dim = bench.language_model.hidden_size
    text = torch.randn(1, text_tokens, dim, requires_grad=True)
    visual = torch.randn(images, visual_tokens, dim, requires_grad=True)
    return Inputs(ids, torch.ones_like(ids), text, visual, image_id)


def _fused(fusion: nn.Module, x: Inputs) -> LanguageModelInputs:
    return fusion(FusionInputs(x.input_ids, x.attention_mask, x.text, x.visual, x.image_token_id))


def autoregressive_step(bench: Bench, x: Inputs) -> dict[str, int]:
    """FA forward + backward: the visual tokens spliced into the sequence, then the layer over all of it."""
    inputs = _fused(bench.autoregressive, x)
    bench.autoregressive.call_language_model(bench.decoder('FA'), inputs).last_hidden_state.sum().backward()
    return {'tokens': inputs.inputs_embeds.shape[1], 'visual keys': 0}


def cross_attention_step(bench: Bench, x: Inputs) -> dict[str, int]:
    """CA forward + backward: the text through the fusion's gated cross-attention block (its media masking,
    hooked before the layer by ``CrossAttentionFusion``), then the layer over the text."""
    inputs = _fused(bench.cross, x)
    media = inputs.conditioning.media  # [1, n, M, D]
    bench.cross.call_language_model(bench.decoder('CA'), inputs).last_hidden_state.sum().backward()
    return {'tokens': inputs.inputs_embeds.shape[1], 'visual keys': media.shape[1] * media.shape[2]}


STEPS = {'FA': autoregressive_step, 'CA': cross_attention_step}


def _fresh(bench: Bench, x: Inputs) -> None:
    for module in (bench.language_model, bench.cross_language_model, bench.cross):
        module.zero_grad(set_to_none=True)
    x.text.grad = x.visual.grad = None


def _state(bench: Bench, x: Inputs, fusion: str) -> list[Tensor]:
    """What exists before a step: the weights it uses (the block's only under CA) and the inputs."""
    tensors = state_tensors(bench.decoder(fusion)) + [x.text, x.visual]
    return tensors + (state_tensors(bench.cross) if fusion == 'CA' else [])


def profile_step(bench: Bench, x: Inputs, fusion: str) -> dict:
    """One untimed step of ``fusion`` ('FA' or 'CA') counting its FLOPs and peak tensor memory."""
    _fresh(bench, x)
    start = time.perf_counter()
    with PeakMemory() as memory, flop_counter() as counter:
        memory.track(_state(bench, x, fusion))
        sizes = STEPS[fusion](bench, x)
    seconds = time.perf_counter() - start
    return {**sizes, 'gflop': counter.get_total_flops() / 1e9, 'peak MiB': memory.peak_bytes / 2**20,
            'seconds': seconds}  # fmt: skip


def time_steps(bench: Bench, x: Inputs, runs: int) -> dict[str, float]:
    """Median milliseconds of ``runs`` forward + backward steps of each fusion, alternating (neither always
    runs second, on a warmer cache)."""
    times: dict[str, list[float]] = {name: [] for name in STEPS}
    for i in range(runs):
        for name in STEPS if i % 2 == 0 else reversed(STEPS):
            _fresh(bench, x)
            start = time.perf_counter()
            STEPS[name](bench, x)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def measure_point(bench: Bench, s: Setting, text_tokens: int, images: int, repeats: int, slow: float) -> dict:
    """One grid point: the profiled step of each fusion (which also warms up), then the timed runs."""
    x = make_inputs(bench, text_tokens, images, s.visual_tokens)
    profiled = {name: profile_step(bench, x, name) for name in STEPS}
    pair_seconds = sum(p['seconds'] for p in profiled.values())
    runs = repeats if pair_seconds <= slow else min(repeats, SLOW_RUNS)
    ms = time_steps(bench, x, runs)
    return {'images': images, 'text tokens': text_tokens, 'runs': runs, 'ms': ms, **profiled}


def run_grid(s: Setting, repeats: int, slow: float) -> list[dict]:
    """Every (images, text tokens) point of ``s``, with a progress line each on stderr."""
    torch.manual_seed(0)
    bench = build_bench(s)
    points = [(n, t) for n in s.images for t in s.text_tokens]
    rows = []
    for i, (n, t) in enumerate(points, 1):
        rows.append(measure_point(bench, s, t, n, repeats, slow))
        r = rows[-1]
        fa, ca = (f'{r["ms"][f]:.0f} ms ({r[f]["tokens"]} tokens)' for f in ('FA', 'CA'))
        line = f'[{i}/{len(points)}] {n} images, {t} text tokens: FA {fa}, CA {ca}, median of {r["runs"]}'
        print(line, file=sys.stderr, flush=True)
    return rows


def _cells(r: dict) -> list[str]:
    fa, ca, ms = r['FA'], r['CA'], r['ms']
    counts = [r['images'], r['text tokens'], fa['tokens'], ca['tokens'], ca['visual keys']]
    return [*map(str, counts), f'{ms["FA"]:.0f}', f'{ms["CA"]:.0f}', f'{ms["CA"] / ms["FA"]:.2f}',
            f'{fa["gflop"]:.4g}', f'{ca["gflop"]:.4g}', f'{fa["peak MiB"]:.0f}', f'{ca["peak MiB"]:.0f}',
            str(r['runs'])]  # fmt: skip


def table(s: Setting, rows: list[dict]) -> str:
    """The Markdown table of a run, under a line that says what was measured."""
    llm = s.llm
    title = (f'**fusion scaling, {s.name}** (one Llama decoder layer, width {llm["hidden_size"]}, '
             f'{llm["num_attention_heads"]} heads, MLP {llm["intermediate_size"]}; {s.visual_tokens} visual '
             'tokens per image; batch 1, fp32, forward + backward; FA = autoregressive, CA = cross-attention '
             'block + layer; peak = tensor storage alive, weights included)')  # fmt: skip
    lines = [title, '', '| ' + ' | '.join(COLUMNS) + ' |', '|---' * len(COLUMNS) + '|']
    return '\n'.join(lines + ['| ' + ' | '.join(_cells(r)) + ' |' for r in rows])


def plot(s: Setting, rows: list[dict], path: Path) -> None:
    """Two panels against text tokens, one colour per image count: time, and peak memory; FA solid, CA
    dashed; log axes (the grid doubles)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = plt.get_cmap('viridis')([i / max(len(s.images) - 1, 1) * 0.85 for i in range(len(s.images))])
    panels = [(lambda r, f: r['ms'][f], 'forward + backward time (ms)'),
              (lambda r, f: r[f]['peak MiB'], 'peak tensor memory (MiB)')]  # fmt: skip
    for ax, (value, label) in zip(axes, panels, strict=True):
        for n, colour in zip(s.images, colours, strict=True):
            points = [r for r in rows if r['images'] == n]
            t = [r['text tokens'] for r in points]
            for fusion, style in (('FA', '-'), ('CA', '--')):
                ax.plot(t, [value(r, fusion) for r in points], style, color=colour, marker='o', ms=3,
                        label=f'{fusion}, {n} image{"s" * (n > 1)}')  # fmt: skip
        ax.set(xscale='log', yscale='log', xlabel='text tokens T', ylabel=label)
        ax.set_xticks(s.text_tokens, [str(t) for t in s.text_tokens])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1, 2, 3, 5, 7)))  # labels within a decade too
        ax.yaxis.set_major_formatter(ticker.StrMethodFormatter('{x:g}'))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, ncol=2)
    llm = s.llm
    m = s.visual_tokens
    title = (
        f'One Llama decoder layer (width {llm["hidden_size"]}, MLP {llm["intermediate_size"]}), {m} visual '
        f'tokens per image\nautoregressive fusion (solid, T + n·{m - 1} tokens) vs gated cross-attention '
        '(dashed, T tokens)'
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument('--threads', type=int, default=2, help='torch threads for every run (default 2)')
    parser.add_argument('--repeats', type=int, default=5, help='timed runs per fusion and point (default 5)')
    slow_help = f'points whose FA + CA pair takes longer (s) get {SLOW_RUNS} runs (default 5)'
    parser.add_argument('--slow', type=float, default=5.0, help=slow_help)
    parser.add_argument('--quick', action='store_true', help='a tiny layer on a 2 x 2 grid (seconds; tests)')
    parser.add_argument('--no-save', action='store_true', help='print only; write neither RESULTS.md nor PNG')
    return parser


def main(argv: list[str] | None = None) -> list[dict]:
    """Runs the grid, prints the machine line and the table; appends them to RESULTS.md and plots unless
    ``--no-save``. Returns the rows."""
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    s = SETTINGS['quick' if args.quick else 'medium']
    matmul_size = 256 if args.quick else 2048
    peak = matmul_peak(matmul_size)
    rows = run_grid(s, args.repeats, args.slow)
    peak = max(peak, matmul_peak(matmul_size))  # the better of two, in case of load elsewhere at one
    fewer = min(args.repeats, SLOW_RUNS)
    runs = f'median of {args.repeats} runs ({fewer} where an FA + CA pair took over {args.slow:g} s)'
    text = machine(args.threads, args.repeats, peak, runs) + '\n\n' + table(s, rows)
    publish(text, save=not args.no_save)
    if not args.no_save:
        plot(s, rows, PLOT)
    return rows


if __name__ == '__main__':
    main()
