import torch
from torch import Tensor, nn

from vlkit.models.connector import Connector
from vlkit.models.layers import FeedForward, MultiheadAttention
from vlkit.ops import layer_norm_linear
from vlkit.registry import CONNECTORS


class PerceiverLayer(nn.Module):
    """One resampler layer: latents attend to [media; latents], then a feed-forward, both residual."""

    def __init__(self, dim: int, num_heads: int, head_dim: int, mlp_ratio: int) -> None:
        super().__init__()
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.attn = MultiheadAttention(dim, num_heads=num_heads, head_dim=head_dim)
        self.ff = FeedForward(dim, dim * mlp_ratio)

    def forward(self, x: Tensor, latents: Tensor, mask: Tensor | None) -> Tensor:
        # x [B, N, D], latents [B, M, D], mask [B, N + M] -> [B, M, D]
        normed = self.norm_latents(latents)
        norm, to_kv = self.norm_media, self.attn.to_kv
        # linear(norm(x)); a frozen encoder's x takes a cheaper backward (vlkit.ops.layer_norm_linear)
        media_kv = layer_norm_linear(x, norm.weight, norm.bias, norm.eps, to_kv.weight, to_kv.bias)
        kv = torch.cat([media_kv, self.attn.to_kv(normed)], dim=1)
        latents = latents + self.attn(normed, mask=mask, kv=kv)
        return latents + self.ff(latents)


@CONNECTORS.register_module()
class PerceiverResampler(Connector):
    """Flamingo's Perceiver Resampler (also BLIP-3's and Idefics2's): learned latents cross-attend to the
    visual tokens and to themselves. With ``out_dim`` set, a Linear projection follows the final norm, as
    in BLIP-3; with ``out_dim=None`` the latents stay at ``in_dim``, as in Flamingo. ``latent_init_std`` only
    sets the latents' random initialisation (converted reference weights replace it)."""

    token_knob = 'num_latents'

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        num_latents: int = 64,
        depth: int = 6,
        num_heads: int = 8,
        head_dim: int = 64,
        mlp_ratio: int = 4,
        latent_init_std: float = 0.02,
    ) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        self.num_latents = num_latents
        # Small latents: at initialisation each output is then mostly its attention's average of the
        # image, not a random vector that the image barely perturbs.
        self.latents = nn.Parameter(torch.randn(num_latents, in_dim) * latent_init_std)
        self.layers = nn.ModuleList(
            PerceiverLayer(in_dim, num_heads, head_dim, mlp_ratio) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(in_dim)
        self.projection = nn.Linear(in_dim, out_dim) if out_dim is not None else nn.Identity()

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return self.num_latents

    def forward(self, x: Tensor, mask: Tensor | None = None, grid=None) -> Tensor:
        # x [B, N, in_dim], mask [B, N] (True = real) -> [B, num_latents, out_dim]
        latents = self.latents.expand(x.shape[0], -1, -1)
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(x.shape[0], self.num_latents)], dim=1)
        for layer in self.layers:
            latents = layer(x, latents, mask)
        return self.projection(self.norm(latents))
