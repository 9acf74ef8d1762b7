"""VQA accuracy, with the answer processing of each benchmark's reference evaluation.

``processing='vqa'``, the official VQAv2 evaluation (``vqaEval.py`` of the VQA API, which VQAv2's
test-dev server and LAVIS run; VQAv2 and OK-VQA): the prediction is normalised: punctuation is removed (or
turned into a space), periods not followed by a digit are dropped, the text is lower-cased, number words
``zero``..``ten`` (and ``none``) become digits, the articles ``a``/``an``/``the`` are dropped and
apostrophe-less contractions get their apostrophe back (``dont`` -> ``don't``). The human answers are not:
only their punctuation is processed, and only when they disagree; unanimous answers are compared as they
are. (The released annotations are already normalised, so this matters only for other annotation files.)

``processing='evalai'``, EvalAI's answer processor (``EvalAIAnswerProcessor``), as LLaVA's TextVQA
evaluator (m4c's) and lmms-eval's TextVQA and VizWiz tasks use it: prediction and human answers alike are
lower-cased, lose their commas and question marks, have ``'s`` split off (``dog's`` -> ``dog 's``), and
then get the normalisation above.

The score of one prediction against the human answers is the official leave-one-out average: for each
of the n human answers, ``min(#matches among the other n - 1 answers / 3, 1)``, averaged over the n
subsets. With VQAv2's 10 answers this is ``min(#matching humans / 3, 1)`` whenever the prediction is
matched by 0 or at least 4 humans, and 0.3 / 0.6 / 0.9 (not 1/3, 2/3, 1) for 1, 2 or 3 matching humans.

One documented difference from the scripts: a single reference answer (a benchmark with one answer per
question) is normalised as the prediction is and scores 1 on a match and 0 otherwise, as if every annotator
had given it (the leave-one-out formula would give 0 with no other annotator).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

from mmengine.evaluator import BaseMetric

from ..registry import METRICS

NUMBER_WORDS = {
    'none': '0', 'zero': '0', 'one': '1', 'two': '2', 'three': '3', 'four': '4', 'five': '5', 'six': '6',
    'seven': '7', 'eight': '8', 'nine': '9', 'ten': '10',
}  # fmt: skip
ARTICLES = frozenset({'a', 'an', 'the'})
PUNCTUATION = [';', '/', '[', ']', '"', '{', '}', '(', ')', '=', '+', '\\', '_', '-', '>', '<', '@', '`', ',',
               '?', '!']  # fmt: skip
# The official pattern reads "a period not followed by a digit" (its look-behind is mistyped as a
# look-ahead, so "1.5" keeps its period only because of the look-ahead); kept as is for equal scores.
PERIOD_STRIP = re.compile(r'(?!<=\d)(\.)(?!\d)')
COMMA_BETWEEN_DIGITS = re.compile(r'(\d)(,)(\d)')
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're",
    "theres": "there's", "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've",
    "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't",
    "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll",
    "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}  # fmt: skip


def _strip_punctuation(text: str) -> str:
    # As the official script: a mark next to a space, or any mark in text with a "1,000"-style number,
    # is deleted; otherwise it becomes a space ("black/white" -> "black white").
    delete = COMMA_BETWEEN_DIGITS.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if delete or f'{mark} ' in text or f' {mark}' in text:
            out = out.replace(mark, '')
        else:
            out = out.replace(mark, ' ')
    return PERIOD_STRIP.sub('', out)


def normalize_vqa_answer(text: str) -> str:
    """The official VQAv2 normalisation of a prediction (see the module docstring)."""
    text = _strip_punctuation(text.replace('\n', ' ').replace('\t', ' ').strip())
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    return ' '.join(CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES)


def normalize_evalai_answer(text: str) -> str:
    """EvalAI's answer processing, of a prediction and of a human answer alike (module docstring)."""
    return normalize_vqa_answer(text.lower().replace(',', '').replace('?', '').replace("'s", " 's"))


ANSWER_PROCESSING = ('vqa', 'evalai')


def _processed(prediction: str, answers: list[str], processing: str) -> tuple[str, list[str]]:
    """The prediction and the human answers as ``processing`` compares them (module docstring)."""
    if processing == 'evalai':
        return normalize_evalai_answer(prediction), [normalize_evalai_answer(a) for a in answers]
    if processing != 'vqa':
        raise ValueError(f'answer processing {processing!r} is not one of {ANSWER_PROCESSING}')
    if len(answers) == 1:
        return normalize_vqa_answer(prediction), [normalize_vqa_answer(answers[0])]
    humans = [_strip_punctuation(a) for a in answers] if len(set(answers)) > 1 else answers
    return normalize_vqa_answer(prediction), humans


def vqa_score(prediction: str, answers: str | Sequence[str], processing: str = 'vqa') -> float:
    """The VQA accuracy of one prediction in [0, 1] against the human answers, with the answer processing
    of VQAv2's evaluation (``'vqa'``) or EvalAI's (``'evalai'``; module docstring)."""
    answers = [answers] if isinstance(answers, str) else list(answers)
    if not answers:
        raise ValueError(f'vqa_score needs at least one reference answer for prediction {prediction!r}')
    pred, humans = _processed(prediction, answers, processing)
    matches = [human == pred for human in humans]
    if len(answers) == 1:
        return float(matches[0])
    total = sum(matches)
    return sum(min((total - hit) / 3.0, 1.0) for hit in matches) / len(answers)


def has_references(sample: dict) -> bool:
    """Whether a predict output has human answers to score against (a test split's have none: a question
    without answers is read with an empty one)."""
    refs = _references(sample)
    return refs is not None and len(refs) > 0


def _references(sample: dict):
    return sample.get('answers', sample.get('answer'))


def reference_answers(sample: dict) -> str | list[str]:
    """The human answers of a predict output: ``answers`` (a list) or ``answer`` (a string or a list)."""
    refs = _references(sample)
    if refs is None or (not isinstance(refs, str) and not refs):
        raise KeyError(
            f"a predict output needs 'answers' or 'answer' to score against; got keys {sorted(sample)}"
        )
    return refs


def per_task_means(results: list[tuple[str, float]], scale: float = 100.0) -> dict[str, float]:
    """``{task: mean score}`` per task and ``overall`` (the mean over all samples), times ``scale``."""
    by_task = defaultdict(list)
    for task, score in results:
        by_task[task].append(score)
    metrics = {task: scale * sum(s) / len(s) for task, s in sorted(by_task.items())}
    metrics['overall'] = scale * sum(s for _, s in results) / len(results)
    return metrics


@METRICS.register_module()
class VQAAccuracy(BaseMetric):
    """VQAv2 accuracy (%) per task and ``overall`` (the mean over all questions, as VQAv2 reports it).

    Consumes the model's predict outputs: dicts with ``prediction``, the human answers (``answers``, or
    ``answer``: see :func:`reference_answers`) and optionally ``task``. ``answer_processing``: ``'vqa'``
    (VQAv2's evaluation) or ``'evalai'`` (TextVQA's and VizWiz's; module docstring).
    """

    default_prefix = 'vqa'
    overall_definition = 'the mean over all questions (as VQAv2 reports it)'

    def __init__(self, answer_processing: str = 'vqa', **kwargs) -> None:
        if answer_processing not in ANSWER_PROCESSING:
            raise ValueError(f'answer_processing={answer_processing!r}: expected one of {ANSWER_PROCESSING}')
        super().__init__(**kwargs)
        self.answer_processing = answer_processing

    def score(self, sample: dict) -> float:
        return vqa_score(sample['prediction'], reference_answers(sample), self.answer_processing)

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            self.results.append((s.get('task') or 'all', self.score(s)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        return per_task_means(results)
