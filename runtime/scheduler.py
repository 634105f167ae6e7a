"""The step loop: many streams on one backend, one engine call per step for all of them.

Continuous batching, with the frame loop and the `Synthesizer` unchanged: each stream talks to
a `StepClient`, a `Backend` whose calls are handed to the loop instead of being run. Streams run
in threads of their own (as they always have), and the loop merges what they ask for at the same
time: the talker steps of every live stream in one `decode_rows` call, their predictor frames in
one `predict_frame` call. Prefills run one stream per call (prompts differ in length). Codec
chunks do not wait for steps: a stream's codec runs in its reader's thread while the talker and
predictor make its next frames (runtime/read_ahead.py), one codec call at a time per engine.

The loop has no thread of its own. The stream whose request finds the engine idle leads the
next step: it waits until every stream that took part in the previous step has asked again
(their host work between calls is short), or until `gather_s` has passed, then runs everything
asked for and hands each stream its result. A stream that is waiting for text, or whose consumer
is slow, so misses one step's gathering and is left out of the steps that follow until it asks
again. A stream alone runs its calls inline: the same calls as on the bare backend, plus a lock.

A stream joins with its first request (each client owns one KV row and its own codec state)
and leaves at `end_stream()`, which the Synthesizer calls when an utterance ends; no stream ever
waits for a batch to end. Each row keeps its own position, sampling state (the frame loop's
sampler and noise stay with the stream) and codec state, so a stream's greedy codes are those it
makes alone, as long as the engines compute each row independently of the others
(tests/test_scheduler.py checks it).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import torch

from .backends.base import Backend, KVSlots
from .errors import BackendUnavailableError

BATCHED = ("predict", "decode")  # the per-frame calls a step merges across streams


@dataclass(eq=False)
class _Request:
    client: "StepClient"
    kind: str  # prefill | predict | decode
    args: tuple
    asked: float = field(default_factory=time.perf_counter)
    result: object = None
    engine_s: float = 0.0  # engine time of the call that served it (shared by the call's streams)
    error: BaseException | None = None
    done: bool = False


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
        self.gather_s = gather_s
        self.rows = backend.limits.max_batch
        self.stats = StepStats()
        self._free = list(range(self.rows))
        self._cond = threading.Condition()
        self._pending: list[_Request] = []
        self._running = False
        self._expected: set[StepClient] = set()  # took part in the last step and still live
        self._clients: set[StepClient] = set()  # open clients (their rows are taken)
        self._idle_since = time.perf_counter()
        self._codec_lock = threading.Lock()  # one codec call at a time (a TensorRT context is not reentrant)

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
    def _ask(self, client: "StepClient", kind: str, *args):
        request = _Request(client, kind, args)
        with self._cond:
            self._pending.append(request)
            self._cond.notify_all()
            while not request.done:
                if self._running:
                    self._cond.wait()
                elif (alone := next((r for r in self._pending if r.kind not in BATCHED), None)) is not None:
                    self._run([alone])  # a prefill: now, whoever's it is
                elif self._ready():
                    self._run(self._take_step())
                else:
                    self._cond.wait(self._gather_left())
        client.add_engine_seconds(request.engine_s, step=True)
        if request.error is not None:
            raise request.error
        return request.result

    def _codec(self, client: "StepClient", codes, state):
        """A stream's codec chunk, run at once beside whatever step is running: the codec has its
        own engine, and on a CPU each gains little from a second core, so the two overlap."""
        with self._codec_lock:
            before = self.backend.thread_engine_seconds()
            try:
                return self.backend.codec_run(codes, state)
            finally:
                client.add_engine_seconds(self.backend.thread_engine_seconds() - before)

    def _leave(self, client: "StepClient", release: bool) -> None:
        with self._cond:
            client.length = 0
            self._expected.discard(client)
            if release:
                self._clients.discard(client)
                self._free.append(client.row)
            self._cond.notify_all()  # a leader waiting for this stream goes on without it

    # -- the step -------------------------------------------------------------------------------
    def _ready(self) -> bool:
        asked = {r.client for r in self._pending}
        return bool(asked) and (self._expected <= asked or self._gather_left() <= 0)

    def _gather_left(self) -> float:
        """How much longer the next step may wait for the streams of the last one: `gather_s` from
        when the engine fell idle with a request pending."""
        oldest = min((r.asked for r in self._pending), default=time.perf_counter())
        return self.gather_s - (time.perf_counter() - max(oldest, self._idle_since))

    def _take_step(self) -> list[_Request]:
        """The requests of one step: every stream asking for the kind of call most of them want. The
        others (a stream that joined between a predictor and a talker call of the rest) wait one
        step, and from then on are in step with the rest: one call per kind, not two half ones."""
        kinds = [r.kind for r in self._pending]
        kind = max(BATCHED, key=lambda k: (kinds.count(k), -kinds.index(k) if k in kinds else 0))
        step = [r for r in self._pending if r.kind == kind]
        self._pending = [r for r in self._pending if r.kind != kind]
        return step

    def _run(self, requests: list[_Request]) -> None:
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
            if requests[0].kind in BATCHED:
                self._expected = {r.client for r in requests if r.client.live}
            for r in requests:
                r.done = True
            self._cond.notify_all()

    def _execute(self, requests: list[_Request]) -> None:
        kind = requests[0].kind
        if kind == "prefill":
            self._fit_rows()
            self._settle(requests, lambda: [self.backend.prefill(*requests[0].args, row=requests[0].client.row)])
        elif kind == "predict":
            self.stats.steps += 1
            self._settle(requests, lambda: self._predict(requests))
        else:
            self.stats.steps += 1
            self._fit_rows()
            self._settle(requests, lambda: self._decode(requests))

    @staticmethod
    def _settle(requests: list[_Request], run) -> None:
        try:
            for request, result in zip(requests, run()):
                request.result = result
        except Exception as exc:  # noqa: BLE001  (every stream of the call gets the engine's error)
            for request in requests:
                request.error = exc

    def _predict(self, requests: list[_Request]) -> list:
        if len(requests) == 1:
            return [self.backend.predict_frame(*requests[0].args)]
        args = [torch.cat(parts) for parts in zip(*(r.args for r in requests))]
        codes, embeds = self.backend.predict_frame(*args)
        return [(codes[i:i + 1], embeds[i:i + 1]) for i in range(len(requests))]

    def _decode(self, requests: list[_Request]) -> list:
        embeds = torch.cat([r.args[0] for r in requests])
        positions = [r.args[1] for r in requests]
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


class StepClient(Backend):
    """One stream's backend: every call is a request to the step loop, for this stream's KV row."""

    def __init__(self, loop: StepLoop, row: int):
        inner = loop.backend
        super().__init__(inner.config, inner.limits)
        self.loop, self.row = loop, row
        self.name, self.device, self.fallback = inner.name, inner.device, inner.fallback
        self.length = 0  # KV positions this stream holds
        self.live = False  # between its first request and end_stream()
        self.closed = False
        self._engine_add = threading.Lock()  # its frames and its codec chunks come from two threads
        self.step_seconds = 0.0  # engine time of its prefill, talker and predictor calls
        self.reset()

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

    def _ask(self, kind: str, *args):
        self._check_open()
        self.live = True
        return self.loop._ask(self, kind, *args)

    def prefill(self, embeds, row=None):
        out = self._ask("prefill", embeds)
        self.length = embeds.shape[1]
        return out

    def decode(self, embeds, position, row=None):
        out = self._ask("decode", embeds, position)
        self.length = position + 1
        return out

    def _decode_padded(self, embeds, positions):
        raise NotImplementedError("a step client runs its own row: the loop batches rows")

    def predict_frame(self, hidden, code0, noise, temperature, top_k, top_p):
        return self._ask("predict", hidden, code0, noise, temperature, top_k, top_p)

    def codec_run(self, codes, state):
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
