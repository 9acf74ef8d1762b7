"""LLaVA's JSON (one array: LLaVA-Pretrain-558K, LLaVA-1.5-mix665k, ShareGPT4V) or JSON Lines.

A record: ``{"id": ..., "image": "folder/file.jpg" | [...] | absent, "conversations": [{"from": "human",
"value": "<image>\\n..."}, {"from": "gpt", "value": "..."}, ...]}``. Covered: caption-style pretraining
records and multi-turn instructions, text-only records (no ``image``), several images (``image`` a list,
one ``<image>`` marker each, in order), turns keyed ``from``/``value`` or ``role``/``content``, and ids
that are integers in some records and strings in others (mix665k). An id names the record's image, not
the record: LLaVA-Instruct-150K's three subsets, and mix665k's VQAv2, OK-VQA and A-OKVQA records, repeat
a COCO image's id with other conversations, and every such record is kept (``unique_ids = False``).
Skipped and counted: an empty or one-sided conversation (``empty_conversation``), a ``<image>`` count that
differs from the number of images (``image_count_mismatch``); the converter adds missing and undecodable
images.
"""

from __future__ import annotations

from collections.abc import Iterator

from ...constants import IMAGE_TOKEN
from ...registry import DATA_FORMATS
from .base import BadRecord, DataFormat, Record, Sample, stream_json

ROLES = {'human': 'human', 'user': 'human', 'gpt': 'gpt', 'assistant': 'gpt', 'system': 'system'}


def conversation_turns(turns, where: str) -> list[dict]:
    """LLaVA turns (``from``/``value`` or ``role``/``content``) -> ``{'from': human|gpt|system, 'value'}``;
    an empty or one-sided conversation is a :class:`BadRecord`."""
    if not isinstance(turns, list) or not turns:
        raise BadRecord(f'{where}: no conversation', reason='empty_conversation')
    out = []
    for i, turn in enumerate(turns):
        role = ROLES.get(turn.get('from', turn.get('role')) if isinstance(turn, dict) else None)
        value = turn.get('value', turn.get('content')) if isinstance(turn, dict) else None
        if role is None or not isinstance(value, str):
            raise BadRecord(
                f'{where}: turn {i} has no known role or no text: {turn!r}', reason='bad_conversation'
            )
        out.append({'from': role, 'value': value})
    spoken = {t['from'] for t in out if t['value'].replace(IMAGE_TOKEN, '').strip() or t['from'] == 'human'}
    if not {'human', 'gpt'} <= spoken:
        raise BadRecord(
            f'{where}: a one-sided conversation (roles {[t["from"] for t in out]})',
            reason='empty_conversation',
        )
    return out


@DATA_FORMATS.register_module(name='llava')
class LLaVA(DataFormat):
    """LLaVA JSON or JSONL files (module docstring); every source file is read in the order given."""

    unique_ids = False  # ids name images, which several records share

    def records(self, sources: list[str]) -> Iterator[Record]:
        for path in sources:
            for n, item in stream_json(path):
                record_id = item.get('id') if isinstance(item, dict) else None
                yield Record(id=record_id, where=f'{path}[{n}]', data=item)

    def to_sample(self, record: Record) -> Sample:
        item = record.data
        if isinstance(item, Exception):
            raise item
        if not isinstance(item, dict):
            raise BadRecord(
                f'{record.where}: a record must be a JSON object, got {item!r:.80}', reason='bad_record'
            )
        turns = conversation_turns(item.get('conversations'), record.where)
        image = item.get('image')
        images = [image] if isinstance(image, str) else list(image or [])
        markers = sum(t['value'].count(IMAGE_TOKEN) for t in turns)
        if markers != len(images):
            raise BadRecord(
                f'{record.where}: {markers} {IMAGE_TOKEN} markers but {len(images)} images ({images})',
                reason='image_count_mismatch',
            )
        stored = {'id': record.id, 'conversations': turns}
        if images:
            stored['image_files'] = images
        return Sample(stored, images)
