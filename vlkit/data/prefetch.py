"""Threads that make samples: reading ahead of the training step, and decoding images several at once.

The samples of a stream are made by a thread of the process that iterates it (the training process with
``num_workers=0``, or each data-loader worker), one at a time and in order, up to ``size`` ahead of the
consumer. Most of a sample's cost (image decoding, tokenization, tensor conversion) runs outside Python's
global lock, so it overlaps the model's step; the order, and so a resumed run's stream, is that of the
stream itself. Everything stays in one process: the skip counters the hooks read stay where they are.

A thread still reading when the interpreter exits (a training loop ends without closing its data
iterator) is stopped and joined first: left to run into the interpreter's finalisation inside a torch op,
it would abort the process ("terminate called without an active exception").

:func:`map_in_threads` runs one step of a stream (decoding a sample's images) on several items at once, in
a pool of threads, and hands the results on in the stream's order.
"""

from __future__ import annotations

import atexit
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar('T')
R = TypeVar('R')
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


class _CallLater:
    """A future that runs its call when asked for the result: :func:`map_in_threads` without threads."""

    def __init__(self, fn: Callable, item) -> None:
        self.fn, self.item = fn, item

    def result(self):
        return self.fn(self.item)


def map_in_threads(
    items: Iterator[T], fn: Callable[[T], R], threads: int, handler: Callable[[BaseException], bool]
) -> Iterator[R]:
    """``fn(item)`` for each of ``items``, in their order, computed by ``threads`` threads at most
    ``2 * threads`` items ahead of the consumer (``threads=0``: in the calling thread, when asked for).

    ``fn`` must touch nothing but its item. An item whose ``fn`` raises goes to ``handler`` (a webdataset
    error handler) at its place in the order: skipped where it returns True; where it returns False the
    stream ends; what it raises is raised.
    """
    pool = ThreadPoolExecutor(threads, thread_name_prefix='vlkit-decode') if threads > 0 else None
    try:
        for future in _submitted_in_order(items, fn, pool.submit if pool else _CallLater, 2 * threads):
            try:
                result = future.result()
            except Exception as exn:  # noqa: BLE001 - the handler decides: skip, stop, or raise
                if handler(exn):
                    continue
                return
            yield result
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def _submitted_in_order(items: Iterator, fn: Callable, submit: Callable, ahead: int) -> Iterator:
    """The futures of ``fn`` over ``items`` in order, each submitted up to ``ahead`` items before its turn;
    an error of ``items`` itself comes after the futures of the items before it, at its place."""
    pending: deque = deque()
    try:
        for item in items:
            pending.append(submit(fn, item))
            if len(pending) > ahead:
                yield pending.popleft()
    except Exception:
        while pending:
            yield pending.popleft()
        raise
    yield from pending
