"""A blocking stream of chunks, consumed from asyncio."""

from __future__ import annotations

import asyncio
import threading
from typing import AsyncIterator, Callable, Generator, TypeVar

T = TypeVar("T")


async def in_thread(items: Generator[T, None, None], on_leave: Callable[[], None]) -> AsyncIterator[T]:
    """Run `items` in a thread of its own and hand each item (or its error) to the event loop, in
    order. A consumer that leaves early calls `on_leave()` (which must make `items` stop soon) and
    waits until the thread has closed `items`."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    done, left = object(), threading.Event()
    worker = loop.create_future()  # done when the thread has closed the stream

    def work():
        try:
            for item in items:
                if left.is_set():  # the consumer left before the stream had started: end it here
                    break
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # delivered to the consumer
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            items.close()
            loop.call_soon_threadsafe(queue.put_nowait, done)
            loop.call_soon_threadsafe(lambda: worker.done() or worker.set_result(None))

    # A thread per stream, not the loop's default executor: that pool has cpu_count + 4 threads,
    # so on a small machine the sixth concurrent stream would wait for a whole stream to end
    # before its first frame (its engine calls are shared by the step loop anyway).
    threading.Thread(target=work, daemon=True, name="qwen3-tts-stream").start()
    finished = False
    try:
        while True:
            item = await queue.get()
            if item is done:
                finished = True
                break
            if isinstance(item, BaseException):
                finished = True
                raise item
            yield item
    finally:
        if not finished:
            left.set()
            on_leave()
        await asyncio.shield(worker)
