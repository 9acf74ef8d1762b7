"""The reference implementations vlkit's connectors and fusion blocks are numerically equal to
(docs/architecture.md, "Reference implementations"), and each vlkit connector paired with its reference.

* Builders of the references (``llava_projector``, ``open_flamingo_perceiver``, ``open_flamingo_gated_block``,
  ``HoneybeeCAbstractor``): the equivalence tests, the parameter-count tests and the benchmarks all build the
  references here. A reference package that is not installed raises ``ImportError`` with the command that
  installs it (an equivalence test then fails; it does not skip).
* ``PAIRS``: each vlkit connector built beside its reference at a setting's hyper-parameters, with the
  reference's weights converted into it, so that both compute the same function (benchmarks/connectors.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import torch
from einops import rearrange
from torch import Tensor, nn

from vlkit.convert import convert_state_dict
from vlkit.registry import CONNECTORS

REFERENCE_INSTALL = (
    'pip install --no-deps llava-torch==1.2.2.post1 open-flamingo==2.0.1 einops-exts==0.0.4 open-clip-torch'
)


def _reference_module(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ImportError(f'the reference implementation {name} does not import ({err}); `make setup` '
                          f'installs it, or: {REFERENCE_INSTALL}') from err  # fmt: skip


def llava_projector(in_dim: int, out_dim: int, depth: int = 2) -> nn.Module:
    """LLaVA's ``build_vision_projector`` of ``mm_projector_type='mlp{depth}x_gelu'`` (keys 0.*, 2.*)."""
    builder = _reference_module('llava.model.multimodal_projector.builder')
    cfg = SimpleNamespace(mm_projector_type=f'mlp{depth}x_gelu', mm_hidden_size=in_dim, hidden_size=out_dim)
    return builder.build_vision_projector(cfg)


def open_flamingo_perceiver(
    dim: int, *, depth: int, head_dim: int, num_heads: int, num_latents: int, mlp_ratio: int,
    projection_dim: int | None = None,
) -> nn.Module:  # fmt: skip
    """open_flamingo's ``PerceiverResampler``; ``projection_dim`` adds BLIP-3's ``projection`` Linear."""
    helpers = _reference_module('open_flamingo.src.helpers')
    ref = helpers.PerceiverResampler(
        dim=dim, depth=depth, dim_head=head_dim, heads=num_heads, num_latents=num_latents, ff_mult=mlp_ratio
    )
    if projection_dim is not None:
        ref.projection = nn.Linear(dim, projection_dim)
    return ref


def open_flamingo_gated_block(dim: int, dim_visual: int, **kwargs) -> nn.Module:
    """open_flamingo's ``GatedCrossAttentionBlock`` (defaults: 8 heads of 64, a 4x feed-forward)."""
    return _reference_module('open_flamingo.src.helpers').GatedCrossAttentionBlock(
        dim=dim, dim_visual=dim_visual, **kwargs
    )


class HoneybeeCAbstractor(nn.Module):
    """Honeybee's C-Abstractor composed from timm's RegStage as kakaobrain/honeybee's ``projectors.py``
    builds it (``pos_emb``, ``net`` = RegStage -> AdaptiveAvgPool2d -> RegStage, ``readout`` MLP with SiLU),
    with the token grid given instead of assumed square (honeybee ships no package to import)."""

    def __init__(
        self, in_dim: int, hidden_dim: int, out_dim: int, depth: int, mlp_depth: int, grid, side: int
    ):
        super().__init__()
        from timm.layers import LayerNorm2d
        from timm.models.regnet import RegStage

        stage = partial(RegStage, stride=1, dilation=1, act_layer=nn.SiLU, norm_layer=LayerNorm2d)
        self.grid = grid
        self.pos_emb = nn.Parameter(torch.randn(1, grid[0] * grid[1], in_dim) * 0.02)
        pool = nn.AdaptiveAvgPool2d((side, side))
        if depth:
            self.net = nn.Sequential(
                stage(depth, in_dim, hidden_dim), pool, stage(depth, hidden_dim, hidden_dim)
            )
        else:  # honeybee keeps only the pooling, and reads out from the encoder's width
            self.net, hidden_dim = pool, in_dim
        readout = [nn.Linear(hidden_dim, out_dim)]
        for _ in range(mlp_depth - 1):
            readout += [nn.SiLU(), nn.Linear(out_dim, out_dim)]
        self.readout = nn.Sequential(*readout)

    def forward(self, x):
        x = rearrange(x + self.pos_emb, 'b (h w) d -> b d h w', h=self.grid[0], w=self.grid[1])
        return self.readout(rearrange(self.net(x), 'b d h w -> b (h w) d'))


@dataclass(frozen=True)
class Setting:
    """The inputs of a setting, and each connector's hyper-parameters (by the name of its pair function)."""

    name: str
    batch: int
    grid: tuple[int, int]
    in_dim: int
    out_dim: int
    hp: dict[str, dict]


SMALL = dict(  # the tiny default model's connector configs (configs/_base_/connectors/, blip3_perceiver.py)
    blip2_qformer=dict(num_queries=32, dim=256, depth=4, num_heads=4, mlp_dim=1024),
    flamingo_perceiver=dict(num_latents=64, depth=2, num_heads=8, head_dim=64, mlp_ratio=4),
    blip3_perceiver=dict(num_latents=32, depth=2, num_heads=4, head_dim=48, mlp_ratio=2),
    c_abstractor=dict(num_tokens=16, depth=3, hidden_dim=256, mlp_depth=2),
)
MEDIUM = dict(  # the papers' hyper-parameters
    blip2_qformer=dict(num_queries=32, dim=768, depth=12, num_heads=12, mlp_dim=3072),
    flamingo_perceiver=dict(num_latents=64, depth=6, num_heads=8, head_dim=64, mlp_ratio=4),
    blip3_perceiver=dict(num_latents=128, depth=6, num_heads=16, head_dim=96, mlp_ratio=4),
    c_abstractor=dict(num_tokens=144, depth=3, hidden_dim=1024, mlp_depth=2),
)
SETTINGS = {
    'small': Setting('small', batch=2, grid=(8, 8), in_dim=192, out_dim=256, hp=SMALL),
    'medium': Setting('medium', batch=2, grid=(27, 27), in_dim=1152, out_dim=2048, hp=MEDIUM),
}


@dataclass
class Pair:
    """A vlkit connector and the reference it is timed against; ``call`` runs the reference on tokens
    [B, N, D] where its own ``forward`` takes another layout."""

    name: str
    ours: nn.Module
    reference: nn.Module
    call: Callable[[Tensor], Tensor] | None = None


def _converted(source: str, reference: nn.Module, **cfg) -> nn.Module:
    """The vlkit connector built from ``cfg``, with the reference's weights converted from ``source``."""
    ours = CONNECTORS.build(cfg)
    ours.load_state_dict(convert_state_dict(source, reference.state_dict()), strict=True)
    return ours


def llava_mlp(s: Setting) -> Pair:
    ref = llava_projector(s.in_dim, s.out_dim)
    ours = _converted('llava.mlp', ref, type='MLPProjector', in_dim=s.in_dim, out_dim=s.out_dim, depth=2)
    return Pair('LLaVA MLP (mlp2x_gelu)', ours, ref)


class Blip2Connector(nn.Module):
    """transformers' Q-Former (SDPA) with BLIP-2's query tokens and language projection, under the key
    names of ``Blip2Model``."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, dim: int, **layers: int) -> None:
        super().__init__()
        from transformers import Blip2QFormerConfig, Blip2QFormerModel

        names = dict(depth='num_hidden_layers', num_heads='num_attention_heads', mlp_dim='intermediate_size')
        cfg = Blip2QFormerConfig(hidden_size=dim, cross_attention_frequency=2, encoder_hidden_size=in_dim,
                                 **{names[k]: v for k, v in layers.items()})  # fmt: skip
        self.query_tokens = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.qformer = Blip2QFormerModel._from_config(cfg, attn_implementation='sdpa')
        self.language_projection = nn.Linear(dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        queries = self.query_tokens.expand(x.shape[0], -1, -1)
        hidden = self.qformer(query_embeds=queries, encoder_hidden_states=x).last_hidden_state
        return self.language_projection(hidden)


def blip2_qformer(s: Setting) -> Pair:
    hp = s.hp['blip2_qformer']
    ref = Blip2Connector(s.in_dim, s.out_dim, **hp)
    ours = _converted('hf.blip2', ref, type='QFormer', in_dim=s.in_dim, out_dim=s.out_dim, **hp)
    return Pair('BLIP-2 Q-Former', ours, ref)


def _perceivers(s: Setting, hp: dict, source: str, out_dim: int | None) -> tuple[nn.Module, nn.Module]:
    """open_flamingo's perceiver and vlkit's, with the weights of the first (and its ``projection``)."""
    ref = open_flamingo_perceiver(s.in_dim, projection_dim=out_dim, **hp)
    return ref, _converted(source, ref, type='PerceiverResampler', in_dim=s.in_dim, out_dim=out_dim, **hp)


def flamingo_perceiver(s: Setting) -> Pair:
    ref, ours = _perceivers(s, s.hp['flamingo_perceiver'], 'open_flamingo.perceiver', None)
    return Pair('open_flamingo perceiver', ours, ref, lambda x: ref(x[:, None, None])[:, 0])


def blip3_perceiver(s: Setting) -> Pair:
    ref, ours = _perceivers(s, s.hp['blip3_perceiver'], 'xgen_mm.perceiver', s.out_dim)
    return Pair('BLIP-3 perceiver', ours, ref, lambda x: ref.projection(ref(x[:, None, None])[:, 0]))


def c_abstractor(s: Setting) -> Pair:
    hp = s.hp['c_abstractor']
    side, width = round(hp['num_tokens'] ** 0.5), hp['hidden_dim']
    ref = HoneybeeCAbstractor(s.in_dim, width, s.out_dim, hp['depth'], hp['mlp_depth'], s.grid, side)
    ours = _converted('honeybee.c_abstractor', ref, type='CAbstractor', in_dim=s.in_dim, out_dim=s.out_dim,
                      input_grid=s.grid, **hp)  # fmt: skip
    return Pair('Honeybee C-Abstractor', ours, ref)  # ours takes the grid from input_grid


PAIRS = [llava_mlp, blip2_qformer, flamingo_perceiver, blip3_perceiver, c_abstractor]
