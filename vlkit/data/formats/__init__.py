"""Source formats for ``tools/prepare_data.py``, one file per format, registered in ``DATA_FORMATS`` under
their command-line names
(docs/data.md). A format of your own registers the same way (:mod:`vlkit.data.formats.base`)."""

from .base import BadRecord, DataFormat, Record, Sample
from .coco_captions import COCOCaptions
from .gqa import GQA
from .karpathy import Karpathy
from .llava import LLaVA
from .mmc4 import MMC4
from .obelics import OBELICS
from .textvqa import TextVQA
from .vizwiz import VizWiz
from .vqa import VQA

__all__ = [
    'BadRecord',
    'DataFormat',
    'Record',
    'Sample',
    'COCOCaptions',
    'Karpathy',
    'MMC4',
    'OBELICS',
    'LLaVA',
    'GQA',
    'VQA',
    'TextVQA',
    'VizWiz',
]
