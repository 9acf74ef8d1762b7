"""Source formats for ``tools/prepare_data.py``, one file per family, registered in ``DATA_FORMATS`` under their command-line names
(docs/data.md). A format of your own registers the same way (:mod:`vlkit.data.formats.base`)."""

from .base import BadRecord, DataFormat, Record, Sample
from .captions import COCOCaptions, Karpathy
from .documents import MMC4, OBELICS
from .llava import LLaVA
from .vqa import GQA, VQA, TextVQA, VizWiz

__all__ = [
    'BadRecord', 'DataFormat', 'Record', 'Sample', 'COCOCaptions', 'Karpathy', 'MMC4', 'OBELICS', 'LLaVA',
    'GQA', 'VQA', 'TextVQA', 'VizWiz',
]  # fmt: skip
