from .exact_match import ExactMatchAccuracy, normalize_answer
from .report import format_accuracy_table

__all__ = ['ExactMatchAccuracy', 'normalize_answer', 'format_accuracy_table']
