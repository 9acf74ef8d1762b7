"""Visual question answering sources: VQAv2 and OK-VQA (``vqa``), TextVQA, GQA, VizWiz.

Every sample is ``KEY.<image>`` + ``KEY.json`` with ``question``, ``answer`` (what training uses: VQAv2's
``multiple_choice_answer``, GQA's answer, VizWiz's most frequent) and ``answers`` (the human answers that
evaluation scores against: all 10 for VQAv2, OK-VQA, TextVQA and VizWiz), plus the ids the benchmarks'
submission files need (``question_id``, ``image_id``, ``image_name``) and ``task`` (the answer type where
the source has one, so scores come per type). The prompt is the dataset's (``question_prompt``), chosen when
the data is read: the same shards serve training and each benchmark's own prompt.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ...registry import DATA_FORMATS
from .base import BadRecord, DataFormat, Record, Sample, expect_files, load_json, stream_json

SPLIT_NAMES = {'train': 'train', 'val': 'val', 'test': 'test', 'testdev': 'test-dev', 'test-dev': 'test-dev'}


def _split_of(name: str) -> str:
    """``val2014`` -> ``val``, ``test-dev2015`` -> ``test-dev``."""
    return SPLIT_NAMES.get(re.sub(r'\d+$', '', name), name)


def _qa_sample(record: Record, image: str) -> Sample:
    data = record.data
    if not isinstance(data.get('question'), str) or not data['question'].strip():
        raise BadRecord(f'{record.where}: question {record.id} has no text', reason='empty_conversation')
    return Sample({k: v for k, v in data.items() if v is not None and k != 'image_file'}, [image])


def _answer_texts(answers) -> list[str]:
    return [a['answer'] if isinstance(a, dict) else str(a) for a in answers or []]


@DATA_FORMATS.register_module(name='vqa')
class VQA(DataFormat):
    """VQAv2 or OK-VQA: a questions file, and its annotations file where answers exist (test splits have
    none). ``image_pattern`` turns a question into its image path under ``--images``; ``task`` is the
    benchmark's name, used where an annotation has no ``answer_type``."""

    def __init__(self, image_pattern: str = '{subtype}/COCO_{subtype}_{image_id:012d}.jpg', task: str = 'vqa') -> None:
        self.image_pattern = image_pattern
        self.task = task

    def records(self, sources: list[str]) -> Iterator[Record]:
        if len(sources) not in (1, 2):
            raise ValueError(f'vqa takes a questions file and optionally its annotations file; got {sources}')
        questions = load_json(expect_files(sources[:1], 1, 'questions')[0])
        annotations = {}
        if len(sources) == 2:
            annotations = {a['question_id']: a for a in load_json(expect_files(sources[1:], 1, 'annotations')[0])['annotations']}
        subtype = questions.get('data_subtype', '')
        for n, q in enumerate(questions['questions']):
            ann = annotations.get(q['question_id'], {})
            data = {
                'question_id': q['question_id'], 'image_id': q['image_id'], 'question': q['question'],
                'answer': ann.get('multiple_choice_answer'), 'answers': _answer_texts(ann.get('answers')) or None,
                'task': ann.get('answer_type', self.task),
                'image_file': self.image_pattern.format(subtype=subtype, image_id=q['image_id']),
            }  # fmt: skip
            yield Record(id=q['question_id'], where=f'{sources[0]} questions[{n}]', data=data, split=_split_of(subtype))

    def to_sample(self, record: Record) -> Sample:
        return _qa_sample(record, record.data['image_file'])


@DATA_FORMATS.register_module(name='textvqa')
class TextVQA(DataFormat):
    """``TextVQA_0.5.1_{train,val,test}.json`` (``data`` streamed), optionally followed by the matching
    Rosetta OCR file (``TextVQA_Rosetta_OCR_v0.2_*.json``) whose tokens are kept as ``ocr_tokens`` (entries
    that carry ``ocr_tokens`` themselves keep theirs). Images are ``image_pattern`` under ``--images``."""

    def __init__(self, image_pattern: str = '{image_id}.jpg') -> None:
        self.image_pattern = image_pattern

    def records(self, sources: list[str]) -> Iterator[Record]:
        import ijson

        path = expect_files(sources[:1], 1, 'TextVQA_0.5.1_*.json')[0]
        ocr = {}
        if len(sources) > 1:
            ocr = {e['image_id']: e.get('ocr_tokens', []) for e in load_json(expect_files(sources[1:], 1, 'OCR')[0])['data']}
        split = _split_of(re.sub(r'^TextVQA_[\d.]+_', '', Path(path).stem))
        with open(path, 'rb') as f:
            for n, q in enumerate(ijson.items(f, 'data.item', use_float=True)):
                answers = _answer_texts(q.get('answers')) or None
                data = {
                    'question_id': q['question_id'], 'image_id': q['image_id'], 'question': q['question'],
                    'answer': Counter(answers).most_common(1)[0][0] if answers else None, 'answers': answers,
                    'ocr_tokens': q.get('ocr_tokens', ocr.get(q['image_id'], [])), 'task': 'textvqa',
                    'image_file': self.image_pattern.format(image_id=q['image_id']),
                }  # fmt: skip
                yield Record(id=q['question_id'], where=f'{path} data[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return _qa_sample(record, record.data['image_file'])


@DATA_FORMATS.register_module(name='gqa')
class GQA(DataFormat):
    """GQA's balanced questions (``{train,val,testdev}_balanced_questions.json``: a dict keyed by question
    id, streamed); images ``{imageId}.jpg`` under ``--images``; ``task`` is the question's structural type."""

    def records(self, sources: list[str]) -> Iterator[Record]:
        import ijson

        for path in expect_files(sources, len(sources), 'GQA question files'):
            split = _split_of(Path(path).name.split('_')[0])
            with open(path, 'rb') as f:
                for n, (qid, q) in enumerate(ijson.kvitems(f, '', use_float=True)):
                    answer = q.get('answer')
                    data = {
                        'question_id': qid, 'image_id': q['imageId'], 'question': q['question'], 'answer': answer,
                        'answers': [answer] if answer is not None else None,
                        'task': (q.get('types') or {}).get('structural', 'gqa'),
                    }  # fmt: skip
                    yield Record(id=qid, where=f'{path}[{qid!r}] (#{n})', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return _qa_sample(record, f'{record.data["image_id"]}.jpg')


@DATA_FORMATS.register_module(name='vizwiz')
class VizWiz(DataFormat):
    """VizWiz VQA annotations (``{train,val,test}.json``: a list of ``image``, ``question``, 10
    ``answers``, ``answer_type``, ``answerable``); images by their ``image`` name under ``--images``.
    Unanswerable questions are kept: their answers are ``unanswerable``, and their task too."""

    def records(self, sources: list[str]) -> Iterator[Record]:
        for path in expect_files(sources, len(sources), 'VizWiz annotation files'):
            split = _split_of(Path(path).stem)
            for n, q in stream_json(path):
                answers = _answer_texts(q.get('answers')) or None
                data = {
                    'image_name': q['image'], 'question': q['question'], 'answers': answers,
                    'answer': Counter(answers).most_common(1)[0][0] if answers else None,
                    'answerable': q.get('answerable'), 'answer_type': q.get('answer_type'),
                    'task': q.get('answer_type') or 'vizwiz',
                }  # fmt: skip
                yield Record(id=q['image'], where=f'{path}[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return _qa_sample(record, record.data['image_name'])
