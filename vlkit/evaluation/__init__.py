from .accuracy_table import format_accuracy_table
from .blank_images import BlankImagePairs, ByVariant
from .cider import CIDErD, cider_d
from .exact_match import ExactMatchAccuracy, normalize_answer
from .few_shot import FewShotDataset, result_filename
from .vqa import VQAAccuracy, normalize_vqa_answer, vqa_score

__all__ = [
    'BlankImagePairs',
    'ByVariant',
    'ExactMatchAccuracy',
    'normalize_answer',
    'format_accuracy_table',
    'VQAAccuracy',
    'normalize_vqa_answer',
    'vqa_score',
    'CIDErD',
    'cider_d',
    'FewShotDataset',
    'result_filename',
]
