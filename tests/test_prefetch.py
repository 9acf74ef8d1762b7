"""Reading ahead: the same items in the same order, errors at their place, and a thread that stops."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import ROOT
from vlkit.data.prefetch import map_in_threads, read_ahead


def test_the_items_come_in_order_whatever_the_read_ahead():
    for size in (0, 1, 3, 100):
        assert list(read_ahead(iter(range(50)), size)) == list(range(50))


def test_an_error_of_the_stream_is_raised_at_its_place():
    def stream():
        yield from (1, 2)
        raise ValueError('bad sample in shard-3.tar')

    seen = []
    with pytest.raises(ValueError, match='bad sample in shard-3.tar'):
        for item in read_ahead(stream(), 4):
            seen.append(item)
    assert seen == [1, 2]


def test_it_reads_ahead_while_the_consumer_works_and_stops_when_closed():
    made = []

    def stream():
        for i in range(1000):
            made.append(i)
            yield i

    items = read_ahead(stream(), 5)
    assert next(items) == 0
    time.sleep(0.2)  # the consumer "trains"; the thread fills its queue meanwhile
    assert 5 <= len(made) <= 7  # up to 5 waiting, one in hand, one being put
    items.close()
    time.sleep(0.3)
    assert len(made) <= 8 and not any(t.name == 'vlkit-read-ahead' for t in threading.enumerate())


def _slow_square(i: int) -> int:
    time.sleep(0.002 * (i % 3))  # later items often finish first
    if i % 7 == 3:
        raise ValueError(f'bad item {i}')
    return i * i


class _Handler:
    def __init__(self, answer: bool = True) -> None:
        self.answer, self.seen = answer, []

    def __call__(self, exn: BaseException) -> bool:
        self.seen.append(str(exn))
        return self.answer


@pytest.mark.parametrize('threads', [0, 1, 3])
def test_mapping_in_threads_keeps_the_order_and_hands_each_error_to_the_handler(threads):
    handler = _Handler()
    assert list(map_in_threads(iter(range(20)), _slow_square, threads, handler)) == [
        i * i for i in range(20) if i % 7 != 3
    ]
    assert handler.seen == ['bad item 3', 'bad item 10', 'bad item 17']


@pytest.mark.parametrize('threads', [0, 2])
def test_an_error_of_the_items_themselves_comes_after_the_items_before_it(threads):
    def items():
        yield from range(5)
        raise RuntimeError('the stream broke at item 5')

    seen = []
    with pytest.raises(RuntimeError, match='the stream broke at item 5'):
        for result in map_in_threads(items(), lambda i: i * i, threads, _Handler()):
            seen.append(result)
    assert seen == [0, 1, 4, 9, 16]


def test_mapping_in_threads_stops_where_the_handler_says_so_and_raises_what_it_raises():
    assert list(map_in_threads(iter(range(20)), _slow_square, 2, _Handler(answer=False))) == [0, 1, 4]

    def strict(exn):
        raise RuntimeError(f'strict: {exn}')

    with pytest.raises(RuntimeError, match='strict: bad item 3'):
        list(map_in_threads(iter(range(20)), _slow_square, 2, strict))


def test_mapping_in_threads_runs_items_at_once_and_only_a_few_ahead():
    running, most, lock, taken = [0], [0], threading.Lock(), []

    def work(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return i

    def items():
        for i in range(100):
            taken.append(i)
            yield i

    results = map_in_threads(items(), work, 2, _Handler())
    assert next(results) == 0
    assert len(taken) == 5  # the first item and four ahead (2 x threads)
    assert list(results) == list(range(1, 100))
    assert most[0] == 2


EXIT_WHILE_READING = """
import torch
from vlkit.data.prefetch import read_ahead

def heavy():
    a = torch.randn(600, 600)
    while True:
        for _ in range(20):
            a = torch.tanh(a @ a)  # inside torch, without the global lock, most of the time
        yield a.sum()

STREAM = read_ahead(heavy(), size=1000)  # never closed: the interpreter exits while it reads
next(STREAM)
"""


def test_the_interpreter_exits_cleanly_while_a_reader_is_busy():
    # a reader thread running into the interpreter's finalisation inside a torch op aborts the process
    result = subprocess.run([sys.executable, '-c', EXIT_WHILE_READING], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0 and 'terminate called' not in result.stderr, result.stderr
