"""Each vlkit connector with a reference implementation (DESIGN §7), built beside that reference at a
setting's hyper-parameters, with the reference's weights converted into it, so that both compute the same
function. Used by benchmarks/connectors.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from torch import Tensor, nn

from tests.test_equivalence import HoneybeeCAbstractor  # the reference composed from timm's RegStage
from vlkit.convert import convert_state_dict
from vlkit.registry import CONNECTORS


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
    from llava.model.multimodal_projector.builder import build_vision_projector

    cfg = SimpleNamespace(mm_projector_type='mlp2x_gelu', mm_hidden_size=s.in_dim, hidden_size=s.out_dim)
    ref = build_vision_projector(cfg)
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
    from open_flamingo.src.helpers import PerceiverResampler

    ref = PerceiverResampler(dim=s.in_dim, depth=hp['depth'], dim_head=hp['head_dim'], heads=hp['num_heads'],
                             num_latents=hp['num_latents'], ff_mult=hp['mlp_ratio'])  # fmt: skip
    if out_dim is not None:
        ref.projection = nn.Linear(s.in_dim, out_dim)  # BLIP-3's, after the final norm
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
