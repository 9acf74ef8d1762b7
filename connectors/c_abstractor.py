from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vlkit.models.connector import Connector
from vlkit.models.layers import mlp
from vlkit.ops import needs_only_parameter_grads
from vlkit.registry import CONNECTORS

# timm's LayerNorm-with-activation over channels, which RegStage builds from Honeybee's LayerNorm2d.
NORM_EPS = 1e-5

# The network runs on channels-last maps [B, h, w, C]: the LayerNorms over channels need no permutes, and
# the convolutions and the pooling see an NCHW view of them in channels_last memory format (no copy), which
# the CPU's convolution kernels take directly. Parameter names and shapes are those of timm's RegStage.


class PositionedTokens(NamedTuple):
    """The input map ``(tokens + pos) * keep`` [B, h, w, C], not yet formed: the first block's 1x1
    convolutions take it as it is, so that the position embedding's gradient is summed over the batch before
    its product with their weights (:class:`_PositionedLinear`)."""

    tokens: Tensor  # [B, h, w, C]
    pos: Tensor  # [h, w, C]
    keep: Tensor | None  # [B, h, w, 1] bool, False at masked tokens

    def materialize(self) -> Tensor:
        x = self.tokens + self.pos
        return x if self.keep is None else x.masked_fill(~self.keep, 0.0)


def _nchw(x: Tensor) -> Tensor:
    """[B, h, w, C] -> an NCHW view [B, C, h, w] in channels_last memory format (no copy)."""
    return x.permute(0, 3, 1, 2)


def _nhwc(x: Tensor) -> Tensor:
    """The inverse of :func:`_nchw`; a view when ``x`` is in channels_last memory format."""
    return x.permute(0, 2, 3, 1)


class _PositionedLinear(torch.autograd.Function):
    """``linear(x + pos, W)``, zero at masked rows, for an ``x`` that needs no gradient (a frozen encoder's
    tokens).

    Autograd would form the gradient of every sample's input, ``dY_b W``, only to sum it over the batch for
    ``pos``; summing first costs one product instead of B: ``dpos = (sum_b keep_b * dY_b) W``.
    """

    @staticmethod
    def forward(ctx, x, pos, keep, weight):
        h = PositionedTokens(x, pos, keep).materialize()
        ctx.save_for_backward(h, keep, weight)
        return F.linear(h, weight)

    @staticmethod
    def backward(ctx, grad_y):
        h, keep, weight = ctx.saved_tensors
        grad_weight = grad_y.flatten(0, -2).T @ h.flatten(0, -2)
        summed = (grad_y if keep is None else grad_y.masked_fill(~keep, 0.0)).sum(0)
        return None, summed @ weight, None, grad_weight


class PointwiseConv(nn.Conv2d):
    """A 1x1 convolution of channels-last maps [B, h, w, C_in] -> [B, h, w, C_out], run on their NCHW
    view (a convolution kernel beat a matrix product over C on a CPU: benchmarks/RESULTS.md)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__(in_dim, out_dim, 1, bias=bias)

    def forward(self, x: Tensor | PositionedTokens) -> Tensor:
        if isinstance(x, PositionedTokens):
            if self.bias is None and needs_only_parameter_grads(x.tokens):
                return _PositionedLinear.apply(x.tokens, x.pos, x.keep, self.weight.flatten(1))
            x = x.materialize()
        return _nhwc(super().forward(_nchw(x)))


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: each channel is scaled by a gate computed from all channels' spatial means."""

    def __init__(self, dim: int, reduced_dim: int) -> None:
        super().__init__()
        self.reduce = PointwiseConv(dim, reduced_dim)
        self.expand = PointwiseConv(reduced_dim, dim)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        # x [B, h, w, C] -> [B, h, w, C]
        gate = self.expand(self.act(self.reduce(x.mean((1, 2), keepdim=True))))
        return x * gate.sigmoid()


class RegBlock(nn.Module):
    """RegNet's bottleneck block with squeeze-excitation, as Honeybee builds it (timm ``RegStage`` with SiLU
    and a LayerNorm over channels; bottleneck ratio 1, group width 1, SE width a quarter of the input width):
    1x1 conv, depthwise 3x3 conv, SE, 1x1 conv, and a residual that is a 1x1 conv + norm when the width
    changes. Works on channels-last maps."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.conv1 = PointwiseConv(in_dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.norm2 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.se = SqueezeExcite(dim, round(in_dim * 0.25))
        self.conv3 = PointwiseConv(dim, dim, bias=False)
        self.norm3 = nn.LayerNorm(dim, eps=NORM_EPS)
        self.shortcut = nn.Identity()
        if in_dim != dim:
            self.shortcut = nn.Sequential(
                PointwiseConv(in_dim, dim, bias=False), nn.LayerNorm(dim, eps=NORM_EPS)
            )
        self.act = nn.SiLU()

    def forward(self, x: Tensor | PositionedTokens) -> Tensor:
        # x [B, h, w, in_dim] (the first block: PositionedTokens) -> [B, h, w, dim]
        y = self.act(self.norm1(self.conv1(x)))
        y = self.act(self.norm2(_nhwc(self.conv2(_nchw(y)))))
        y = self.norm3(self.conv3(self.se(y)))
        if isinstance(x, PositionedTokens) and isinstance(self.shortcut, nn.Identity):
            x = x.materialize()
        return self.act(y + self.shortcut(x))


@CONNECTORS.register_module()
class CAbstractor(Connector):
    """Honeybee's C-Abstractor (also MM1's C-Abstractor): a locality-preserving convolutional resampler.

    A learned position embedding over the encoder's ``input_grid`` is added to the tokens; as a feature
    map they pass ``depth`` RegNet bottleneck blocks (:class:`RegBlock`), adaptive average pooling to a
    ``sqrt(num_tokens)`` square, ``depth`` more blocks, and an MLP readout (``mlp_depth`` Linear layers
    with SiLU between) to ``out_dim``. With ``depth=0`` only the pooling and the readout remain. The grid
    may be non-square.

    Masked tokens enter the network as zeros (after the position embedding), so their values never
    reach the output; as zeros they still take part in the convolutions and the pooling.
    """

    token_knob = 'num_tokens'

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        input_grid: tuple[int, int],
        num_tokens: int = 144,
        depth: int = 3,
        hidden_dim: int = 1024,
        mlp_depth: int = 2,
    ) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        side = round(num_tokens**0.5)
        if side * side != num_tokens:
            raise ValueError(f'CAbstractor num_tokens must be a square number, got {num_tokens}')
        self.input_grid = tuple(input_grid)
        self.num_tokens = num_tokens
        self.pos_emb = nn.Parameter(torch.zeros(self.input_grid[0] * self.input_grid[1], in_dim))
        nn.init.trunc_normal_(self.pos_emb, std=0.02)
        self.stage1 = nn.Sequential(
            *(RegBlock(in_dim if i == 0 else hidden_dim, hidden_dim) for i in range(depth))
        )
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.stage2 = nn.Sequential(*(RegBlock(hidden_dim, hidden_dim) for _ in range(depth)))
        self.readout = mlp(hidden_dim if depth else in_dim, self.out_dim, self.out_dim, mlp_depth, act='silu')

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return self.num_tokens

    def forward(self, x: Tensor, mask: Tensor | None = None, grid: tuple[int, int] | None = None) -> Tensor:
        # x [B, N, in_dim], mask [B, N] (True = real) -> [B, num_tokens, out_dim]
        grid = self.input_grid if grid is None else tuple(grid)
        if grid != self.input_grid or x.shape[1] != grid[0] * grid[1]:
            raise ValueError(
                f'CAbstractor was built for input_grid {self.input_grid} (its position embedding), '
                f'got {x.shape[1]} tokens on grid {grid}'
            )
        b = x.shape[0]
        keep = None if mask is None else mask.view(b, *grid, 1)
        y = PositionedTokens(x.view(b, *grid, -1), self.pos_emb.view(*grid, -1), keep)
        y = self.stage1(y) if len(self.stage1) else y.materialize()
        y = self.stage2(_nhwc(self.pool(_nchw(y))))
        return self.readout(y.flatten(1, 2))
