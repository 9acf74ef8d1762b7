from __future__ import annotations

import torch
from mmengine.runner.checkpoint import CheckpointLoader


def register_trusted_checkpoint_loader() -> None:
    """Lets ``--resume`` read the toolkit's own checkpoints under torch >= 2.6.

    torch now loads with ``weights_only=True`` by default, but MMEngine's checkpoints pickle its message
    hub (``HistoryBuffer``) and numpy objects. Local paths are checkpoints this toolkit wrote, so they are
    loaded in full; weights from outside go through ``weights_only=True`` or safetensors instead
    (see ``vlkit.models.encoders.timm_encoder``).
    """

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_local(filename: str, map_location=None):
        return torch.load(filename, map_location=map_location, weights_only=False)
