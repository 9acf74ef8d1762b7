"""The standard benchmarks: each one's metric, prompt and official submission file (``tools/test.py
--benchmark NAME --data DIR``, on a split that ``tools/prepare_data.py`` wrote; docs/data.md).

* ``vqav2``, ``okvqa``, ``textvqa``: VQA accuracy (``BenchmarkVQAAccuracy``: 10-answer averaging; VQAv2's
  official answer processing, TextVQA's EvalAI one as LLaVA and lmms-eval score it; :mod:`.vqa`);
  submission ``[{question_id, answer}]``;
* ``gqa``: exact match (``GQAAccuracy``); submission ``[{questionId, prediction}]``;
* ``vizwiz``: VQA accuracy per answer type, ``unanswerable`` included (``VizWizAccuracy``; EvalAI's answer
  processing, as lmms-eval scores it); submission ``[{image, answer}]``;
* ``coco_caption``: CIDEr-D and BLEU-4 (``COCOCaption``; the PTB tokenizer where Java is, else the
  pure-Python one); submission ``[{image_id, caption}]``.

Prompts are LLaVA-1.5's: short answers are asked for with "Answer the question using a single word or
phrase."; TextVQA's OCR tokens are in the prompt only with ``ocr_tokens=True`` (recorded in the result,
since scores depend on it); VizWiz's prompt names "Unanswerable".
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..registry import METRICS
from .cider import caption_scores
from .vqa import VQAAccuracy, has_references, per_task_means, reference_answers

SHORT_ANSWER = 'Answer the question using a single word or phrase.'
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
SUBMISSION_FIELDS = {  # submission format -> (the file's id key, the meta field it comes from, answer key)
    'vqa': ('question_id', 'question_id', 'answer'),
    'gqa': ('questionId', 'question_id', 'prediction'),
    'vizwiz': ('image', 'image_name', 'answer'),
    'coco': ('image_id', 'image_id', 'caption'),
}


@dataclass
class Benchmark:
    """What ``tools/test.py --benchmark`` sets: the metric config, the dataset's prompts and answer length."""

    metric: str
    submission: str
    question_prompt: str = '{question}'
    caption_prompt: str = ''
    max_new_tokens: int = 16
    notes: dict = field(default_factory=dict)
    metric_options: dict = field(default_factory=dict)


def benchmark(name: str, ocr_tokens: bool = False) -> Benchmark:
    """The benchmark ``name``'s settings; ``ocr_tokens`` puts TextVQA's OCR tokens in its prompt."""
    short = '{question}\n' + SHORT_ANSWER
    if name in ('vqav2', 'okvqa'):
        return Benchmark('BenchmarkVQAAccuracy', 'vqa', short)
    if name == 'textvqa':
        prompt = '{question}\nReference OCR token: {ocr_tokens}\n' + SHORT_ANSWER if ocr_tokens else short
        notes = {'ocr_tokens': ocr_tokens}
        evalai = {'answer_processing': 'evalai'}
        return Benchmark('BenchmarkVQAAccuracy', 'vqa', prompt, notes=notes, metric_options=evalai)
    if name == 'gqa':
        return Benchmark('GQAAccuracy', 'gqa', short)
    if name == 'vizwiz':
        return Benchmark('VizWizAccuracy', 'vizwiz', f'{{question}}\n{UNANSWERABLE}\n{SHORT_ANSWER}')
    if name == 'coco_caption':
        prompt = 'Provide a one-sentence caption for the provided image.'
        return Benchmark('COCOCaption', 'coco', caption_prompt=f'\n{prompt}', max_new_tokens=32)
    raise KeyError(f'unknown benchmark {name!r}; expected one of {BENCHMARKS}')


BENCHMARKS = ('vqav2', 'okvqa', 'textvqa', 'gqa', 'vizwiz', 'coco_caption')


def submission_entry(fmt: str, sample: dict) -> dict:
    """One prediction in a benchmark's official submission format (``SUBMISSION_FIELDS``)."""
    key, source, answer = SUBMISSION_FIELDS[fmt]
    meta = sample.get('meta') or {}
    if source not in meta:
        raise KeyError(f"a {fmt} submission needs each sample's {source!r}; this one has {sorted(meta)}")
    return {key: meta[source], answer: sample['prediction']}


def write_submission(path: str, entries: list[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(entries, f)


def question_ids(questions_file: str) -> list:
    """The question ids of a VQAv2 questions file, in its order; refused naming the file if it is not one."""
    try:
        with open(questions_file) as f:
            return [q['question_id'] for q in json.load(f)['questions']]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f'submission_questions {questions_file}: not a VQAv2 questions file ({err!r})'
        ) from err


def pad_submission(entries: list[dict], ids: list, questions_file: str) -> list[dict]:
    """A VQA-format submission over every question id of ``ids`` (those of ``questions_file``), in its order,
    with an empty answer for each question not evaluated: VQAv2's test-dev server takes a file over all of
    test2015's questions (LLaVA pads its test-dev file the same way)."""
    answered = {e['question_id']: e for e in entries}
    unknown = sorted(set(answered) - set(ids), key=str)
    if unknown:
        raise ValueError(
            f'{len(unknown)} evaluated questions are not in {questions_file} (e.g. {unknown[0]!r}): is it '
            'the questions file of the split evaluated, or of one that contains it (test2015 for test-dev)?'
        )
    return [answered.get(q, {'question_id': q, 'answer': ''}) for q in ids]


class SubmissionMixin:
    """A metric that also writes the benchmark's submission file (``submission_file``, in ``submission``
    format) from the results it collected: each result ends with the sample's submission entry.
    ``submission_questions``: a VQAv2 questions file whose every question the file must answer
    (:func:`pad_submission`). A sample without human answers (a test split) is written, not scored."""

    def _init_submission(
        self, submission: str | None, submission_file: str | None, submission_questions: str | None = None
    ) -> None:
        if submission_file is not None and submission not in SUBMISSION_FIELDS:
            raise ValueError(f'submission must be one of {sorted(SUBMISSION_FIELDS)}, got {submission!r}')
        if submission_questions is not None and submission != 'vqa':
            raise ValueError(
                f'submission_questions pads a VQAv2 submission; this metric writes {submission!r} files'
            )
        self.submission, self.submission_file = submission, submission_file
        self.submission_questions = submission_questions  # read now: a wrong file stops before inference
        self.question_ids = question_ids(submission_questions) if submission_questions else None

    def _entry(self, sample: dict) -> dict | None:
        return submission_entry(self.submission, sample) if self.submission_file else None

    def _write(self, results: list) -> None:
        if self.submission_file:
            entries = [r[-1] for r in results]
            if self.submission_questions is not None:
                entries = pad_submission(entries, self.question_ids, self.submission_questions)
            write_submission(self.submission_file, entries)

    def _scored(self, results: list) -> list[tuple]:
        """The results' first two fields where the second (the score or the references) is not None; the
        others (a test split's, without human answers) are only counted, in the log."""
        scored = [r[:2] for r in results if r[1] is not None]
        if len(scored) < len(results):
            print_log(
                f'{len(results) - len(scored)} of {len(results)} samples have no human answers (a test '
                'split): they are in the submission file and not scored',
                logger='current',
            )
        return scored

    def _means(self, results: list) -> dict[str, float]:
        scored = self._scored(results)
        return per_task_means(scored) if scored else {}


@METRICS.register_module()
class BenchmarkVQAAccuracy(SubmissionMixin, VQAAccuracy):
    """:class:`VQAAccuracy` writing a VQAv2-style submission file (VQAv2, OK-VQA, TextVQA)."""

    def __init__(
        self,
        submission: str = 'vqa',
        submission_file: str | None = None,
        submission_questions: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self._init_submission(submission, submission_file, submission_questions)

    def task_of(self, sample: dict) -> str:
        return sample.get('task') or 'all'

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            score = self.score(s) if has_references(s) else None
            self.results.append((self.task_of(s), score, self._entry(s)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        self._write(results)
        return self._means(results)


def normalize_gqa_answer(text: str) -> str:
    """GQA's answers are short lower-case phrases: compare lower-cased, without a final period (LLaVA's
    ``convert_gqa_for_eval.py``, whose file GQA's ``eval.py`` then matches exactly)."""
    return ' '.join(text.strip().rstrip('.').lower().split())


@METRICS.register_module()
class GQAAccuracy(SubmissionMixin, BaseMetric):
    """GQA accuracy (%): exact match with the one annotated answer, per structural type (``task``) and
    ``overall`` (the mean over all questions, as GQA's evaluation reports it). The submission file holds
    the predictions as they are scored (:func:`normalize_gqa_answer`): GQA's ``eval.py`` compares strings
    exactly, so "Yes." would not match "yes" there."""

    default_prefix = 'gqa'
    overall_definition = 'the mean over all questions (exact match, as GQA reports it)'

    def __init__(self, submission: str = 'gqa', submission_file: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._init_submission(submission, submission_file)

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            hit = None
            if has_references(s):
                refs = reference_answers(s)
                answer = refs if isinstance(refs, str) else refs[0]
                hit = float(normalize_gqa_answer(s['prediction']) == normalize_gqa_answer(answer))
            self.results.append((s.get('task') or 'all', hit, self._entry(s)))

    def _entry(self, sample: dict) -> dict | None:
        entry = super()._entry(sample)
        if entry is not None:
            entry['prediction'] = normalize_gqa_answer(entry['prediction'])
        return entry

    def compute_metrics(self, results: list) -> dict[str, float]:
        self._write(results)
        return self._means(results)


@METRICS.register_module()
class VizWizAccuracy(BenchmarkVQAAccuracy):
    """VizWiz VQA accuracy (%): the VQA score against the 10 answers with EvalAI's answer processing
    (``unanswerable`` is an answer like any other, and "Unanswerable" normalises to it), per answer type
    (``other``, ``yes/no``, ``number``, ``unanswerable``; the sample's ``task``) and ``overall`` (the mean
    over all questions)."""

    default_prefix = 'vizwiz'
    overall_definition = 'the mean over all questions (VQA accuracy, unanswerable questions included)'

    def __init__(self, submission: str = 'vizwiz', answer_processing: str = 'evalai', **kwargs) -> None:
        super().__init__(submission=submission, answer_processing=answer_processing, **kwargs)

    def task_of(self, sample: dict) -> str:
        return (sample.get('meta') or {}).get('answer_type') or sample.get('task') or 'all'


@METRICS.register_module()
class COCOCaption(SubmissionMixin, BaseMetric):
    """COCO captioning: CIDEr-D and BLEU-4 (x100) over all images, with the COCO evaluation's scorers
    (:func:`vlkit.evaluation.cider.caption_scores`). ``tokenizer``: ``'auto'`` (PTB where Java is on the
    PATH), ``'ptb'`` or ``'python'``; the one that ran is :attr:`tokenizer_used`."""

    default_prefix = 'coco_caption'
    overall_definition = "CIDEr-D over all images (x100, the COCO caption evaluation's corpus score)"

    def __init__(
        self, tokenizer: str = 'auto', submission: str = 'coco', submission_file: str | None = None, **kwargs
    ):
        super().__init__(**kwargs)
        self._init_submission(submission, submission_file)
        self.tokenizer = tokenizer
        self.tokenizer_used: str | None = None

    def process(self, data_batch, data_samples) -> None:
        for s in data_samples:
            refs = reference_answers(s) if has_references(s) else None  # a test image has none
            refs = [refs] if isinstance(refs, str) else refs
            self.results.append((s['prediction'], refs, self._entry(s)))

    def compute_metrics(self, results: list) -> dict[str, float]:
        self._write(results)
        scored = self._scored(results)
        if not scored:
            return {}
        predictions, references = zip(*scored, strict=True)
        scores, _, self.tokenizer_used = caption_scores(predictions, references, self.tokenizer)
        return {'CIDEr': scores['CIDEr'], 'BLEU_4': scores['BLEU_4'], 'overall': scores['CIDEr']}
