"""`Qwen3TTSService`: the project's streaming `Synthesizer` as a Pipecat TTS service.

An adapter, nothing more: each piece of text Pipecat hands to `run_tts` becomes one stream of
the runtime's `StreamPool` (runtime/stream_pool.py), and each chunk it makes (the first after one
80 ms frame) leaves at once as a PCM16 `TTSAudioRawFrame`, resampled to the pipeline's rate when
that is not 24 kHz.

Threading. Each stream runs its engine calls in a thread of its own (runtime/async_bridge.py),
never on the event loop, so VAD and transports keep their timing. Every `Synthesizer` has one
pool with one slot, shared by the services that speak with it (several pipelines in one process,
on one event loop): an utterance holds the slot from its first frame until its stream is closed,
so those services speak one after another, never interleaved. An utterance that finds the slot
taken waits for it as long as it takes (a pipeline is never refused) and says so in the log.
Conversations that should speak at once each get their own `synth.sibling()`: the step loop runs
their frames in shared engine calls.

Interruption. Pipecat cancels `run_tts` at its current `await`. The service then closes the
stream: the engine stops at its next frame, the frame in progress is the last one made, and the
slot is free once it is done, so the next utterance starts within one frame, clean.

Word timestamps (`word_timestamps=True`). Each chunk says which text ids entered the talker with
its frames (`AudioChunk.text_fed`); a word's time is the frame of its first id (80 ms a frame,
plus `word_timestamp_lag_s`), counted from the first audio of the turn's audio context. They go
to Pipecat's `add_word_timestamps`, which turns them into word `TTSTextFrame`s timed to the
audio, so an interrupted turn leaves only the words already spoken in the assistant's context.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncGenerator, Awaitable, TypeVar

from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import CancelFrame, EndFrame, ErrorFrame, Frame, StartFrame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given

from qwen3_tts_trt.runtime.errors import PromptError, Qwen3TTSError
from qwen3_tts_trt.runtime.requests import SAMPLING_FIELDS, VoiceResolver, sampling_params
from qwen3_tts_trt.runtime.voice import Voice, VoiceLibrary
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.stream_pool import PooledStream, StreamPool
from qwen3_tts_trt.runtime.text_stream import TextInput
from qwen3_tts_trt.runtime.text_timing import WordTimeline

# Pipecat's languages that Qwen3-TTS speaks, by the names its prompts use ("auto" stays "auto").
QWEN_LANGUAGES: dict[Language, str] = {
    Language.ZH: "chinese", Language.EN: "english", Language.JA: "japanese", Language.KO: "korean",
    Language.DE: "german", Language.FR: "french", Language.RU: "russian", Language.PT: "portuguese",
    Language.ES: "spanish", Language.IT: "italian",
}
_LANGUAGE_OF_NAME = {name: lang for lang, name in QWEN_LANGUAGES.items()}
T = TypeVar("T")


def _given():
    return field(default_factory=lambda: NOT_GIVEN)


@dataclass
class Qwen3TTSSettings(TTSSettings):
    """What a `TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(...))` can change between utterances.

    - `voice`: a CustomVoice speaker name (e.g. "ryan"); or, for Base checkpoints, a voice file
      `NAME.voice` made by `qwen3-tts-trt voice create` (read once, checked against the model).
    - `language`: a Pipecat `Language` (Language.ZH) or a Qwen name ("chinese"), or "auto". It also
      sets the sentence splitter's language, so Chinese, Japanese and Korean split right.
    - `instruct`: the voice description (VoiceDesign; 1.7B CustomVoice style instructions).
    - `clone`: a voice-clone prompt for Base checkpoints: a `.voice` file path, or a
      `runtime.voice.Voice` carrying `xvector` (and `ref_codes` + `ref_text` for ICL), e.g. from
      `Voice.from_audio(...)`. It speaks its own language unless `language` names another.
    - `temperature`, `top_k`, `top_p`, `repetition_penalty`: codebook-0 sampling; `subtalker_*`:
      codebooks 1-15 (the official names, as every front end: `runtime.requests.SAMPLING_FIELDS`).
      None keeps the checkpoint's generation_config value.
    - `seed`: None for fresh randomness per utterance; an int repeats the same audio.
    - `max_new_tokens`: the official cap on codebook-0 samples per piece of text (frames + 1); None
      keeps the checkpoint's. The runtime's EOS guard also caps runaway generations.
    - `greedy`: argmax decoding (the official `do_sample=False`), from the checkpoint's settings.
    - `chunk_ramp`: frames per chunk, e.g. (1, 2, 4, 8, 10); None keeps the synthesizer's.
    - `word_timestamp_lag_s`: with `word_timestamps=True`, seconds added to every word's time (the
      time its first text id entered the model): the lag until the word is heard, which only a
      real checkpoint can measure. Default 0.
    """

    instruct: str | None | NotGiven = _given()
    clone: Voice | str | Path | None | NotGiven = _given()
    temperature: float | None | NotGiven = _given()
    top_k: int | None | NotGiven = _given()
    top_p: float | None | NotGiven = _given()
    repetition_penalty: float | None | NotGiven = _given()
    subtalker_temperature: float | None | NotGiven = _given()
    subtalker_top_k: int | None | NotGiven = _given()
    subtalker_top_p: float | None | NotGiven = _given()
    seed: int | None | NotGiven = _given()
    max_new_tokens: int | None | NotGiven = _given()
    greedy: bool | NotGiven = _given()
    chunk_ramp: tuple[int, ...] | None | NotGiven = _given()
    word_timestamp_lag_s: float | NotGiven = _given()


class _SharedPool:
    """The `StreamPool` of one `Synthesizer`, shared by every started service that speaks with it.

    One slot: those services speak one after another. None is ever refused: every utterance may
    wait, for as long as the others speak. The pool goes with its last service, since its waits
    belong to the event loop that made them."""

    _of: dict[Synthesizer, _SharedPool] = {}

    def __init__(self, synth: Synthesizer):
        self.pool = StreamPool(synth, capacity=1, max_waiting=sys.maxsize, wait_s=None)
        self.users = 0

    @classmethod
    def join(cls, synth: Synthesizer) -> StreamPool:
        shared = cls._of.get(synth)
        if shared is None:
            shared = cls._of[synth] = _SharedPool(synth)
        shared.users += 1
        return shared.pool

    @classmethod
    def leave(cls, synth: Synthesizer) -> None:
        shared = cls._of[synth]
        shared.users -= 1
        if shared.users == 0:  # a stream still closing frees its slot all the same; nobody waits there
            del cls._of[synth]


@dataclass
class _TextTurn:
    live: TextInput
    task: asyncio.Task | None = None


class Qwen3TTSService(TTSService):
    """Qwen3-TTS in a Pipecat pipeline, streaming from prebuilt engines (TensorRT, ONNX Runtime)
    or PyTorch. See the README's "Use it in Pipecat" section."""

    Settings = Qwen3TTSSettings
    _settings: Settings

    def __init__(self, *, synthesizer: Synthesizer | None = None, checkpoint: str | Path | None = None,
                 build_dir: str | Path | None = None, backend: str = "auto", warmup: bool = True,
                 text_streaming: bool = False, word_timestamps: bool = False,
                 settings: Qwen3TTSSettings | None = None, **kwargs):
        """Either pass an opened `synthesizer` (services may share one), or a `checkpoint` (and its
        `build_dir`, `backend`): the engines are then opened and warmed in `start()`, off the loop.

        `text_streaming=True` speaks each LLM turn while it is still being written: Pipecat passes
        tokens as they come (`TextAggregationMode.TOKEN`) and the turn is one `stream_text`, so
        audio starts after the first words instead of the first sentence. Sentence mode (the
        default) synthesizes sentence by sentence.

        `word_timestamps=True` reports each word's time through Pipecat's word-timestamp API (word
        `TTSTextFrame`s timed to the audio instead of one per sentence after it), so an interruption
        leaves only the words already spoken in the assistant's context. A word's time is when its
        first text token entered the model (a lower bound of when it is heard) plus the
        `word_timestamp_lag_s` setting.

        Other keyword arguments go to Pipecat's `TTSService` (`sample_rate`, `text_aggregation_mode`,
        `stop_frame_timeout_s`, ...). Output follows the pipeline's `audio_out_sample_rate` unless
        `sample_rate` pins it.
        """
        if (synthesizer is None) == (checkpoint is None):
            raise ValueError("Qwen3TTSService needs either synthesizer= (opened) or checkpoint= (opened in start())")
        self._synth = synthesizer
        self._open_args = dict(checkpoint=checkpoint, build_dir=build_dir, backend=backend)
        self._warmup = warmup
        config = synthesizer.config if synthesizer is not None else _load_config(checkpoint)
        self._variant = config.variant
        store = self.Settings(
            model=str(checkpoint) if checkpoint is not None else "qwen3-tts",
            voice=next(iter(config.speakers)) if config.variant == "custom_voice" else None,
            language="auto", instruct=None, clone=None, temperature=None, top_k=None, top_p=None, repetition_penalty=None,
            subtalker_temperature=None, subtalker_top_k=None, subtalker_top_p=None, seed=None, max_new_tokens=None, greedy=False,
            chunk_ramp=None, word_timestamp_lag_s=0.0)
        if settings is not None:
            store.apply_update(settings)
        store.language = _as_pipecat_language(store.language)
        if text_streaming:
            kwargs["text_aggregation_mode"] = TextAggregationMode.TOKEN
        self._text_streaming = text_streaming
        self._text_turns: dict[str, _TextTurn] = {}
        self._voices: VoiceResolver | None = None
        self._word_timestamps = word_timestamps
        self._context_audio_s: dict[str, float] = {}  # audio already made in an audio context (its words' origin)
        if word_timestamps:
            kwargs["push_text_frames"] = False  # the words' TTSTextFrames come from add_word_timestamps
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=store, **kwargs)
        self._pool: StreamPool | None = None
        self._open_error: str | None = None
        self.engine_waits = 0  # utterances that waited for another pipeline on a shared synthesizer
        self.last_metrics = None  # the runtime's UtteranceMetrics of the last utterance
        self.last_interruption: dict | None = None  # how fast the slot was free after the last cancel
        if synthesizer is not None:
            self._validate(self._settings)  # a misnamed speaker is a construction error, not a first-turn one

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path, build_dir: str | Path | None = None, *,
                        backend: str = "auto", **kwargs) -> "Qwen3TTSService":
        """The service over a checkpoint and its `build.sh` output; engines open in `start()`."""
        return cls(checkpoint=checkpoint, build_dir=build_dir, backend=backend, **kwargs)

    @property
    def synthesizer(self) -> Synthesizer | None:
        return self._synth

    def can_generate_metrics(self) -> bool:
        return True

    def language_to_service_language(self, language: Language) -> str | None:
        name = QWEN_LANGUAGES.get(language)
        if name is None and isinstance(language, Language):  # a regional variant: its base language
            name = QWEN_LANGUAGES.get(_base_language(language))
        return name

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self, frame: StartFrame):
        await super().start(frame)
        try:
            if self._synth is None:  # a synthesizer passed in is the caller's to warm (it may be shared)
                self._synth = await asyncio.to_thread(self._open)
            self._pool = _SharedPool.join(self._synth)
            await asyncio.to_thread(self._validate, self._settings)
        except Exception as exc:  # noqa: BLE001  (any failure to load is reported, never raised into Pipecat)
            self._open_error = _describe(exc, opening=True)
            await self.push_error(self._open_error, exception=exc, force_treat_as_permanent=True)

    def _open(self) -> Synthesizer:
        t0 = time.perf_counter()
        synth = Synthesizer.open(**self._open_args)
        if self._warmup:
            synth.warmup()
        logger.info(f"{self}: {synth.backend_name} engines ready in {time.perf_counter() - t0:.1f} s")
        return synth

    async def stop(self, frame: EndFrame):
        await super().stop(frame)
        self._leave_pool()

    async def cancel(self, frame: CancelFrame):
        for turn in list(self._text_turns.values()):  # text still arriving will never end: stop its streams
            turn.live.cancel()
            if turn.task is not None:
                await self.cancel_task(turn.task)
        await super().cancel(frame)
        self._leave_pool()

    def _leave_pool(self) -> None:
        if self._pool is not None:
            _SharedPool.leave(self._synth)
            self._pool = None

    # -- settings ---------------------------------------------------------------------------------
    async def _update_settings(self, delta: Qwen3TTSSettings) -> dict[str, Any]:
        if is_given(delta.language):
            delta.language = _as_pipecat_language(delta.language)  # also what the sentence splitter reads
        before = self._settings.copy()
        changed = await super()._update_settings(delta)
        if not changed or self._synth is None:
            return changed
        try:
            await asyncio.to_thread(self._validate, self._settings)
        except Qwen3TTSError as exc:
            self._settings = before  # a bad update is refused whole; the last good voice keeps speaking
            await self.push_error(f"{self}: settings update refused: {exc}")
            return {}
        if "model" in changed:
            self._warn_unhandled_updated_settings({"model": changed["model"]})
        return changed

    def _voice(self, s: Qwen3TTSSettings) -> Voice:
        """The runtime's voice rules (runtime/requests.py): a `.voice` file in `voice` or `clone` is
        read once and checked against the model, a clone speaks its own language unless the settings
        name one, and an instruct the checkpoint would ignore is refused."""
        if self._voices is None:
            self._voices = VoiceResolver(self._synth.config, VoiceLibrary(self._synth.model_dir))
        language = s.language if isinstance(s.language, str) and s.language else "auto"
        return self._voices.resolve(speaker=s.voice or None, language=language, instruct=s.instruct or None,
                                    clone=s.clone)

    def _validate(self, s: Qwen3TTSSettings) -> None:
        """Unknown speaker or language, a clone on the wrong variant, bad sampling: named here, not
        at the next utterance (host-side checks only: no prompt is built, no engine runs)."""
        voice, params, _ = self._request(s)
        self._synth.check_request(voice, params)
        lag = s.word_timestamp_lag_s
        if isinstance(lag, bool) or not isinstance(lag, (int, float)) or not 0 <= lag < float("inf"):
            raise PromptError(f"word_timestamp_lag_s must be a number of seconds, 0 or more; got {lag!r}")

    def _request(self, s: Qwen3TTSSettings):
        params = sampling_params(self._synth.config.sampling, greedy=s.greedy, **{k: getattr(s, k) for k in SAMPLING_FIELDS})
        ramp = None if s.chunk_ramp is None else self._synth.check_chunk_ramp(s.chunk_ramp)
        return self._voice(s), params, ramp

    # -- speech -----------------------------------------------------------------------------------
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        if self._synth is None or self._pool is None:
            yield ErrorFrame(error=self._open_error or f"{self}: the engines are not open (was the pipeline started?)")
            return
        if self._text_streaming:
            async for frame in self._take_tokens(text, context_id):
                yield frame
            return
        try:
            voice, params, ramp = self._request(self._settings)
        except Qwen3TTSError as exc:
            yield ErrorFrame(error=f"{self}: {exc}")
            return
        await self.start_tts_usage_metrics(text)
        async for frame in self._speak(text, voice, params, ramp, context_id):
            yield frame

    async def _speak(self, text: str | TextInput, voice: Voice, params: SamplingParams, ramp: tuple[int, ...] | None,
                     context_id: str) -> AsyncGenerator[Frame, None]:
        """Frames of one utterance: it takes the synthesizer's slot, iterates the pool's stream of
        `text` (whole, or a `TextInput` still being written) and resamples to the pipeline's rate.
        A request the runtime refuses becomes an ErrorFrame; an engine failure a permanent error
        (fail over, don't retry). However it ends, the stream is closed before this returns."""
        resampler = create_stream_resampler(quality="HQ", clear_after_secs=None) \
            if self.sample_rate != self._synth.sample_rate else None
        stream = None
        words = _WordTimes(self, text, context_id) if self._word_timestamps else None
        try:
            stream = await self._open_stream(text, voice, params, ramp, context_id)
            # request errors surface at the first chunk
            while (chunk := await self._keeping_alive(context_id, anext(stream, None))) is not None:
                audio = chunk.pcm16_bytes()
                if resampler is not None:
                    audio = await resampler.resample(audio, self._synth.sample_rate, self.sample_rate)
                if audio:
                    yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
                if words is not None:  # queued after the chunk's audio, in the same audio context
                    await words.chunk_done(chunk)
            if resampler is not None and (tail := await resampler.flush()):
                yield TTSAudioRawFrame(tail, self.sample_rate, 1, context_id=context_id)
            if words is not None:
                await words.text_done()
            self.last_metrics = stream.metrics
        except PromptError as exc:  # this request cannot be spoken; the next one can
            yield ErrorFrame(error=f"{self}: {exc}")
        except Exception as exc:  # noqa: BLE001  (an engine failure: fail over rather than retry)
            await self.push_error(_describe(exc, opening=False), exception=exc, force_treat_as_permanent=True)
        finally:
            if stream is not None:  # interrupted, the engine stops at its next frame; the slot is free after it
                await stream.aclose()

    async def _open_stream(self, text: str | TextInput, voice: Voice, params: SamplingParams,
                           ramp: tuple[int, ...] | None, context_id: str) -> PooledStream:
        """The utterance's stream, once the slot is free (another pipeline may be speaking)."""
        if self._pool.live + self._pool.waiting >= self._pool.capacity:  # open() will wait
            self._log_wait()
        stream = await self._keeping_alive(context_id, self._pool.open(text, voice, params, chunk_ramp=ramp))
        # Recorded where the slot comes back, whoever closes the stream: an interrupted anext()
        # closes it itself, and a second cancel stops a caller's wait but not the release.
        stream.on_release.append(self._record_release)
        return stream

    async def _keeping_alive(self, context_id: str, work: Awaitable[T]) -> T:
        """Await `work` while telling Pipecat that the turn's audio context is still in use.

        Pipecat ends an audio context that gets no audio for `stop_frame_timeout_s` (3 s): it pushes
        TTSStoppedFrame and drops what comes later. A wait for the shared slot, or a long chunk from a
        big model on a CPU, is not the end of the turn. `work` runs in this task, so an interruption
        cancels it directly (a stream being opened never leaves its slot behind)."""
        beating = asyncio.ensure_future(self._keep_audio_context(context_id))
        try:
            return await work
        finally:
            beating.cancel()

    async def _keep_audio_context(self, context_id: str) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._stop_frame_timeout_s / 3))
            self._refresh_audio_context(context_id)

    # -- speech while the LLM is still writing (text_streaming=True) -----------------------------
    async def _take_tokens(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Pipecat hands over each LLM token as it comes: the first of a turn starts one stream of
        the turn's `TextInput` (spoken as `Synthesizer.stream_text` speaks it), in a task of its own
        that feeds the turn's audio context; every token is pushed into it; `flush_audio` at the
        turn's end closes its text."""
        turn = self._text_turns.get(context_id)
        if turn is None:
            try:
                voice, params, ramp = self._request(self._settings)
            except Qwen3TTSError as exc:
                yield ErrorFrame(error=f"{self}: {exc}")
                return
            live = self._synth.text_input()
            turn = self._text_turns[context_id] = _TextTurn(live)
            turn.task = self.create_task(self._speak_into_context(live, voice, params, ramp, context_id),
                                         f"qwen3-tts-turn-{context_id[:8]}")
        turn.live.push(text)
        yield None  # the audio reaches the context from the turn's task

    async def _speak_into_context(self, live: TextInput, voice: Voice, params: SamplingParams,
                                  ramp: tuple[int, ...] | None, context_id: str) -> None:
        try:
            async for frame in self._speak(live, voice, params, ramp, context_id):
                if isinstance(frame, ErrorFrame):
                    await self.push_error(frame.error)
                else:
                    await self.append_to_audio_context(context_id, frame)
        finally:
            self._text_turns.pop(context_id, None)
            if self.audio_context_available(context_id):
                await self.remove_audio_context(context_id)

    async def flush_audio(self, context_id: str | None = None):
        """The turn's text is complete: its stream speaks the rest and ends."""
        turn = self._text_turns.get(context_id or self.get_active_audio_context_id() or "")
        if turn is not None:
            turn.live.close()

    async def on_audio_context_completed(self, context_id: str):
        self._context_audio_s.pop(context_id, None)  # played out: Pipecat restarts its word clock

    async def on_audio_context_interrupted(self, context_id: str):
        self._context_audio_s.pop(context_id, None)
        turn = self._text_turns.pop(context_id, None)
        if turn is not None:  # stop taking text, and stop the stream at its next frame
            turn.live.cancel()
            if turn.task is not None:
                await self.cancel_task(turn.task)

    def _log_wait(self) -> None:
        self.engine_waits += 1
        logger.info(f"{self}: the shared synthesizer is speaking for another pipeline; this utterance waits "
                    "for its slot (one stream per synthesizer at a time)")

    def _record_release(self, stream: PooledStream) -> None:
        if stream.stopped_at is not None and stream.metrics is not None:  # cut short: an interruption
            self.last_interruption = dict(release_ms=1000 * (time.perf_counter() - stream.stopped_at),
                                          frames_after_cancel=stream.metrics.frames_after_cancel)


class _WordTimes:
    """One utterance's words for Pipecat's `add_word_timestamps`, chunk by chunk.

    A word's time is the frame with which its first text token entered the talker (the chunk's
    `text_fed`) times 80 ms, plus `word_timestamp_lag_s`, counted from the first audio of the audio
    context: Pipecat's word clock starts there (1.14 calls `start_word_timestamps()` itself at a
    context's first audio), so the audio earlier utterances made in the same context (the sentences
    before this one in an LLM turn) comes first."""

    def __init__(self, service: Qwen3TTSService, text: str | TextInput, context_id: str):
        self.service, self.text, self.context_id = service, text, context_id
        codec = service.synthesizer.config.codec
        self.frame_s = codec.samples_per_frame / codec.sample_rate
        self.lag_s = service._settings.word_timestamp_lag_s
        self.start_s = service._context_audio_s.get(context_id, 0.0)  # the context's audio before this utterance
        self.made_s = 0.0
        self.timeline = WordTimeline(text if isinstance(text, str) else "")

    async def chunk_done(self, chunk) -> None:
        self.made_s += chunk.seconds
        self.service._context_audio_s[self.context_id] = self.start_s + self.made_s
        self.timeline.feed(chunk.text_fed)
        await self._add(final=isinstance(self.text, str))  # whole text: every word's end is known

    async def text_done(self) -> None:
        await self._add(final=True)

    async def _add(self, final: bool) -> None:
        if not isinstance(self.text, str):
            self.timeline.text = self.text.text  # the turn's text so far (it only grows)
        words = self.timeline.take(final=final)
        if words:
            await self.service.add_word_timestamps(
                [(word, self.start_s + frame * self.frame_s + self.lag_s) for word, frame in words], self.context_id)


def _load_config(checkpoint):
    from qwen3_tts_trt.runtime.checkpoint import resolve_checkpoint
    from qwen3_tts_trt.runtime.config import load_model_config

    return load_model_config(resolve_checkpoint(checkpoint))


def _as_pipecat_language(language):
    """Qwen names become Pipecat languages, so the sentence splitter and the prompt agree."""
    if isinstance(language, str) and not isinstance(language, Language):
        return _LANGUAGE_OF_NAME.get(language.strip().lower(), language)
    return language


def _base_language(language: Language) -> Language | None:
    try:
        return Language(language.value.split("-")[0])
    except ValueError:
        return None


def _describe(exc: Exception, *, opening: bool) -> str:
    what = "could not open its engines" if opening else "engine failed"
    hint = "" if isinstance(exc, Qwen3TTSError) else \
        "; check the build folder (re-run ./build.sh for this checkpoint) or choose another backend"
    return f"Qwen3TTSService {what}: {exc}{hint}"
