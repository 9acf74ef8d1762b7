"""Reading ahead in a background thread, so that the training step does not wait for its data.

The samples of a stream are made by a thread of the process that iterates it (the training process with
``num_workers=0``, or each data-loader worker), one at a time and in order, up to ``size`` ahead of the
consumer. Most of a sample's cost (image decoding, tokenization, tensor conversion) runs outside Python's
global lock, so it overlaps the model's step; the order, and so a resumed run's stream, is that of the
stream itself. Everything stays in one process: the skip counters the hooks read stay where they are.

A thread still reading when the interpreter exits (a training loop ends without closing its data
iterator) is stopped and joined first: left to run into the interpreter's finalisation inside a torch op,
it would abort the process ("terminate called without an active exception").
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar('T')
_DONE = object()
_EXIT_JOIN_SECONDS = 60.0  # a reader finishing its current sample at exit is waited for this long at most
_running: dict[threading.Thread, threading.Event] = {}  # read-ahead threads and their stop events


@atexit.register
def _stop_running_readers() -> None:
    for stop in list(_running.values()):
        stop.set()
    for thread in list(_running):
        thread.join(_EXIT_JOIN_SECONDS)


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


def read_ahead(stream: Iterator[T], size: int) -> Iterator[T]:
    """``stream``'s items in order, made up to ``size`` ahead by a background thread (``size=0``: none).

    An exception in the stream is raised to the consumer at its place in the order. Closing the returned
    generator (or dropping it) stops the thread at its next item.
    """
    if size <= 0:
        yield from stream
        return
    items: queue.Queue = queue.Queue(maxsize=size)
    stop = threading.Event()

    def put(item) -> bool:
        """Queues ``item`` once there is room; False if the consumer stopped first."""
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in stream:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            put(_Failure(error))
        finally:
            _running.pop(threading.current_thread(), None)

    thread = threading.Thread(target=produce, name='vlkit-read-ahead', daemon=True)
    _running[thread] = stop
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
