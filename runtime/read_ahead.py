"""A generator run in a thread of its own, a bounded number of items ahead of its reader.

The synthesizer reads a stream's frames through this: the talker and predictor make the next
frames while the reader's thread turns the last ones into audio with the codec. On a two-core CPU
neither side gains much from a second core (a batch-1 step is bound by memory and per-operator
overhead, docs/benchmarks.md), so running them side by side, one core each, is where the second
core pays. The bound keeps the maker from running away from a reader that stops pulling (a
client playing audio in real time): it waits once `depth` items are ready.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Generator, Iterator


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


_END = object()


class ReadAhead:
    """Iterate `source` in a daemon thread named `name`, at most `depth` items ahead of the reader.

    The reader iterates this object; the source's exception is raised in the reader's thread. The
    source is closed in its own thread (a generator can only be closed where it runs), at its end
    or once `close()` asks it to stop: after the item it is making, which the reader never gets.
    """

    def __init__(self, source: Generator, depth: int, name: str):
        self._source = source
        self._items: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self.made_seconds = 0.0  # the maker's wall time, start to end
        self.waited_seconds = 0.0  # of which it waited for the reader (`depth` items ready)
        self._thread = threading.Thread(target=self._make, daemon=True, name=name)
        self._thread.start()

    def _make(self) -> None:
        start = time.perf_counter()
        try:
            for item in self._source:
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # noqa: BLE001  (handed to the reader, who raises it)
            self._put(_Failed(exc))
        finally:
            self._source.close()
            self.made_seconds = time.perf_counter() - start

    def _put(self, item) -> bool:
        """Hand `item` over, waiting while the reader is `depth` items behind; False once stopped."""
        try:
            self._items.put_nowait(item)
            return True
        except queue.Full:
            pass
        t0 = time.perf_counter()
        try:
            while not self._stop.is_set():
                try:
                    self._items.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False
        finally:
            self.waited_seconds += time.perf_counter() - t0

    def __iter__(self) -> Iterator:
        while True:
            item = self._items.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item

    def close(self) -> None:
        """Stop the source after the item in progress and wait for its thread to end. A source that
        blocks (waiting for text) must be woken by the caller first."""
        self._stop.set()
        self._thread.join()
