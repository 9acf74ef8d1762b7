from torch import Tensor, nn

from vlkit.models.connector import Connector
from vlkit.registry import CONNECTORS


@CONNECTORS.register_module()
class LinearProjector(Connector):
    """LLaVA's projector: one Linear layer per visual token."""

    def __init__(self, *, in_dim: int, out_dim: int | None = None) -> None:
        super().__init__(in_dim=in_dim, out_dim=out_dim)
        self.proj = nn.Linear(self.in_dim, self.out_dim)

    def num_output_tokens(self, num_input_tokens: int) -> int:
        return num_input_tokens

    def forward(self, x: Tensor, mask: Tensor | None = None, grid=None) -> Tensor:
        # x [B, N, in_dim] -> [B, N, out_dim]; tokens are independent, so masked ones change nothing else
        return self.proj(x)
