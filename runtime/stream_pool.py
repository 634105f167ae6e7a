"""A pool of stream slots on one set of engines: `StreamPool.open(...)` -> `PooledStream`.

A front end talks to the engines through this class: open a stream for whole text or for text
that is still arriving (an async iterable), iterate its chunks, close it to cancel.

A pool holds `capacity` synthesizers on one set of engines: one per stream slot, each with its
own KV row, all on one step loop (runtime/scheduler.py), which runs the frames of every live
stream in shared engine calls (continuous batching: a stream joins or leaves between frames).
`capacity` is at most the build's `--max-batch`. The pool admits `capacity` streams and lets
more wait for a slot, in order of arrival, while the wait they can expect stays within `wait_s`:
the slot of a closed stream comes back within one frame, and streams have held their slots for
`hold_s` on average, so a request that finds `w` others waiting expects
`(w + 1) / capacity * hold_s`. A request whose expected wait passes `wait_s`, or that waited
`wait_s` in vain, or that finds `max_waiting` others already waiting, is refused with `PoolBusy`
at once, with the expected wait as its retry time (the server answers HTTP 503 + Retry-After /
WebSocket close 1013: a client or a load balancer can retry elsewhere, where an unbounded queue
would only add latency). `wait_s=None` waits as long as it takes: for a front end that must
never refuse (one Pipecat pipeline waiting for another).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing
from pathlib import Path
from typing import AsyncIterable, AsyncIterator

from .errors import PoolBusy
from .sampling import SamplingParams
from .stream import AudioChunk, StreamOptions, Synthesizer, UtteranceMetrics
from .text_stream import TextInput
from .voice import Voice


class PooledStream:
    """One admitted stream: an async iterator of `AudioChunk`s (24 kHz; `pcm16_bytes()` for the wire).

    The engine's iterator is driven by a task of the stream's own, never by the request's task.
    A request task can be cancelled more than once (a client leaves, the server shuts down); if
    such a cancel landed inside the engine's clean-up, the slot would come back while the frame
    in flight still ran. Here `aclose()` (or leaving early, or cancelling the consumer) cancels
    that task exactly once; it stops the engine at its next frame, waits for the frame in flight,
    records `metrics` and only then gives the slot back, whatever happens to the caller meanwhile.
    """

    _END = object()

    def __init__(self, pool: "StreamPool", synth: Synthesizer, chunks: AsyncIterator[AudioChunk]):
        self._pool = pool
        self._synth = synth
        self.metrics: UtteranceMetrics | None = None
        self.finished = False  # the engine ended the stream itself (not closed early)
        self.error: BaseException | None = None  # what ended it, when a request error or a failure did
        # perf_counter() when aclose() stopped the engine early: on_release measures the slot's way back from it
        self.stopped_at: float | None = None
        self.on_release: list = []  # callables(stream), run once the slot is free (accounting)
        self._queue: asyncio.Queue = asyncio.Queue()
        self._released = asyncio.Event()
        self._stopping = False
        self.opened_at = time.monotonic()
        self._pump = asyncio.ensure_future(self._drive(chunks))
        # A callback, not a `finally`: it also runs for a task cancelled before it ever started.
        self._pump.add_done_callback(self._finish)

    async def _drive(self, chunks: AsyncIterator[AudioChunk]) -> None:
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    self._queue.put_nowait(chunk)
            self.finished = True
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # a request error or an engine failure: the consumer raises it
            self.error = exc
            self._queue.put_nowait(exc)

    def _finish(self, _task) -> None:
        # Synthesizer.astream's clean-up has stopped the frame loop and waited for the frame in
        # flight: the engine is idle, and its metrics are this stream's.
        self.metrics = self._synth.last_metrics
        self._pool._release(self._synth, held_s=time.monotonic() - self.opened_at)
        self._released.set()
        self._queue.put_nowait(self._END)
        for callback in self.on_release:  # here, not after aclose(): a caller cancelled twice never gets there
            callback(self)

    def __aiter__(self):
        return self

    async def __anext__(self) -> AudioChunk:
        try:
            item = await self._queue.get()
        except BaseException:  # the consumer was cancelled: end the stream
            await self.aclose()
            raise
        if item is self._END:
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def aclose(self) -> None:
        """End the stream (the engine stops at its next frame) and wait until its slot is free."""
        if not self._stopping and not self._pump.done():
            self._stopping = True  # once: a second cancel would cut the engine's clean-up short
            self.stopped_at = time.perf_counter()
            self._pump.cancel()
        # Cancelled again meanwhile, the caller stops waiting; the pump still finishes on its own.
        await asyncio.shield(self._released.wait())


class StreamPool:
    """Warmed synthesizers on one step loop, one per stream slot (a server replica holds one pool)."""

    def __init__(self, synth: Synthesizer, *, capacity: int = 0, max_waiting: int = 1, wait_s: float | None = 1.0):
        rows = synth.steps.rows
        capacity = capacity or rows  # 0: every row the build has
        if not 1 <= capacity <= rows:
            raise ValueError(f"capacity {capacity}: this build runs at most {rows} stream(s) at once; rebuild "
                             f"with build.sh --max-batch {max(capacity, 1)} for more")
        self.synth = synth  # settings and checks; also the first slot
        self._idle = [synth] + [synth.sibling() for _ in range(capacity - 1)]
        self.capacity, self.max_waiting, self.wait_s = capacity, max_waiting, wait_s
        self.live = 0  # streams admitted and not yet closed
        self.waiting = 0
        self.hold_s: float | None = None  # how long streams hold a slot: a moving average, the waits' estimate
        self._slots = asyncio.Semaphore(capacity)
        self._open: set[PooledStream] = set()  # admitted and not yet released (for end_all)

    @classmethod
    def load(cls, checkpoint: str | Path, build_dir: str | Path | None = None, backend: str = "auto", *,
             fallback: bool = False, options: StreamOptions = StreamOptions(), warmup: bool = True,
             **slots) -> "StreamPool":
        """Load the engines and warm them up, so that the pool is ready for real requests once this
        returns."""
        synth = Synthesizer.open(checkpoint, build_dir, backend, options=options, fallback=fallback)
        if warmup:
            synth.warmup()
        return cls(synth, **slots)

    @property
    def sample_rate(self) -> int:
        return self.synth.sample_rate

    @property
    def config(self):
        return self.synth.config

    def check(self, voice: Voice, params: SamplingParams) -> None:
        """Raise the PromptError a request with this voice and these settings would raise, before
        it takes a slot (an unknown speaker or language, a bad setting, a voice too long, ...)."""
        self.synth.check_request(voice, params)

    async def open(self, text: str | AsyncIterable[str] | TextInput, voice: Voice, params: SamplingParams, *,
                   chunk_ramp: tuple[int, ...] | None = None) -> PooledStream:
        """Admit a stream (or raise PoolBusy). `text` is the whole text, or fragments still being
        written: an async iterable, or a `TextInput` pushed into (spoken as `Synthesizer.astream_text`
        speaks them). `chunk_ramp` overrides the synthesizer's for this stream."""
        await self._admit()
        # the lowest KV row free: a step runs rows 0..the highest live one
        synth = min(self._idle, key=lambda s: s.backend.row)
        self._idle.remove(synth)
        try:
            if isinstance(text, str):
                chunks = synth.astream(text, voice, params, chunk_ramp=chunk_ramp)
            else:
                chunks = synth.astream_text(text, voice, params, chunk_ramp=chunk_ramp)
        except BaseException:
            self._release(synth)
            raise
        stream = PooledStream(self, synth, chunks)
        self._open.add(stream)
        stream.on_release.append(self._open.discard)
        return stream

    async def end_all(self) -> None:
        """End every open stream at its next frame (the chunks made so far stay whole) and wait until
        their slots are free: a server that must stop once its grace period is over."""
        await asyncio.gather(*(stream.aclose() for stream in list(self._open)))

    def expected_wait_s(self) -> float:
        """How long a request arriving now can expect to wait for a slot (0 when one is free)."""
        if not self._slots.locked():
            return 0.0
        return (self.waiting + 1) / self.capacity * (self.hold_s or 0.0)

    async def _admit(self) -> None:
        if self._slots.locked():
            expected = self.expected_wait_s()
            retry = max(1.0, expected)
            if self.waiting >= self.max_waiting:
                raise PoolBusy(f"all {self.capacity} stream slot(s) of this pool are busy and "
                               f"{self.waiting} request(s) already wait: retry, or add replicas", retry)
            if self.wait_s is not None and expected > self.wait_s:
                raise PoolBusy(f"all {self.capacity} stream slot(s) of this pool are busy and a slot is "
                               f"expected in {expected:.0f} s, past the {self.wait_s:g} s this pool waits: retry "
                               "later, or add replicas", retry)
            self.waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self.wait_s)
            except asyncio.TimeoutError:
                raise PoolBusy(f"all {self.capacity} stream slot(s) of this pool stayed busy for "
                               f"{self.wait_s:g} s: retry, or add replicas", retry) from None
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()
        self.live += 1

    def _release(self, synth: Synthesizer, held_s: float | None = None) -> None:
        if held_s is not None:
            self.hold_s = held_s if self.hold_s is None else 0.8 * self.hold_s + 0.2 * held_s
        self._idle.append(synth)
        self.live -= 1
        self._slots.release()
