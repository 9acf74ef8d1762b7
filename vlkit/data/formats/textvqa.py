"""TextVQA: ``TextVQA_0.5.1_*.json`` with its OCR tokens kept (``ocr_tokens``), for prompts that use them."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from ...registry import DATA_FORMATS
from .base import (
    DataFormat,
    Record,
    Sample,
    answer_texts,
    expect_files,
    load_json,
    open_source,
    qa_sample,
    source_stem,
    split_of,
)


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
            ocr = {
                e['image_id']: e.get('ocr_tokens', [])
                for e in load_json(expect_files(sources[1:], 1, 'OCR')[0])['data']
            }
        split = split_of(re.sub(r'^TextVQA_[\d.]+_', '', source_stem(path)))
        with open_source(path) as f:
            for n, q in enumerate(ijson.items(f, 'data.item', use_float=True)):
                answers = answer_texts(q.get('answers')) or None
                data = {
                    'question_id': q['question_id'],
                    'image_id': q['image_id'],
                    'question': q['question'],
                    'answer': Counter(answers).most_common(1)[0][0] if answers else None,
                    'answers': answers,
                    'ocr_tokens': q.get('ocr_tokens', ocr.get(q['image_id'], [])),
                    'task': 'textvqa',
                    'image_file': self.image_pattern.format(image_id=q['image_id']),
                }
                yield Record(id=q['question_id'], where=f'{path} data[{n}]', data=data, split=split)

    def to_sample(self, record: Record) -> Sample:
        return qa_sample(record, record.data['image_file'])
