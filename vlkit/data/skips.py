"""Skipping bad samples and shards, counted by reason and by shard (or stopping on the first, when strict).

Every webdataset stage of vlkit's datasets gets a :class:`SkipCounter` as its error handler. Reasons:
``corrupt_image``, ``truncated_tar``, ``missing_shard``, ``missing_field``, the ``reason`` of a
:class:`SampleError` (``image_count_mismatch``, ``empty_conversation``, ``answer_not_located``, ...),
``other``.
"""

from __future__ import annotations

import re
import tarfile
from collections import Counter

from mmengine.logging import print_log
from PIL import UnidentifiedImageError


class MissingField(KeyError):
    """A sample lacks a field its format needs."""


class SampleError(ValueError):
    """A sample that breaks its format in a named way (``reason``), for the counts and the message."""

    reason = 'bad_sample'

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


def skip_reason(exn: BaseException) -> str:
    if isinstance(exn, SampleError):
        return exn.reason
    if isinstance(exn, MissingField):
        return 'missing_field'
    if isinstance(exn, FileNotFoundError):
        return 'missing_shard'
    if isinstance(exn, tarfile.ReadError | tarfile.HeaderError) or 'tar' in type(exn).__module__:
        return 'truncated_tar'
    if isinstance(exn, UnidentifiedImageError | SyntaxError) or (
        isinstance(exn, OSError) and 'image' in str(exn)
    ):
        return 'corrupt_image'
    return 'other'


MAX_CONSECUTIVE_SKIPS = 10_000  # bad samples or shards in a row after which a stream stops (SkipCounter)


class BadSampleError(RuntimeError):
    """A bad sample or shard met in strict mode, with the reason and the shard it came from."""


_FILE_REPR = re.compile(r"name='([^']+)'")


def shard_of(exn: BaseException) -> str | None:
    """The shard a webdataset error came from.

    Sample errors carry it as ``exn.shard`` (set by :meth:`ConversationShards.read`); webdataset appends the
    url to the arguments of errors from opening a shard, and the open file (or, reading its members, the
    file's repr in the message) to errors from reading one.
    """
    shard = getattr(exn, 'shard', None)
    if shard is not None:
        return shard
    for arg in reversed(exn.args):
        name = getattr(arg, 'name', None)
        if isinstance(arg, str) and ' ' not in arg:
            return arg
        if isinstance(name, str):
            return name
        found = _FILE_REPR.search(arg) if isinstance(arg, str) else None
        if found:
            return found.group(1)
    return None


class SkipCounter:
    """A webdataset error handler that counts skipped samples by reason and by shard (or raises when strict).

    ``good`` counts the samples read successfully (:meth:`count_good`, called by
    :meth:`ConversationShards.decoded`), so that ``skip_rate`` is the share of bad ones among all met. A
    stream that meets ``max_consecutive`` bad samples or shards in a row, with no good one between, is
    stopped with an error naming the reasons: a training stream resamples its shards forever, and would
    otherwise wait without end on a source none of whose samples can be read (every shard missing, or files
    of another layout).
    """

    def __init__(self, strict: bool = False, max_consecutive: int = MAX_CONSECUTIVE_SKIPS) -> None:
        self.strict = strict
        self.max_consecutive = max_consecutive
        self.counts: Counter[str] = Counter()
        self.shards: Counter[str] = Counter()
        self.good = 0
        self.consecutive = 0

    def count_good(self) -> None:
        self.good += 1
        self.consecutive = 0

    def __call__(self, exn: BaseException) -> bool:
        if isinstance(exn, BadSampleError):  # raised by an inner stage, passing through an outer one
            raise exn
        reason, shard = skip_reason(exn), shard_of(exn) or '?'
        if self.strict:
            raise BadSampleError(f'{reason} in shard {shard}: {type(exn).__name__}: {exn}') from exn
        self.counts[reason] += 1
        self.shards[shard] += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise BadSampleError(
                f'{self.consecutive} bad samples or shards in a row and no good one (skipped so far: '
                f'{dict(self.counts)}; the last: {reason} in shard {shard}: {type(exn).__name__}: {exn}). '
                'Is every shard there, and in the layout this dataset reads (docs/data.md)?'
            ) from exn
        if self.counts[reason] <= 3:
            print_log(
                f'skipping a bad sample ({reason}) from {shard}: {type(exn).__name__}: {exn}',
                logger='current',
                level=30,
            )
        return True

    @property
    def skip_rate(self) -> float:
        bad = sum(self.counts.values())
        return bad / (bad + self.good) if bad else 0.0

    def summary(self) -> dict:
        """Counts by reason and by shard, samples read and the skip rate, for logs and ``data_skips.json``."""
        return {
            'samples_read': self.good,
            'skipped': dict(self.counts),
            'skip_rate': self.skip_rate,
            'shards': dict(self.shards.most_common()),
        }
