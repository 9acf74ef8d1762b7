from .accuracy_table import format_accuracy_table
from .benchmarks import (
    BENCHMARKS,
    BenchmarkVQAAccuracy,
    COCOCaption,
    GQAAccuracy,
    VizWizAccuracy,
    benchmark,
    submission_entry,
)
from .blank_images import BlankImagePairs, ByVariant
from .cider import CIDErD, caption_scores, cider_d
from .exact_match import ExactMatchAccuracy, normalize_answer
from .few_shot import FewShotDataset, result_filename
from .vqa import VQAAccuracy, normalize_evalai_answer, normalize_vqa_answer, vqa_score

__all__ = [
    'BlankImagePairs',
    'ByVariant',
    'BENCHMARKS',
    'BenchmarkVQAAccuracy',
    'COCOCaption',
    'GQAAccuracy',
    'VizWizAccuracy',
    'benchmark',
    'caption_scores',
    'submission_entry',
    'ExactMatchAccuracy',
    'normalize_answer',
    'format_accuracy_table',
    'VQAAccuracy',
    'normalize_evalai_answer',
    'normalize_vqa_answer',
    'vqa_score',
    'CIDErD',
    'cider_d',
    'FewShotDataset',
    'result_filename',
]
