"""VQAv2 and OK-VQA: a questions file and its annotations file (training answers ``multiple_choice_answer``,
evaluation all 10 human answers). Question formats share their stored layout (:func:`.base.qa_sample`).
"""

from __future__ import annotations

from collections.abc import Iterator

from ...registry import DATA_FORMATS
from .base import (
    DataFormat,
    Record,
    Sample,
    answer_texts,
    coco_image_folder,
    expect_files,
    load_json,
    qa_sample,
    split_of,
)


@DATA_FORMATS.register_module(name='vqa')
class VQA(DataFormat):
    """VQAv2 or OK-VQA: a questions file, and its annotations file where answers exist (test splits have
    none). ``image_pattern`` turns a question into its image path under ``--images``, ``{subtype}`` being
    the folder COCO ships its images in: the file's ``data_subtype``, except ``test-dev2015``, a subset of
    ``test2015``'s questions whose images are in ``test2015/COCO_test2015_*.jpg``. ``task`` is the
    benchmark's name, used where an annotation has no ``answer_type``."""

    def __init__(
        self, image_pattern: str = '{subtype}/COCO_{subtype}_{image_id:012d}.jpg', task: str = 'vqa'
    ) -> None:
        self.image_pattern = image_pattern
        self.task = task

    def records(self, sources: list[str]) -> Iterator[Record]:
        if len(sources) not in (1, 2):
            raise ValueError(f'vqa takes a questions file and optionally its annotations file; got {sources}')
        questions = load_json(expect_files(sources[:1], 1, 'questions')[0])
        annotations = {}
        if len(sources) == 2:
            annotations = {
                a['question_id']: a
                for a in load_json(expect_files(sources[1:], 1, 'annotations')[0])['annotations']
            }
        subtype = questions.get('data_subtype', '')
        folder = coco_image_folder(subtype)
        for n, q in enumerate(questions['questions']):
            ann = annotations.get(q['question_id'], {})
            data = {
                'question_id': q['question_id'],
                'image_id': q['image_id'],
                'question': q['question'],
                'answer': ann.get('multiple_choice_answer'),
                'answers': answer_texts(ann.get('answers')) or None,
                'task': ann.get('answer_type', self.task),
                'image_file': self.image_pattern.format(subtype=folder, image_id=q['image_id']),
            }
            yield Record(
                id=q['question_id'], where=f'{sources[0]} questions[{n}]', data=data, split=split_of(subtype)
            )

    def to_sample(self, record: Record) -> Sample:
        return qa_sample(record, record.data['image_file'])
