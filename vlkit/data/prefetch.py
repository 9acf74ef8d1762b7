"""Reading ahead in a background thread, so that the training step does not wait for its data.

The samples of a stream are made by a thread of the process that iterates it (the training process with
``num_workers=0``, or each data-loader worker), one at a time and in order, up to ``size`` ahead of the
consumer. Most of a sample's cost (image decoding, tokenization, tensor conversion) runs outside Python's
global lock, so it overlaps the model's step; the order, and so a resumed run's stream, is that of the
stream itself. Everything stays in one process: the skip counters the hooks read stay where they are.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar('T')
_DONE = object()


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

    def produce() -> None:
        try:
            for item in stream:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_DONE)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            items.put(_Failure(error))

    thread = threading.Thread(target=produce, name='vlkit-read-ahead', daemon=True)
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
