import torch
from einops import rearrange
from torch import Tensor, nn

from vlkit.models.connector import Connector
from vlkit.models.layers import mlp, tokens_to_map
from vlkit.registry import CONNECTORS


@CONNECTORS.register_module()
class AvgPoolProjector(Connector):
    """MM1's average-pooling connector: adaptive average pooling of the token grid to a ``sqrt(num_tokens)``
    square, then an MLP per pooled token (``depth=1`` is MM1's linear projection; the default is LLaVA-1.5's
    ``mlp2x_gelu``).

    Masked tokens are left out of the averages; a pooling cell with no real token outputs the MLP of zeros.
    """

    token_knob = 'num_tokens'

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        num_tokens: int = 144,
        depth: int = 2,
        hidden_dim: int | None = None,
        act: str = 'gelu',
    ) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        side = round(num_tokens**0.5)
        if side * side != num_tokens:
            raise ValueError(f'AvgPoolProjector num_tokens must be a square number, got {num_tokens}')
        self.num_tokens = num_tokens
        self.pool = nn.AdaptiveAvgPool2d(side)
        self.net = mlp(self.in_dim, hidden_dim or self.out_dim, self.out_dim, depth, act)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return self.num_tokens

    def forward(self, x: Tensor, mask: Tensor | None = None, grid: tuple[int, int] | None = None) -> Tensor:
        # x [B, N, in_dim], mask [B, N] (True = real) -> [B, num_tokens, out_dim]
        if mask is None:
            pooled = self.pool(tokens_to_map(x, grid))
        else:
            # the mean over real tokens: the zero-filled mean divided by the share of real tokens
            real = mask[..., None].to(x.dtype)
            total = self.pool(tokens_to_map(x * real, grid))
            share = self.pool(tokens_to_map(real, grid))
            pooled = total / share.clamp_min(torch.finfo(share.dtype).eps)
        return self.net(rearrange(pooled, 'b c h w -> b (h w) c'))
