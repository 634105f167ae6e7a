"""The step loop: many streams on one backend, one engine call per step for all of them.

Continuous batching, with the frame loop and the `Synthesizer` unchanged: each stream talks to
a `StepClient`, a `FrameEngine` whose calls are handed to the loop instead of being run. Streams run
in threads of their own (as they always have), and the loop merges what they ask for at the same
time: the talker steps of every live stream in one `decode_rows` call, their predictor frames in
one `predict_frame` call. Prefills run one stream per call (prompts differ in length). Codec
chunks do not wait for steps: a stream's codec runs in its reader's thread while the talker and
predictor make its next frames (runtime/read_ahead.py), one codec call at a time per engine, the
chunks that queue behind a call batched into the next (runtime/codec_batch.py).

The loop has no thread of its own. The stream whose request finds the engine idle leads the
next step: it asks the step policy (runtime/step_policy.py) which requests run, waits as long as
the policy says for the streams of the previous step, then runs what it picked and hands each
stream its result. A stream alone runs its calls inline: the same calls as on the bare backend,
plus a lock.

A stream joins with its first request (each client owns one KV row) and leaves at
`end_stream()`, which the Synthesizer calls when an utterance ends; no stream ever waits for a
batch to end. Each row keeps its own position, sampling state (the frame loop's sampler and noise
stay with the stream) and codec state (a value the stream keeps and passes to `codec_run`), so a
stream's greedy codes are those it makes alone, as long as the engines compute each row
independently of the others (tests/test_scheduler.py checks it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import torch

from .backends.base import Backend, KVSlots
from .codec_batch import CodecBatcher
from .config import ModelConfig
from .contract import EngineLimits
from .errors import BackendUnavailableError
from .step_calls import Call, PredictFrame, Prefill, StepRequest, TalkerDecode
from .step_policy import StepPolicy


@dataclass
class StepStats:
    steps: int = 0  # batched calls run (a predictor or a talker step over one or more streams)
    decode_rows: int = 0  # talker rows run, summed over steps (rows / steps = mean batch)
    decode_calls: int = 0
    max_rows: int = 0  # most streams in one talker step


class StepLoop:
    """The engine side of continuous batching over `backend` (its KV rows: `limits.max_batch`)."""

    def __init__(self, backend: Backend, gather_s: float = 0.005):
        self.backend = backend
        self.policy = StepPolicy(gather_s)
        self.rows = backend.limits.max_batch
        self.stats = StepStats()
        self._free = list(range(self.rows))
        self._cond = threading.Condition()
        self._pending: list[StepRequest] = []
        self._running = False
        self._previous: set[StepClient] = set()  # took part in the last batched step and still live
        self._clients: set[StepClient] = set()  # open clients (their rows are taken)
        self._idle_since = time.perf_counter()
        # one codec call at a time (a TensorRT context is not reentrant), batched over the streams waiting
        self.codecs = CodecBatcher(backend, self.rows)

    def client(self) -> "StepClient":
        """A stream's view of the backend: one KV row of its own, for as long as it is open."""
        with self._cond:
            if not self._free:
                raise BackendUnavailableError(
                    f"all {self.rows} stream slot(s) of this engine are taken: build with --max-batch N "
                    "(and serve with --streams N) for more concurrent streams")
            self._free.sort()
            client = StepClient(self, self._free.pop(0))
            self._clients.add(client)
            return client

    # -- what clients call ----------------------------------------------------------------------
    def _ask(self, client: "StepClient", call: Call) -> tuple:
        request = StepRequest(client, call)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done:
                if self._running:
                    self._cond.wait()
                    continue
                choice = self.policy.choose(self._pending, self._previous, self._idle_since, time.perf_counter())
                if choice.run:
                    self._run(choice.run)
                else:
                    self._cond.wait(choice.wait_s)
        client.add_engine_seconds(request.engine_s, step=True)
        if request.error is not None:
            raise request.error
        return request.result

    def _codec(self, client: "StepClient", codes, state):
        """A stream's codec chunk, run beside whatever step is running: the codec has its own
        engine, and on a CPU each gains little from a second core, so the two overlap."""
        result, engine_s = self.codecs.run(codes, state)
        client.add_engine_seconds(engine_s)
        return result

    def _leave(self, client: "StepClient", release: bool) -> None:
        with self._cond:
            client.length = 0
            self._previous.discard(client)
            if release:
                self._clients.discard(client)
                self._free.append(client.row)
            self._cond.notify_all()  # a leader waiting for this stream goes on without it

    # -- the step -------------------------------------------------------------------------------
    def _run(self, requests: tuple[StepRequest, ...]) -> None:
        """Run `requests` (called with the lock held; the engines run without it)."""
        for r in requests:
            if r in self._pending:
                self._pending.remove(r)
        self._running = True
        self._cond.release()
        engine_before = self.backend.thread_engine_seconds()
        try:
            self._execute(requests)
        finally:
            for r in requests:  # each stream's engine time is its call's; waiting for a step is not
                r.engine_s = self.backend.thread_engine_seconds() - engine_before
            self._cond.acquire()
            self._running = False
            self._idle_since = time.perf_counter()
            if requests[0].batched:
                self._previous = {r.client for r in requests if r.client.live}
            for r in requests:
                r.done = True
            self._cond.notify_all()

    def _execute(self, requests: tuple[StepRequest, ...]) -> None:
        call = requests[0].call
        if isinstance(call, Prefill):
            self._fit_rows()
            self._settle(requests, lambda: [self.backend.prefill(call.embeds, row=requests[0].client.row)])
        elif isinstance(call, PredictFrame):
            self.stats.steps += 1
            self._settle(requests, lambda: self._predict([r.call for r in requests]))
        else:  # TalkerDecode
            self.stats.steps += 1
            self._fit_rows()
            self._settle(requests, lambda: self._decode(requests))

    @staticmethod
    def _settle(requests: tuple[StepRequest, ...], run) -> None:
        try:
            for request, result in zip(requests, run()):
                request.result = result
        except Exception as exc:  # noqa: BLE001  (every stream of the call gets the engine's error)
            for request in requests:
                request.error = exc

    def _predict(self, calls: list[PredictFrame]) -> list:
        if len(calls) == 1:
            return [self.backend.predict_frame(*calls[0].args)]
        args = [torch.cat(parts) for parts in zip(*(c.args for c in calls))]
        codes, embeds = self.backend.predict_frame(*args)
        return [(codes[i:i + 1], embeds[i:i + 1]) for i in range(len(calls))]

    def _decode(self, requests: tuple[StepRequest, ...]) -> list:
        calls: list[TalkerDecode] = [r.call for r in requests]
        embeds = torch.cat([c.embeds for c in calls])
        positions = [c.position for c in calls]
        rows = [r.client.row for r in requests]
        logits, hidden = self.backend.decode_rows(embeds, positions, rows)
        s = self.stats
        s.decode_calls, s.decode_rows, s.max_rows = s.decode_calls + 1, s.decode_rows + len(rows), max(s.max_rows, len(rows))
        return [(logits[i:i + 1], hidden[i:i + 1]) for i in range(len(requests))]

    def _fit_rows(self) -> None:
        """Give back KV positions no live stream needs any more (the longest stream has ended):
        every step reads rows whole, so it would keep paying for them."""
        kv: KVSlots = getattr(self.backend, "kv", None)
        if kv is None or self.rows == 1:
            return
        with self._cond:
            need = max((c.length for c in self._clients), default=0) + 1
        if need + KVSlots.BLOCK <= kv.length // 2:
            kv.resize(need)


class StepClient:
    """One stream's side of the step loop, for this stream's KV row: the frame loop's calls (a
    `FrameEngine`), each a request to the loop, and its codec chunks (the state is the caller's)."""

    def __init__(self, loop: StepLoop, row: int):
        inner = loop.backend
        self.config: ModelConfig = inner.config
        self.limits: EngineLimits = inner.limits
        self.loop, self.row = loop, row
        self.name, self.device, self.fallback = inner.name, inner.device, inner.fallback
        self.length = 0  # KV positions this stream holds
        self.live = False  # between its first request and end_stream()
        self.closed = False
        self._engine_add = threading.Lock()  # its frames and its codec chunks come from two threads
        self.engine_seconds = 0.0  # engine time of all its calls, codec chunks included
        self.step_seconds = 0.0  # engine time of its prefill, talker and predictor calls

    def add_engine_seconds(self, seconds: float, step: bool = False) -> None:
        """Count engine time: all of it, and apart that of its steps (prefill, talker, predictor)."""
        with self._engine_add:
            self.engine_seconds += seconds
            if step:
                self.step_seconds += seconds

    def new_codec_state(self):
        return self.loop.backend.new_codec_state()  # an allocation, not an engine call

    def _check_open(self) -> None:
        if self.closed:
            raise BackendUnavailableError("this stream's slot was closed")

    def _ask(self, call: Call) -> tuple:
        self._check_open()
        self.live = True
        return self.loop._ask(self, call)

    def prefill(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._ask(Prefill(embeds))
        self.length = embeds.shape[1]
        return out

    def decode(self, embeds: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._ask(TalkerDecode(embeds, position))
        self.length = position + 1
        return out

    def predict_frame(self, hidden: torch.Tensor, code0: torch.Tensor, noise: torch.Tensor,
                      temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        return self._ask(PredictFrame(hidden, code0, noise, temperature, top_k, top_p))

    def codec_run(self, codes: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        self._check_open()  # not `_ask`: a codec chunk is not a step, and does not make the stream live
        return self.loop._codec(self, codes, state)

    def end_stream(self) -> None:
        """The utterance ended: the other streams stop waiting for this one's steps."""
        self.live = False
        self.loop._leave(self, release=False)

    def close(self) -> None:
        """Give the KV row back to the loop (for another stream)."""
        if not self.closed:
            self.live, self.closed = False, True
            self.loop._leave(self, release=True)
