from torch import Tensor

from vlkit.models.connector import Connector
from vlkit.models.layers import mlp
from vlkit.registry import CONNECTORS


@CONNECTORS.register_module()
class MLPProjector(Connector):
    """LLaVA-1.5's ``mlp2x_gelu`` projector: ``depth`` Linear layers with GELU between, per visual token."""

    def __init__(
        self,
        *,
        in_dim: int,
        out_dim: int | None = None,
        depth: int = 2,
        hidden_dim: int | None = None,
        act: str = 'gelu',
    ) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        self.net = mlp(self.in_dim, hidden_dim or self.out_dim, self.out_dim, depth, act)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return num_input_tokens

    def forward(self, x: Tensor, mask: Tensor | None = None, grid=None) -> Tensor:
        # x [B, N, in_dim] -> [B, N, out_dim]
        return self.net(x)
