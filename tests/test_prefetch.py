"""Reading ahead: the same items in the same order, errors at their place, and a thread that stops."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from tests.helpers import ROOT
from vlkit.data.prefetch import read_ahead


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
