import torch
from torch import Tensor, nn

from vlkit.models.connector import Connector
from vlkit.models.layers import MultiheadAttention, mlp
from vlkit.registry import CONNECTORS

# The Q-Former starts from BERT-base and keeps BERT's LayerNorm epsilon.
BERT_NORM_EPS = 1e-12


class QFormerLayer(nn.Module):
    """One BERT layer of the Q-Former, each sub-block a post-norm residual ``norm(h + f(h))``.

    Self-attention runs over the queries (and InstructBLIP's instruction tokens); only the queries
    cross-attend to the visual tokens (when ``cross_attn``) and go through ``ff``. The instruction tokens
    have a feed-forward of their own, ``text_ff`` (BERT's original one; BLIP-2 adds ``ff`` for the queries).
    """

    def __init__(
        self, dim: int, kv_dim: int, num_heads: int, mlp_dim: int, cross_attn: bool, text_ff: bool
    ) -> None:
        super().__init__()
        self.self_attn = MultiheadAttention(dim, num_heads=num_heads, qkv_bias=True, out_bias=True)
        self.self_attn_norm = nn.LayerNorm(dim, eps=BERT_NORM_EPS)
        self.cross_attn, self.cross_attn_norm = None, None
        if cross_attn:
            self.cross_attn = MultiheadAttention(
                dim, num_heads=num_heads, kv_dim=kv_dim, qkv_bias=True, out_bias=True
            )
            self.cross_attn_norm = nn.LayerNorm(dim, eps=BERT_NORM_EPS)
        self.ff = mlp(dim, mlp_dim, dim, depth=2)
        self.ff_norm = nn.LayerNorm(dim, eps=BERT_NORM_EPS)
        self.text_ff, self.text_ff_norm = None, None
        if text_ff:
            self.text_ff = mlp(dim, mlp_dim, dim, depth=2)
            self.text_ff_norm = nn.LayerNorm(dim, eps=BERT_NORM_EPS)

    def forward(
        self,
        h: Tensor,
        x: Tensor,
        mask: Tensor | None,
        self_mask: Tensor | None,
        num_queries: int,
        keep_text: bool,
    ) -> Tensor:
        # h [B, M + T, dim] (queries, then instruction), x [B, N, kv_dim], mask [B, N], self_mask [B, M + T]
        # -> [B, M + T, dim], or [B, M, dim] without keep_text
        h = self.self_attn_norm(h + self.self_attn(h, None, self_mask))
        queries, text = h[:, :num_queries], h[:, num_queries:]
        if self.cross_attn is not None:
            queries = self.cross_attn_norm(queries + self.cross_attn(queries, x, mask))
        queries = self.ff_norm(queries + self.ff(queries))
        if not keep_text or text.shape[1] == 0:
            return queries
        return torch.cat([queries, self.text_ff_norm(text + self.text_ff(text))], dim=1)


@CONNECTORS.register_module()
class QFormer(Connector):
    """BLIP-2's Querying Transformer (Q-Former), and InstructBLIP's instruction-aware Q-Former.

    Learned query tokens (BLIP-2's ``query_tokens``) pass through a LayerNorm and ``depth`` BERT layers;
    every ``cross_attn_every``-th layer (0, 2, 4, ... for BLIP-2's ``cross_attention_freq=2``) lets the
    queries cross-attend to the visual tokens. A Linear layer (BLIP-2's ``language_projection``) maps the
    queries to ``out_dim``.

    The visual tokens are used as they come: BLIP-2's LayerNorm over them (``ln_vision``, in
    transformers ``Blip2VisionModel.post_layernorm``) is the vision encoder's last layer, which
    ``HFVisionEncoder(layer=None)`` keeps; the connector does not add another.

    With ``instruction_aware=True`` (InstructBLIP), ``forward(..., instruction=...)`` takes the
    instruction's token embeddings (the Q-Former's own BERT word + position embeddings, width ``dim``);
    they share the queries' LayerNorm and self-attention, so the queries extract instruction-relevant
    features. Without an instruction the Q-Former works as BLIP-2's.
    """

    token_knob = 'num_queries'

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        num_queries: int = 32,
        dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        cross_attn_every: int = 2,
        instruction_aware: bool = False,
    ) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        if cross_attn_every < 1:
            raise ValueError(f'cross_attn_every must be >= 1, got {cross_attn_every}')
        self.num_queries = num_queries
        self.instruction_aware = instruction_aware
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.query_norm = nn.LayerNorm(dim, eps=BERT_NORM_EPS)
        self.layers = nn.ModuleList(
            QFormerLayer(dim, in_dim, num_heads, mlp_dim, i % cross_attn_every == 0, instruction_aware)
            for i in range(depth)
        )
        self.projection = nn.Linear(dim, self.out_dim)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return self.num_queries

    def forward(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        grid: tuple[int, int] | None = None,
        *,
        instruction: Tensor | None = None,
        instruction_mask: Tensor | None = None,
    ) -> Tensor:
        # x [B, N, in_dim], mask [B, N], instruction [B, T, dim], instruction_mask [B, T]
        # -> [B, num_queries, out_dim]
        h = self.queries.expand(x.shape[0], -1, -1)
        self_mask = None
        if instruction is not None:
            if not self.instruction_aware:
                raise ValueError('an instruction was given to a QFormer built with instruction_aware=False')
            h = torch.cat([h, instruction], dim=1)
            if instruction_mask is not None:
                self_mask = torch.cat(
                    [instruction_mask.new_ones(x.shape[0], self.num_queries), instruction_mask], 1
                )
        h = self.query_norm(h)
        for i, layer in enumerate(self.layers):
            h = layer(h, x, mask, self_mask, self.num_queries, keep_text=i + 1 < len(self.layers))
        return self.projection(h[:, : self.num_queries])
