"""`Synthesizer`: text + voice in, a stream of 24 kHz PCM chunks out, over any backend.

- The first chunk leaves after one frame (80 ms of audio); later chunks follow a ramp (1, 2, 4,
  8, 10 frames by default), all through the backend's stateful codec, so chunk edges are exact.
- EOS guard: every segment has a frame cap from its text length (plus an absolute cap). A
  generation that reaches it ends there, and the metrics say so (end_reason "frame_cap").
- Text longer than one talker context is split at sentence boundaries. The pieces are generated
  one after another into one audio stream: the codec state runs on across them.
- Cancellation: `cancel()`, closing the iterator, or leaving an `async for` frees the synthesizer
  within one frame; the next request starts clean.
- Metrics per utterance: time to first chunk, frames, real-time factor, engine time, and host
  overhead (time spent outside engine calls) per frame.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from contextlib import aclosing
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import AsyncIterable, AsyncIterator, Generator, Iterable, Iterator

import numpy as np
import torch

from .backends import open_backend
from .backends.base import Backend
from .checkpoint import resolve_checkpoint
from .config import ASSISTANT_TEMPLATE
from .contract import chunk_frames
from .decode_loop import TEXT_STALL, FrameLoop
from .embed import Embedder
from .errors import PromptError
from .prompt import ASSISTANT_SUFFIX_LEN, ROLE_LEN, Prompt, PromptBuilder, Voice
from .read_ahead import ReadAhead
from .sampling import SamplingParams
from .scheduler import StepLoop
from .text import TextTokenizer
from .text_split import split_text
from .text_stream import LivePrompt, TextInput


@dataclass(frozen=True)
class StreamOptions:
    chunk_ramp: tuple[int, ...] = (1, 2, 4, 8, 10)  # frames per chunk; the last size repeats
    pcm16: bool = False  # int16 samples instead of float32
    base_frames: int = 50  # EOS guard: 4 s of audio ...
    frames_per_token: float = 10.0  # ... plus 0.8 s per text token (speech runs at ~3-5 frames a token)
    max_frames: int = 4096  # absolute cap per segment (5.5 minutes)
    max_text_chars: int = 100_000  # longer requests are refused (about two hours of speech): bounded memory


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16 (clipped, rounded): the one conversion every output uses."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


@dataclass
class AudioChunk:
    samples: np.ndarray  # float32 in [-1, 1], or int16
    sample_rate: int
    index: int
    frames: int
    codes: torch.Tensor | None = None  # [frames, 16] int64: the codes this audio was decoded from (cache, re-vocode)

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    def to_bytes(self) -> bytes:
        return self.samples.tobytes()


@dataclass
class UtteranceMetrics:
    backend: str
    ttfc_ms: float | None
    frames: int
    audio_seconds: float
    wall_seconds: float
    engine_seconds: float  # engines' time, the codec's included: it runs beside the frames, so this can exceed the wall time
    host_seconds: float  # the frame loop's thread outside engine calls and waits (for the reader, for text)
    end_reason: str  # eos | frame_cap | max_new_tokens | context | cancelled
    segments: int
    chunks: int
    text_stall_ms: float | None = None  # stream_text: time the frame loop waited for text to arrive
    frames_after_cancel: int | None = None  # frames made after cancel() was called (the one in progress)
    fallback: str | None = None  # why `auto` runs this backend instead of the build's (None: no fallback)

    @property
    def ms_per_frame(self) -> float:
        return 1000 * self.wall_seconds / max(self.frames, 1)

    @property
    def host_us_per_frame(self) -> float:
        return 1e6 * self.host_seconds / max(self.frames, 1)

    @property
    def xrt(self) -> float:
        return self.audio_seconds / max(self.wall_seconds, 1e-9)

    def to_dict(self) -> dict:
        return dict(asdict(self), ms_per_frame=self.ms_per_frame, host_us_per_frame=self.host_us_per_frame, xrt=self.xrt)


class Synthesizer:
    """One stream at a time: `stream`, `stream_text` and their async forms. For concurrent streams
    on the same engines, one synthesizer per stream: `sibling()` makes another on the same step
    loop, which runs all their frames in shared engine calls (runtime/scheduler.py)."""

    def __init__(self, backend: Backend | StepLoop, model_dir: str | Path, options: StreamOptions = StreamOptions(),
                 embedder: Embedder | None = None):
        self.steps = backend if isinstance(backend, StepLoop) else StepLoop(backend)
        self.backend = self.steps.client()  # this synthesizer's KV row and codec state
        self.config = self.backend.config
        self.options = options
        self.loop = FrameLoop(self.backend)
        model_dir = self.model_dir = resolve_checkpoint(model_dir)
        self.embedder = embedder or Embedder.from_checkpoint(model_dir, self.config)
        self.prompts = PromptBuilder(self.config, TextTokenizer(model_dir), self.embedder)
        self.sample_rate = self.config.codec.sample_rate
        self.last_metrics: UtteranceMetrics | None = None
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._cancel_mark: int | None = None  # frames made when cancel() was called
        self._live_frames = 0
        self._feed: TextInput | None = None  # the streaming text of the utterance in progress
        self._current = None

    @classmethod
    def open(cls, checkpoint, build_dir: str | Path | None = None, backend: str = "auto", *,
             options: StreamOptions = StreamOptions(), device=None, fallback: bool = False) -> "Synthesizer":
        """`backend="auto"` runs the best backend the build supports; a build that cannot run here
        is an error unless `fallback=True` (then the reason is logged and kept in the metrics)."""
        return cls(open_backend(backend, checkpoint, build_dir, device=device, fallback=fallback), checkpoint, options)

    def sibling(self) -> "Synthesizer":
        """Another synthesizer on the same engines and step loop, for one more concurrent stream (it
        takes one of the build's `--max-batch` KV rows until `close()`)."""
        return Synthesizer(self.steps, self.model_dir, self.options, embedder=self.embedder)

    def close(self) -> None:
        """Give this synthesizer's KV row back to the step loop (the engines stay open)."""
        self.cancel()
        self.backend.close()

    @property
    def backend_name(self) -> str:
        return self.backend.name

    # -- requests -------------------------------------------------------------------------------
    def default_params(self, **overrides) -> SamplingParams:
        return SamplingParams.from_defaults(self.config.sampling, **overrides)

    def greedy_params(self, **overrides) -> SamplingParams:
        """Argmax decoding from the checkpoint's generation_config (as the official do_sample=False)."""
        return SamplingParams.greedy(self.config.sampling, **overrides)

    def cancel(self) -> None:
        """Stop the utterance in progress at the next frame."""
        self._cancel_mark = self._live_frames
        self._cancel.set()
        feed = self._feed
        if feed is not None:
            feed.cancel()  # a frame loop waiting for text wakes up and sees the flag

    def prepare(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None) -> list[Prompt]:
        """Validate the request and build one prompt per piece of text (errors surface here)."""
        return [self.prompts.build(piece, voice) for piece in self._plan(text, voice, params)]

    def _plan(self, text: str, voice: Voice, params: SamplingParams | None,
              first: dict[str, Prompt] | None = None) -> list[str]:
        """Validate everything about the request and split its text into pieces that each fit one
        context. Only strings are kept: prompts are built one at a time as the stream reaches
        them, so memory stays bounded whatever the text. `first`, when given, receives the first
        piece's prompt if the split already built it (it does for a text that fits one context),
        so that the stream does not build it again before its first audio."""
        limits = self.backend.limits
        params = params or self.default_params()
        self._check_request(voice, params)
        if not isinstance(text, str):
            raise PromptError(f"text must be a str, not {type(text).__name__}")
        if not text.strip():
            raise PromptError("text is empty: nothing to say")
        if len(text) > self.options.max_text_chars:
            raise PromptError(f"text has {len(text):,} characters; one request takes at most "
                              f"{self.options.max_text_chars:,} (StreamOptions.max_text_chars): send it in parts")
        self.prompts.tok.check_text(text)  # the whole text once: a later piece cannot fail mid-stream
        max_frames = params.max_new_tokens - 1
        # A piece's prompt lengths depend only on its token count (the voice being fixed), so each
        # count is built once: splitting then costs a tokenization per test, not a prompt build.
        sizes: dict[int, tuple[int, int, int]] = {}
        built: dict[str, Prompt] = {}  # during the split only: the first piece's is kept

        def size(piece: str) -> tuple[int, int, int] | None:
            """(prompt length, text positions, EOS-guard frames) of `piece`; None: not a length problem."""
            n = len(self.prompts.tok.encode(ASSISTANT_TEMPLATE.format(text=piece))) - ROLE_LEN - ASSISTANT_SUFFIX_LEN
            if n >= limits.max_context:
                return limits.max_prompt + 1, n, 0  # hopeless: nothing built for it
            if n not in sizes:
                try:
                    p = self.prompts.build(piece, voice)
                except PromptError:
                    return None  # e.g. only spaces: the check below reports it
                sizes[n] = (p.length, p.text_positions, min(self._frame_cap(p), max_frames))
                if first is not None:
                    built[piece] = p
            return sizes[n]

        def fits(piece: str) -> bool:
            s = size(piece)
            # the text inputs and the frames the EOS guard allows must fit one context
            return s is None or (s[0] <= limits.max_prompt and s[1] + s[2] < limits.max_context)

        pieces = split_text(text, fits)
        if first is not None and pieces[0] in built:
            first[pieces[0]] = built[pieces[0]]
        for piece in pieces:
            length, positions, _ = size(piece) or (0, 0, 0)
            if length > limits.max_prompt or positions >= limits.max_context:
                raise PromptError(f"the voice prompt alone needs {length} positions; the engines hold "
                                  f"{limits.max_prompt}: shorten the instruct or reference, or rebuild with more")
        return pieces

    def stream(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None, *,
               chunk_ramp: tuple[int, ...] | None = None) -> Iterator[AudioChunk]:
        """Chunks of audio as they are made. Validation errors are raised here, before streaming.
        `chunk_ramp` overrides `StreamOptions.chunk_ramp` for this request."""
        t_request = time.perf_counter()
        params = params or self.default_params()
        first: dict[str, Prompt] = {}
        pieces = self._plan(text, voice, params, first)
        ramp = self.check_chunk_ramp(chunk_ramp)

        def frames(outcome):
            outcome["segments"] = len(pieces)
            return self._segment_frames(pieces, voice, params, outcome, first)

        return self._start(self._run(frames, voice, params, t_request, ramp))

    def text_input(self) -> TextInput:
        """A `TextInput` to push text into from any thread while `stream_text(it, ...)` speaks it."""
        return TextInput(self.prompts.tok)

    def stream_text(self, text: Iterable[str] | TextInput, voice: Voice = Voice(), params: SamplingParams | None = None,
                    *, chunk_ramp: tuple[int, ...] | None = None) -> Iterator[AudioChunk]:
        """Speak text while it is still being written (an LLM's tokens, words as typed): `text` is an
        iterable of fragments, read in a thread of its own, or a `TextInput` the caller pushes into.

        Generation starts once the first text token is final (one word in), takes each further
        token as it becomes final, and waits for text rather than guess that it ended: the wait
        is `last_metrics.text_stall_ms`, and the audio made before it is flushed first. When the
        input closes, the text ends exactly as in `stream()`: the ids fed equal the whole text's,
        so greedy codes equal `stream(whole_text)` for text that fits one context. Longer text is
        cut as it arrives into segments that each fit one context, at sentence ends where it has
        them (`TextInput`); each segment speaks as `stream(segment_text)`, on one codec stream. Text
        that is complete before generation starts takes the `stream()` path itself."""
        t_request = time.perf_counter()
        params = params or self.default_params()
        probe = self._check_request(voice, params)
        before, taken = self.prompts.streaming_layout(voice)
        ramp = self.check_chunk_ramp(chunk_ramp)
        if isinstance(text, str):
            raise PromptError("stream_text takes an iterable of text fragments; for one string use stream()")
        live = text if isinstance(text, TextInput) else self.text_input()
        max_ids = self._segment_ids(probe, params)
        live.limit(max_ids, window=max(4, max_ids // 4))  # longer text: cut at sentence ends, as stream() does
        if not isinstance(text, TextInput):
            threading.Thread(target=_pump, args=(iter(text), live), daemon=True, name="qwen3-tts-text").start()

        def frames(outcome):
            return self._arriving_text_frames(live, voice, params, before, taken, outcome)

        return self._start(self._run(frames, voice, params, t_request, ramp, live))

    def _segment_ids(self, probe: Prompt, params: SamplingParams) -> int:
        """The most text ids one context holds with the voice of `probe` (its prompt for one word):
        the text's positions plus the frames the EOS guard allows must fit, the test `_plan` makes
        for each piece of a long text."""
        limits = self.backend.limits
        base = probe.text_positions - len(probe.text_ids)  # each further id takes one position
        for n in range(limits.max_context - base, 0, -1):
            if base + n + min(self._frame_cap_for(n), params.max_new_tokens - 1) < limits.max_context:
                return n
        raise PromptError(f"the voice prompt alone needs {probe.length} positions; the engines hold "
                          f"{limits.max_context}: shorten the instruct or reference, or rebuild with more")

    def _start(self, run):
        previous = self._current
        if previous is not None and previous.gi_frame is not None and not previous.gi_running:
            previous.close()  # an abandoned stream still holds the synthesizer: end it
        elif previous is not None and previous.gi_running:
            self.cancel()  # running in another thread: it stops at its next frame
        self._current = run
        return run

    def _check_request(self, voice: Voice, params: SamplingParams) -> Prompt:
        """Refuse bad params or a bad voice before any text; returns the voice's prompt for one word."""
        if not isinstance(params, SamplingParams):
            raise PromptError(f"params must be SamplingParams, not {type(params).__name__}")
        params.validate(self.backend.limits.top_k_max)
        if not isinstance(voice, Voice):
            raise PromptError(f"voice must be a Voice, not {type(voice).__name__}")
        return self.prompts.build("a", voice)  # the voice's own problems, before any text arrives

    def synthesize(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None) -> np.ndarray:
        """The whole utterance as one array."""
        chunks = [c.samples for c in self.stream(text, voice, params)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16 if self.options.pcm16 else np.float32)

    async def astream(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None, *,
                      chunk_ramp: tuple[int, ...] | None = None) -> AsyncIterator[AudioChunk]:
        """The same stream for asyncio: generation runs in a worker thread, chunks arrive in order.
        Leaving the loop early (or cancelling the task) cancels the generation."""
        async with aclosing(self._in_worker(self.stream(text, voice, params, chunk_ramp=chunk_ramp))) as chunks:
            async for chunk in chunks:
                yield chunk

    async def astream_text(self, text: AsyncIterable[str] | Iterable[str] | TextInput, voice: Voice = Voice(),
                           params: SamplingParams | None = None, *,
                           chunk_ramp: tuple[int, ...] | None = None) -> AsyncIterator[AudioChunk]:
        """`stream_text` for asyncio: `text` may be an async iterable of fragments (an LLM client's
        token stream), read on the event loop as it arrives. Leaving the loop early (or cancelling
        the task) stops both the reading and the generation."""
        if not hasattr(text, "__aiter__"):
            async with aclosing(self._in_worker(self.stream_text(text, voice, params, chunk_ramp=chunk_ramp))) as chunks:
                async for chunk in chunks:
                    yield chunk
            return
        live = self.text_input()
        chunks = self.stream_text(live, voice, params, chunk_ramp=chunk_ramp)  # validation errors: here

        async def read():
            try:
                async for fragment in text:
                    if live.cancelled:
                        return
                    live.push(fragment)
            except Exception as exc:  # noqa: BLE001  (the text source failed: end the utterance with its error)
                live.source_failed(exc)
                return
            live.close()

        reader = asyncio.ensure_future(read())
        try:
            async with aclosing(self._in_worker(chunks)) as audio:
                async for chunk in audio:
                    yield chunk
        finally:
            reader.cancel()
            live.cancel()

    async def _in_worker(self, chunks: Generator[AudioChunk, None, None]) -> AsyncIterator[AudioChunk]:
        """Run a stream in a worker thread and hand its chunks (or its error) to the event loop."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done, left = object(), threading.Event()

        worker = loop.create_future()  # done when the thread has closed the stream

        def work():
            try:
                for chunk in chunks:
                    if left.is_set():  # the consumer left before the stream had started: end it here
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:  # delivered to the consumer
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                chunks.close()
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
                self.cancel()  # the frame loop stops at its next frame (or stops waiting for text)
            await asyncio.shield(worker)

    def warmup(self) -> None:
        """Run every engine shape the stream uses, greedy and sampled, once, so the first real
        request pays no first-call costs (allocations, kernel selection, lazy inits)."""
        voice = self._warmup_voice()
        for params in (self.greedy_params(max_new_tokens=3), self.default_params(max_new_tokens=3, seed=0)):
            for _ in self.stream("Warm up.", voice, params):
                pass
        sizes = sorted(set(self.options.chunk_ramp) | {self.backend.limits.max_chunk})
        self.backend.reset()
        for n in sizes:
            self.backend.codec_step(torch.zeros((1, self.config.codec.num_quantizers, n), dtype=torch.long))
        self.backend.reset()
        self.last_metrics = None

    def _warmup_voice(self) -> Voice:
        if self.config.variant == "custom_voice":
            return Voice(speaker=next(iter(self.config.speakers)))
        if self.config.variant == "base":
            return Voice(xvector=torch.zeros(self.config.talker.hidden_size))
        return Voice()

    # -- the stream -----------------------------------------------------------------------------
    def _frame_cap(self, prompt: Prompt) -> int:
        return self._frame_cap_for(len(prompt.text_ids))

    def _frame_cap_for(self, text_ids: int) -> int:
        """The EOS guard: the most frames a piece of `text_ids` text ids may make."""
        o = self.options
        return max(2, min(o.max_frames, int(o.base_frames + o.frames_per_token * text_ids)))

    def check_chunk_ramp(self, ramp: tuple[int, ...] | None) -> tuple[int, ...]:
        """The chunk ramp a request will use (None: the options' one), or a PromptError."""
        ramp = self.options.chunk_ramp if ramp is None else tuple(ramp)
        if not ramp or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ramp):
            raise PromptError(f"chunk_ramp must be whole frame counts of at least 1, got {ramp!r}")
        return ramp

    def _chunk_size(self, index: int, ramp: tuple[int, ...]) -> int:
        return chunk_frames(index, ramp, self.backend.limits.max_chunk)

    def _encode(self, pcm: torch.Tensor) -> np.ndarray:
        samples = pcm.detach().float().cpu().numpy().reshape(-1)
        if self.options.pcm16:
            return to_pcm16(samples)
        return samples.astype(np.float32, copy=False)

    def _segment_frames(self, pieces: list[str], voice: Voice, params: SamplingParams, outcome: dict,
                        built: dict[str, Prompt] | None = None):
        """Frames of every piece of text in turn; `outcome["end"]` records the last non-EOS ending.
        `built`: prompts `_plan` already made (taken once, then dropped)."""
        for piece in pieces:
            prompt = (built or {}).pop(piece, None) or self.prompts.build(piece, voice)
            cap = self._frame_cap(prompt)
            yield from self.loop.frames(prompt, replace(params, max_new_tokens=min(params.max_new_tokens, cap + 1)))
            seg_end = self.loop.last.end_reason
            if seg_end == "max_new_tokens" and cap + 1 < params.max_new_tokens:
                seg_end = "frame_cap"  # the EOS guard ended a runaway generation
            if seg_end != "eos":
                outcome["end"] = seg_end

    def _arriving_text_frames(self, live: TextInput, voice: Voice, params: SamplingParams, before: list[int], taken: int,
                              outcome: dict):
        """Frames of text that is still arriving, segment after segment (one context each)."""
        outcome["segments"] = 0
        index = 0
        while (seg := live.segment(index)) is not None:
            index += 1
            if live.error is not None:
                raise live.error
            if seg.feed.closed and not seg.text.strip():
                continue  # only spaces after the last cut
            outcome["segments"] += 1
            yield from self._segment_of_arriving_text(live, seg, voice, params, before, taken, outcome)
            if outcome["end"] == "cancelled" or not seg.feed.closed:
                break  # (an end before the segment's text was complete ends the utterance, as in stream())
        if live.error is not None:
            raise live.error
        if outcome["segments"] == 0 and outcome["end"] != "cancelled":
            raise PromptError("text is empty: nothing to say")

    def _segment_of_arriving_text(self, live: TextInput, seg, voice: Voice, params: SamplingParams,
                                  before: list[int], taken: int, outcome: dict):
        """Frames of one segment, or of `stream()`'s pieces when its text was complete before the
        prefill could start."""
        feed, need = seg.feed, max(taken - len(before), 1)  # the prefill needs its text entries
        if not feed.ready(need):
            yield TEXT_STALL  # the last segment's audio plays while this one's text arrives
        if not feed.wait(need):
            if live.error is not None:
                raise live.error
            outcome["end"] = "cancelled"
            return
        if feed.closed:
            pieces = self._plan(seg.text, voice, params)
            outcome["segments"] += len(pieces) - 1
            yield from self._segment_frames(pieces, voice, params, outcome)
            return
        start = self.prompts.build_ids(seg.role_ids, list(feed.ids), voice)
        eos = self.embedder.text([self.config.ids.tts_eos])
        prompt = LivePrompt(start, feed, before, taken, self.embedder, eos)
        made = 0
        for frame in self.loop.frames(prompt, params):
            if frame is not TEXT_STALL:
                made += 1
                if feed.closed and made > self._frame_cap(prompt):
                    outcome["end"] = "frame_cap"  # the EOS guard, as in _segment_frames
                    return
            yield frame
            if live.error is not None:
                raise live.error
            if live.cancelled:  # the text was withdrawn (an interruption): what follows would be made up
                outcome["end"] = "cancelled"
                return
        if self.loop.last.end_reason != "eos":
            outcome["end"] = self.loop.last.end_reason

    def _run(self, frames_of, voice: Voice, params: SamplingParams, t_request: float,
             ramp: tuple[int, ...], live: TextInput | None = None):
        with self._lock:
            self._cancel.clear()
            self._cancel_mark, self._live_frames = None, 0
            self._feed = live
            backend = self.backend
            engine_start, steps_start = backend.engine_seconds, backend.step_seconds
            active, resumed = 0.0, time.perf_counter()
            frames = chunks = audio_samples = 0
            ttfc = None
            cancelled = False
            outcome = {"end": "eos", "segments": 0}
            pending: list[torch.Tensor] = []
            source, ahead = self._frames_made(frames_of(outcome)), None
            try:
                backend.reset()
                if voice.ref_codes is not None:  # ICL: the reference is the codec's left context
                    self._prime_codec(torch.as_tensor(voice.ref_codes, dtype=torch.long))
                # The frames are made in a thread of their own while this one runs the codec on
                # the last ones; at most a chunk of the ramp's largest size waits here.
                ahead = ReadAhead(source, depth=max(ramp), name="qwen3-tts-frames")
                for frame in itertools.chain(ahead, [None]):  # None: the end, flush what is pending
                    if self._cancel.is_set():
                        cancelled = True
                        break
                    stalled = frame is TEXT_STALL  # the loop waits for text: what is made plays meanwhile
                    if frame is not None and not stalled:
                        frames += 1
                        pending.append(frame)
                    if pending and (frame is None or stalled or len(pending) >= self._chunk_size(chunks, ramp)):
                        chunk = self._emit(pending, chunks)
                        pending, chunks = [], chunks + 1
                        audio_samples += len(chunk.samples)
                        ttfc = ttfc if ttfc is not None else time.perf_counter() - t_request
                        active += time.perf_counter() - resumed
                        yield chunk
                        resumed = time.perf_counter()
            except GeneratorExit:
                cancelled = True
                raise
            finally:
                if live is not None:
                    live.cancel()  # a frame loop waiting for text wakes up; a pump still pushing text stops
                if ahead is not None:
                    ahead.close()  # the frame in progress ends; its source closes in its own thread
                else:
                    source.close()
                backend.end_stream()  # the step loop stops waiting for this stream's steps
                self._feed = None
                if cancelled:
                    outcome["end"] = "cancelled"
                active += time.perf_counter() - resumed
                engine = backend.engine_seconds - engine_start
                host = 0.0
                if ahead is not None:
                    stalled_s = live.stall_seconds if live is not None else 0.0
                    host = max(ahead.made_seconds - ahead.waited_seconds - stalled_s
                               - (backend.step_seconds - steps_start), 0.0)
                self.last_metrics = UtteranceMetrics(
                    backend=self.backend_name, ttfc_ms=None if ttfc is None else 1000 * ttfc, frames=frames,
                    audio_seconds=audio_samples / self.sample_rate, wall_seconds=active, engine_seconds=engine,
                    host_seconds=host, end_reason=outcome["end"], segments=outcome["segments"],
                    chunks=chunks, fallback=backend.fallback,
                    frames_after_cancel=None if outcome["end"] != "cancelled" or self._cancel_mark is None
                    else self._live_frames - self._cancel_mark,
                    text_stall_ms=None if live is None else 1000 * live.stall_seconds)

    def _frames_made(self, frames: Generator) -> Generator:
        """The stream's frames as they are made (counted for `cancel()`), ending after the frame in
        progress once the utterance is cancelled."""
        try:
            for frame in frames:
                if frame is not TEXT_STALL:
                    self._live_frames += 1
                yield frame
                if self._cancel.is_set():
                    return
        finally:
            frames.close()

    def _emit(self, frames: list[torch.Tensor], index: int) -> AudioChunk:
        codes = torch.stack(frames).T[None]  # [1, 16, n]
        pcm = self.backend.codec_step(codes)
        return AudioChunk(self._encode(pcm), self.sample_rate, index, len(frames), codes=codes[0].T.clone())

    def _prime_codec(self, ref_codes: torch.Tensor) -> None:
        step = self.backend.limits.max_chunk
        for i in range(0, ref_codes.shape[0], step):
            self.backend.codec_step(ref_codes[i:i + step].T[None])


def _pump(fragments: Iterator[str], live: TextInput) -> None:
    """Read an iterable of text fragments into `live` (its own thread: reading may block)."""
    try:
        for fragment in fragments:
            if live.cancelled:
                return
            live.push(fragment)
    except Exception as exc:  # noqa: BLE001  (the text source failed: end the utterance with its error)
        live.source_failed(exc)
        return
    live.close()
