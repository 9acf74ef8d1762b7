"""GQA: the balanced questions, a JSON dict keyed by question id, streamed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ...registry import DATA_FORMATS
from .base import DataFormat, Record, Sample, expect_files, open_source, qa_sample, split_of


@DATA_FORMATS.register_module(name='gqa')
class GQA(DataFormat):
    """GQA's balanced questions (``{train,val,testdev}_balanced_questions.json``: a dict keyed by question
    id, streamed); images ``{imageId}.jpg`` under ``--images``; ``task`` is the question's structural type."""

    def records(self, sources: list[str]) -> Iterator[Record]:
        import ijson

        for path in expect_files(sources, len(sources), 'GQA question files'):
            split = split_of(Path(path).name.split('_')[0])
            with open_source(path) as f:
                for n, (qid, q) in enumerate(ijson.kvitems(f, '', use_float=True)):
                    answer = q.get('answer')
                    data = {
                        'question_id': qid,
                        'image_id': q['imageId'],
                        'question': q['question'],
                        'answer': answer,
                        'answers': [answer] if answer is not None else None,
                        'task': (q.get('types') or {}).get('structural', 'gqa'),
                    }
                    yield Record(id=qid, where=f'{path}[{qid!r}] (#{n})', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return qa_sample(record, f'{record.data["image_id"]}.jpg')
