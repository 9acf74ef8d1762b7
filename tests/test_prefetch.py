"""Reading ahead: the same items in the same order, errors at their place, and a thread that stops."""

from __future__ import annotations

import threading
import time

import pytest

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
