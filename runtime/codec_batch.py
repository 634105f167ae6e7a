"""The codec chunks of every stream on one engine, one engine call at a time, batched.

A stream's codec runs in its reader's thread, beside the talker and predictor steps (the codec
has an engine of its own). Chunks that arrive while a codec call runs wait for it; when it ends,
the oldest waiting chunk and every other waiting chunk of the same length (frames) go through the
codec together, one row each (at most `max_rows`), and each stream gets its own row's PCM and next
state: what it gets alone, since the codec computes rows independently. A chunk that finds the
codec idle runs at once, alone: batching never makes a stream wait for another to arrive.

Only chunks of one length share a call (the codec's T is one axis for all rows). The chunk ramp
makes a stream's first chunks short and its later ones `max_chunk` long, so streams past their
first chunks share calls; a stream's short first chunks run with the others' first chunks or alone.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class CodecStats:
    calls: int = 0  # codec engine calls
    rows: int = 0  # chunks run, summed over calls (rows / calls = mean batch)
    max_rows: int = 0  # most chunks in one call


@dataclass(eq=False)
class _Chunk:
    codes: object
    state: list
    done: bool = False
    result: tuple | None = None
    error: BaseException | None = None
    engine_s: float = 0.0  # the engine time of the call it ran in


class CodecBatcher:
    def __init__(self, backend, max_rows: int):
        self.backend, self.max_rows = backend, max(1, max_rows)
        self.stats = CodecStats()
        self._cond = threading.Condition()
        self._queue: list[_Chunk] = []
        self._busy = False

    def run(self, codes, state) -> tuple[tuple, float]:
        """One stream's chunk: ((PCM [1, N], next state), engine seconds of the call it ran in)."""
        chunk = _Chunk(codes, state)
        with self._cond:
            self._queue.append(chunk)
            while not chunk.done:
                if self._busy:
                    self._cond.wait()
                    continue
                batch = self._take()
                self._busy = True
                self._cond.release()  # the engine runs without the lock: chunks keep queueing
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._busy = False
                    self._cond.notify_all()
        if chunk.error is not None:
            raise chunk.error
        return chunk.result, chunk.engine_s

    def _take(self) -> list[_Chunk]:
        frames = self._queue[0].codes.shape[-1]
        batch = [c for c in self._queue if c.codes.shape[-1] == frames][:self.max_rows]
        for c in batch:
            self._queue.remove(c)
        return batch

    def _run(self, batch: list[_Chunk]) -> None:
        before = self.backend.thread_engine_seconds()
        try:
            results = self.backend.codec_run_rows([(c.codes, c.state) for c in batch])
            for c, result in zip(batch, results):
                c.result = result
        except BaseException as exc:  # noqa: BLE001  (every stream of the call raises it)
            for c in batch:
                c.error = exc
        finally:
            spent = self.backend.thread_engine_seconds() - before
            self.stats.calls += 1
            self.stats.rows += len(batch)
            self.stats.max_rows = max(self.stats.max_rows, len(batch))
            for c in batch:
                c.engine_s, c.done = spent, True
