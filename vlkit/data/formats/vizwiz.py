"""VizWiz VQA: questions from blind people's photos, answerable or not (``unanswerable`` is an answer)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from ...registry import DATA_FORMATS
from .base import (
    DataFormat,
    Record,
    Sample,
    answer_texts,
    expect_files,
    qa_sample,
    source_stem,
    split_of,
    stream_json,
)


@DATA_FORMATS.register_module(name='vizwiz')
class VizWiz(DataFormat):
    """VizWiz VQA annotations (``{train,val,test}.json``: a list of ``image``, ``question``, 10
    ``answers``, ``answer_type``, ``answerable``); images by their ``image`` name under ``--images``.
    Unanswerable questions are kept: their answers are ``unanswerable``, and their task too."""

    def records(self, sources: list[str]) -> Iterator[Record]:
        for path in expect_files(sources, len(sources), 'VizWiz annotation files'):
            split = split_of(source_stem(path))
            for n, q in stream_json(path):
                answers = answer_texts(q.get('answers')) or None
                data = {
                    'image_name': q['image'],
                    'question': q['question'],
                    'answers': answers,
                    'answer': Counter(answers).most_common(1)[0][0] if answers else None,
                    'answerable': q.get('answerable'),
                    'answer_type': q.get('answer_type'),
                    'task': q.get('answer_type') or 'vizwiz',
                }
                yield Record(id=q['image'], where=f'{path}[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return qa_sample(record, record.data['image_name'])
