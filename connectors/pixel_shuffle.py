from einops import rearrange
from torch import Tensor, nn

from vlkit.models.connector import Connector
from vlkit.models.layers import mlp, tokens_to_map
from vlkit.registry import CONNECTORS


@CONNECTORS.register_module()
class PixelShuffleProjector(Connector):
    """Idefics3's and InternVL's pixel shuffle (space-to-depth): each ``factor`` x ``factor`` patch of the
    token grid becomes one token ``factor**2`` times as wide, then an MLP maps it to ``out_dim``.

    The channels of a merged token are ordered (row in patch, column in patch, channel), as in Idefics3.
    ``depth=1`` is Idefics3's projection; InternVL uses ``depth=2`` with ``norm=True`` (a LayerNorm first).
    Masked tokens enter as zeros, so their values never reach the output.
    """

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        factor: int = 2,
        depth: int = 2,
        hidden_dim: int | None = None,
        act: str = 'gelu',
        norm: bool = False,
    ) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        self.factor = factor
        width = self.in_dim * factor * factor
        self.norm = nn.LayerNorm(width) if norm else nn.Identity()
        self.net = mlp(width, hidden_dim or self.out_dim, self.out_dim, depth, act)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return num_input_tokens // self.factor**2

    def forward(self, x: Tensor, mask: Tensor | None = None, grid: tuple[int, int] | None = None) -> Tensor:
        # x [B, N, in_dim], mask [B, N] (True = real) -> [B, N / factor**2, out_dim]
        if mask is not None:
            x = x.masked_fill(~mask[..., None], 0.0)
        fmap = tokens_to_map(x, grid)
        h, w = fmap.shape[-2:]
        if h % self.factor or w % self.factor:
            raise ValueError(
                f'pixel shuffle by factor {self.factor} needs a grid divisible by it, got {(h, w)}'
            )
        merged = rearrange(fmap, 'b c (h s1) (w s2) -> b (h w) (s1 s2 c)', s1=self.factor, s2=self.factor)
        return self.net(self.norm(merged))
