"""`Synthesizer`: text + voice in, a stream of 24 kHz float32 audio chunks out, over any backend.

The data path, one module each:

    request_plan.RequestPlanner   checks the request and splits its text into pieces, one context each
    frame_source.FrameSource      prompts -> the frame loop -> typed events (frames, text stalls, segment ends)
    audio_stream.stream_audio     events -> read-ahead -> chunk ramp -> stateful codec -> AudioChunk, + metrics

- The first chunk leaves after one frame (80 ms of audio); later chunks follow a ramp (1, 2, 4,
  8, 10 frames by default), all through the backend's stateful codec, so chunk edges are exact.
- EOS guard: every segment has a frame cap from its text length (plus an absolute cap). A
  generation that reaches it ends there, and the metrics say so (end_reason "frame_cap").
- Text longer than one talker context is split at sentence boundaries. The pieces are generated
  one after another into one audio stream: the codec state runs on across them.
- Cancellation: `cancel()`, closing the iterator, or leaving an `async for` frees the synthesizer
  within one frame; the next request starts clean.
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import aclosing
from pathlib import Path
from typing import AsyncIterable, AsyncIterator, Iterable, Iterator

import numpy as np
import torch

from .async_bridge import in_thread
from .audio_stream import AudioChunk, StreamControl, stream_audio, to_pcm16
from .backends import open_backend
from .backends.base import Backend
from .checkpoint import resolve_checkpoint
from .decode_loop import FrameLoop
from .embed import Embedder
from .errors import PromptError
from .frame_source import Events, FrameSource
from .metrics import MetricsRecorder, UtteranceMetrics
from .prompt import Prompt, PromptBuilder
from .request_plan import RequestPlanner, StreamOptions
from .requests import VoiceResolver
from .sampling import SamplingParams
from .scheduler import StepLoop
from .text import TextTokenizer
from .text_stream import TextInput, apump_text, pump_text
from .voice import Voice

__all__ = ["AudioChunk", "StreamOptions", "Synthesizer", "UtteranceMetrics", "to_pcm16"]


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
        self.planner = RequestPlanner(self.prompts, self.backend.limits, options)
        self.frame_source = FrameSource(self.prompts, self.loop, self.planner, self.embedder)
        self.sample_rate = self.config.codec.sample_rate
        self.last_metrics: UtteranceMetrics | None = None
        self._lock = threading.Lock()
        self._control = StreamControl()
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

    def default_params(self, **overrides) -> SamplingParams:
        return SamplingParams.from_defaults(self.config.sampling, **overrides)

    def greedy_params(self, **overrides) -> SamplingParams:
        """Argmax decoding from the checkpoint's generation_config (as the official do_sample=False)."""
        return SamplingParams.greedy(self.config.sampling, **overrides)

    def cancel(self) -> None:
        """Stop the utterance in progress at the next frame."""
        self._control.cancel()

    def check_chunk_ramp(self, ramp: tuple[int, ...] | None) -> tuple[int, ...]:
        return self.planner.chunk_ramp(ramp)

    def prepare(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None) -> list[Prompt]:
        """Validate the request and build one prompt per piece of text (errors surface here)."""
        pieces = self.planner.plan(text, voice, params or self.default_params())
        return [self.prompts.build(piece, voice) for piece in pieces]

    def check_request(self, voice: Voice = Voice(), params: SamplingParams | None = None) -> None:
        """Raise the PromptError a request with this voice and these settings would raise (an
        unknown speaker or language, a bad setting, a voice too long), before any text."""
        self.planner.check(voice, params or self.default_params())

    # -- streams --------------------------------------------------------------------------------
    def stream(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None, *,
               chunk_ramp: tuple[int, ...] | None = None) -> Iterator[AudioChunk]:
        """Chunks of audio as they are made. Validation errors are raised here, before streaming.
        `chunk_ramp` overrides `StreamOptions.chunk_ramp` for this request."""
        t_request = time.perf_counter()
        params = params or self.default_params()
        pieces = self.planner.plan(text, voice, params)
        ramp = self.planner.chunk_ramp(chunk_ramp)
        events = self.frame_source.whole_text(pieces, voice, params, text)
        return self._start(self._run(events, voice, t_request, ramp))

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
        shape = self.planner.check(voice, params)
        layout = self.prompts.streaming_layout(voice)  # a voice that cannot take arriving text: refused here
        ramp = self.planner.chunk_ramp(chunk_ramp)
        if isinstance(text, str):
            raise PromptError("stream_text takes an iterable of text fragments; for one string use stream()")
        live = text if isinstance(text, TextInput) else self.text_input()
        max_ids = self.planner.arriving_text_limit(shape, params)
        live.limit(max_ids, window=max(4, max_ids // 4))  # longer text: cut at sentence ends, as stream() does
        if not isinstance(text, TextInput):
            threading.Thread(target=pump_text, args=(iter(text), live), daemon=True, name="qwen3-tts-text").start()
        events = self.frame_source.arriving_text(live, voice, params, layout)
        return self._start(self._run(events, voice, t_request, ramp, live))

    def synthesize(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None) -> np.ndarray:
        """The whole utterance as one float32 array."""
        chunks = [c.samples for c in self.stream(text, voice, params)]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)

    async def astream(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None, *,
                      chunk_ramp: tuple[int, ...] | None = None) -> AsyncIterator[AudioChunk]:
        """The same stream for asyncio: generation runs in a worker thread, chunks arrive in order.
        Leaving the loop early (or cancelling the task) cancels the generation."""
        async with aclosing(in_thread(self.stream(text, voice, params, chunk_ramp=chunk_ramp), self.cancel)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def astream_text(self, text: AsyncIterable[str] | Iterable[str] | TextInput, voice: Voice = Voice(),
                           params: SamplingParams | None = None, *,
                           chunk_ramp: tuple[int, ...] | None = None) -> AsyncIterator[AudioChunk]:
        """`stream_text` for asyncio: `text` may be an async iterable of fragments (an LLM client's
        token stream), read on the event loop as it arrives. Leaving the loop early (or cancelling
        the task) stops both the reading and the generation."""
        if not hasattr(text, "__aiter__"):
            chunks = self.stream_text(text, voice, params, chunk_ramp=chunk_ramp)
            async with aclosing(in_thread(chunks, self.cancel)) as audio:
                async for chunk in audio:
                    yield chunk
            return
        live = self.text_input()
        chunks = self.stream_text(live, voice, params, chunk_ramp=chunk_ramp)  # validation errors: here
        reader = asyncio.ensure_future(apump_text(text, live))
        try:
            async with aclosing(in_thread(chunks, self.cancel)) as audio:
                async for chunk in audio:
                    yield chunk
        finally:
            reader.cancel()
            live.cancel()

    def warmup(self) -> None:
        """Run every engine shape the stream uses, greedy and sampled, once, so the first real
        request pays no first-call costs (allocations, kernel selection, lazy inits)."""
        voice = self._warmup_voice()
        for params in (self.greedy_params(max_new_tokens=3), self.default_params(max_new_tokens=3, seed=0)):
            for _ in self.stream("Warm up.", voice, params):
                pass
        sizes = sorted(set(self.options.chunk_ramp) | {self.backend.limits.max_chunk})
        state = self.backend.new_codec_state()
        for n in sizes:
            codes = torch.zeros((1, self.config.codec.num_quantizers, n), dtype=torch.long)
            _, state = self.backend.codec_run(codes, state)
        self.last_metrics = None

    def _warmup_voice(self) -> Voice:
        if self.config.variant == "base":  # any x-vector runs the same shapes
            return Voice(xvector=torch.zeros(self.config.talker.hidden_size))
        return VoiceResolver(self.config).resolve()  # the default voice (CustomVoice: the first speaker)

    # -- one stream at a time -------------------------------------------------------------------
    def _start(self, run):
        previous = self._current
        if previous is not None and previous.gi_frame is not None and not previous.gi_running:
            previous.close()  # an abandoned stream still holds the synthesizer: end it
        elif previous is not None and previous.gi_running:
            self.cancel()  # running in another thread: it stops at its next frame
        self._current = run
        return run

    def _run(self, events: Events, voice: Voice, t_request: float, ramp: tuple[int, ...],
             live: TextInput | None = None):
        with self._lock:
            self._control.begin(live)
            recorder = MetricsRecorder(t_request)
            try:
                yield from stream_audio(events, self.backend, self._control, recorder, ramp,
                                        ref_codes=voice.ref_codes, live=live)
            finally:
                self._control.live = None
                self.last_metrics = recorder.metrics
