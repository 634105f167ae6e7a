"""`Qwen3TTSService`: the project's streaming `Synthesizer` as a Pipecat TTS service.

An adapter, nothing more: each piece of text Pipecat hands to `run_tts` becomes one
`Synthesizer.stream`, and each chunk it makes (the first after one 80 ms frame) leaves at once
as a PCM16 `TTSAudioRawFrame`, resampled to the pipeline's rate when that is not 24 kHz.

Threading. Every call into the engines runs on one worker thread per `Synthesizer`, never on
the event loop, so VAD and transports keep their timing. An utterance holds its synthesizer's
turn from its first step until its stream is closed. Services that share one `Synthesizer`
(several pipelines in one process) therefore speak one after another, never interleaved; a
service that has to wait says so in the log. The lock goes when the runtime serves several
streams per engine.

Interruption. Pipecat cancels `run_tts` at its current `await`. The service then sets the
synthesizer's stop flag: the frame in progress is the last one made, and the stream is closed
on the worker thread right after it, so the next utterance starts within one frame, clean.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, AsyncGenerator, Awaitable, Callable, TypeVar

from loguru import logger
from pipecat.audio.utils import create_stream_resampler
from pipecat.frames.frames import CancelFrame, EndFrame, ErrorFrame, Frame, StartFrame, TTSAudioRawFrame
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given

from qwen3_tts_trt.runtime.errors import PromptError, Qwen3TTSError
from qwen3_tts_trt.runtime.voice import Voice
from qwen3_tts_trt.runtime.stream import Synthesizer

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
    - `temperature`, `top_k`, `top_p`: codebook-0 sampling; `subtalker_*`: codebooks 1-15 (the
      official names). None keeps the checkpoint's generation_config value.
    - `seed`: None for fresh randomness per utterance; an int repeats the same audio.
    - `max_new_tokens`: the official cap on codebook-0 samples per piece of text (frames + 1); None
      keeps the checkpoint's. The runtime's EOS guard also caps runaway generations.
    - `greedy`: argmax decoding (the official `do_sample=False`), from the checkpoint's settings.
    - `chunk_ramp`: frames per chunk, e.g. (1, 2, 4, 8, 10); None keeps the synthesizer's.
    """

    instruct: str | None | NotGiven = _given()
    clone: Voice | str | Path | None | NotGiven = _given()
    temperature: float | None | NotGiven = _given()
    top_k: int | None | NotGiven = _given()
    top_p: float | None | NotGiven = _given()
    subtalker_temperature: float | None | NotGiven = _given()
    subtalker_top_k: int | None | NotGiven = _given()
    subtalker_top_p: float | None | NotGiven = _given()
    seed: int | None | NotGiven = _given()
    max_new_tokens: int | None | NotGiven = _given()
    greedy: bool | NotGiven = _given()
    chunk_ramp: tuple[int, ...] | None | NotGiven = _given()


VOICE_SUFFIX = ".voice"
_SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "subtalker_temperature", "subtalker_top_k", "subtalker_top_p",
                    "seed", "max_new_tokens")


class _Engine:
    """One worker thread and one turn per `Synthesizer`, shared by every service that uses it."""

    _of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    _registry_lock = threading.Lock()

    def __init__(self):
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qwen3-tts-engine")
        self.turn = threading.Lock()
        self.users = 0

    @classmethod
    def join(cls, synth: Synthesizer) -> "_Engine":
        with cls._registry_lock:
            engine = cls._of.get(synth)
            if engine is None:
                engine = cls._of[synth] = _Engine()
            engine.users += 1
            return engine

    def leave(self, synth: Synthesizer) -> None:
        with self._registry_lock:
            self.users -= 1
            if self.users == 0:
                self._of.pop(synth, None)
                self.worker.shutdown(wait=False)  # queued closes still run


class _Utterance:
    """One `Synthesizer.stream` driven step by step from the event loop on the engine's worker."""

    def __init__(self, synth: Synthesizer, engine: _Engine):
        self.synth, self.engine = synth, engine
        self.stream = None
        self.holds_turn = False
        self.finished = False

    async def take_turn(self, on_wait: Callable[[], None]) -> None:
        """Cancel-safe: polling never leaves the lock taken by a cancelled waiter."""
        if not self.engine.turn.acquire(blocking=False):
            on_wait()
            while not self.engine.turn.acquire(blocking=False):
                await asyncio.sleep(0.002)
        self.holds_turn = True

    async def on_worker(self, fn: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.engine.worker, fn)

    def next_chunk(self):
        chunk = next(self.stream, None)
        self.finished = chunk is None
        return chunk

    def end(self, on_released: Callable[[float, Any], None]) -> None:
        """Give the turn back without waiting: stop the frame loop at its next frame if it is
        still live, then close the stream and release the turn on the worker, after the step
        that may still be running there."""
        if not self.holds_turn:
            return
        cancelled = not self.finished
        if cancelled:
            self.synth.cancel()
        t0 = time.perf_counter()

        def close_and_release():
            try:
                if self.stream is not None:
                    self.stream.close()
            finally:
                self.engine.turn.release()
                on_released(1000 * (time.perf_counter() - t0), self.synth.last_metrics if cancelled else None)

        try:
            self.engine.worker.submit(close_and_release)
        except RuntimeError:  # the worker is already shut down (pipeline torn down): nothing runs there
            close_and_release()


@dataclass
class _TextTurn:
    live: Any  # runtime.text_stream.TextInput
    task: asyncio.Task | None = None


class Qwen3TTSService(TTSService):
    """Qwen3-TTS in a Pipecat pipeline, streaming from prebuilt engines (TensorRT, ONNX Runtime)
    or PyTorch. See the README's "Use it in Pipecat" section."""

    Settings = Qwen3TTSSettings
    _settings: Settings

    def __init__(self, *, synthesizer: Synthesizer | None = None, checkpoint: str | Path | None = None,
                 build_dir: str | Path | None = None, backend: str = "auto", warmup: bool = True,
                 text_streaming: bool = False, settings: Qwen3TTSSettings | None = None, **kwargs):
        """Either pass an opened `synthesizer` (services may share one), or a `checkpoint` (and its
        `build_dir`, `backend`): the engines are then opened and warmed in `start()`, off the loop.

        `text_streaming=True` speaks each LLM turn while it is still being written: Pipecat passes
        tokens as they come (`TextAggregationMode.TOKEN`) and the turn is one `stream_text`, so
        audio starts after the first words instead of the first sentence. Sentence mode (the
        default) synthesizes sentence by sentence.

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
            language="auto", instruct=None, clone=None, temperature=None, top_k=None, top_p=None,
            subtalker_temperature=None, subtalker_top_k=None, subtalker_top_p=None, seed=None, max_new_tokens=None, greedy=False,
            chunk_ramp=None)
        if settings is not None:
            store.apply_update(settings)
        store.language = _as_pipecat_language(store.language)
        if text_streaming:
            kwargs["text_aggregation_mode"] = TextAggregationMode.TOKEN
        self._text_streaming = text_streaming
        self._text_turns: dict[str, _TextTurn] = {}
        self._voice_files: dict[tuple, Voice] = {}
        super().__init__(push_start_frame=True, push_stop_frames=True, settings=store, **kwargs)
        self._engine: _Engine | None = None
        self._open_error: str | None = None
        self.engine_waits = 0  # utterances that waited for another pipeline on a shared synthesizer
        self.last_metrics = None  # the runtime's UtteranceMetrics of the last utterance
        self.last_interruption: dict | None = None  # how fast the engine was free after the last cancel
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
            self._engine = _Engine.join(self._synth)
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
        self._leave_engine()

    async def cancel(self, frame: CancelFrame):
        for turn in list(self._text_turns.values()):  # text still arriving will never end: stop its streams
            turn.live.cancel()
            if turn.task is not None:
                await self.cancel_task(turn.task)
        await super().cancel(frame)
        self._leave_engine()

    def _leave_engine(self) -> None:
        if self._engine is not None:
            self._engine.leave(self._synth)
            self._engine = None

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
        language = s.language if isinstance(s.language, str) and s.language else "auto"
        clone = s.clone
        if clone is None and isinstance(s.voice, (str, Path)) and str(s.voice).endswith(VOICE_SUFFIX):
            clone = s.voice
        if isinstance(clone, (str, Path)):
            clone = self._voice_file(clone)
        if isinstance(clone, Voice):  # a clone speaks its own language unless the settings name one
            return replace(clone, language=clone.language if language == "auto" else language)
        return Voice(speaker=s.voice or None, language=language, instruct=s.instruct or None)

    def _voice_file(self, path: str | Path) -> Voice:
        """A .voice file (`qwen3-tts-trt voice create`), read once and kept: never re-encoded."""
        p = Path(path).expanduser()
        key = (str(p.resolve()), p.stat().st_mtime_ns if p.is_file() else None)
        if key not in self._voice_files:
            self._voice_files[key] = Voice.load(p, model=self._synth.config)  # another model's voice: refused
        return self._voice_files[key]

    def _validate(self, s: Qwen3TTSSettings) -> None:
        """Unknown speaker or language, a clone on the wrong variant, bad sampling: named here, not
        at the next utterance (host-side checks only: no prompt is built, no engine runs)."""
        voice, params, _ = self._request(s)
        self._synth.check_request(voice, params)

    def _request(self, s: Qwen3TTSSettings):
        overrides = {k: getattr(s, k) for k in _SAMPLING_FIELDS if getattr(s, k) is not None}
        params = self._synth.greedy_params(**overrides) if s.greedy else self._synth.default_params(**overrides)
        ramp = None if s.chunk_ramp is None else self._synth.check_chunk_ramp(s.chunk_ramp)
        return self._voice(s), params, ramp

    # -- speech -----------------------------------------------------------------------------------
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        if self._synth is None or self._engine is None:
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
        async for frame in self._speak(lambda: self._synth.stream(text, voice, params, chunk_ramp=ramp), context_id):
            yield frame

    async def _speak(self, open_stream: Callable[[], Any], context_id: str) -> AsyncGenerator[Frame, None]:
        """Frames of one utterance: it takes the engine's turn, runs `open_stream()` and every step on
        the engine's worker thread, and resamples to the pipeline's rate. A request the runtime
        refuses becomes an ErrorFrame; an engine failure a permanent error (fail over, don't retry)."""
        utterance = _Utterance(self._synth, self._engine)
        resampler = create_stream_resampler(quality="HQ", clear_after_secs=None) \
            if self.sample_rate != self._synth.sample_rate else None
        try:
            await self._keeping_alive(context_id, utterance.take_turn(self._log_wait))

            def start():
                utterance.stream = open_stream()

            await self._keeping_alive(context_id, utterance.on_worker(start))  # request errors surface here
            while (chunk := await self._keeping_alive(context_id, utterance.on_worker(utterance.next_chunk))) is not None:
                audio = chunk.pcm16_bytes()
                if resampler is not None:
                    audio = await resampler.resample(audio, self._synth.sample_rate, self.sample_rate)
                if audio:
                    yield TTSAudioRawFrame(audio, self.sample_rate, 1, context_id=context_id)
            if resampler is not None and (tail := await resampler.flush()):
                yield TTSAudioRawFrame(tail, self.sample_rate, 1, context_id=context_id)
            self.last_metrics = self._synth.last_metrics
        except PromptError as exc:  # this request cannot be spoken; the next one can
            yield ErrorFrame(error=f"{self}: {exc}")
        except Exception as exc:  # noqa: BLE001  (an engine failure: fail over rather than retry)
            await self.push_error(_describe(exc, opening=False), exception=exc, force_treat_as_permanent=True)
        finally:
            utterance.end(self._record_release)

    async def _keeping_alive(self, context_id: str, work: Awaitable[T]) -> T:
        """Await engine work while telling Pipecat that the turn's audio context is still in use.

        Pipecat ends an audio context that gets no audio for `stop_frame_timeout_s` (3 s): it pushes
        TTSStoppedFrame and drops what comes later. A wait for a shared engine, or a long chunk from a
        big model on a CPU, is not the end of the turn."""
        task = asyncio.ensure_future(work)
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=min(1.0, self._stop_frame_timeout_s / 3))
                if done:
                    return task.result()
                self._refresh_audio_context(context_id)
        finally:
            if not task.done():  # we were cancelled (interruption): so is the wait
                task.cancel()

    # -- speech while the LLM is still writing (text_streaming=True) -----------------------------
    async def _take_tokens(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Pipecat hands over each LLM token as it comes: the first of a turn starts one
        `stream_text` for the whole turn, in a task of its own that feeds the turn's audio context;
        every token is pushed into it; `flush_audio` at the turn's end closes its text."""
        turn = self._text_turns.get(context_id)
        if turn is None:
            try:
                voice, params, ramp = self._request(self._settings)
            except Qwen3TTSError as exc:
                yield ErrorFrame(error=f"{self}: {exc}")
                return
            live = self._synth.text_input()
            turn = self._text_turns[context_id] = _TextTurn(live)
            turn.task = self.create_task(self._speak_into_context(
                context_id, lambda: self._synth.stream_text(live, voice, params, chunk_ramp=ramp)),
                f"qwen3-tts-turn-{context_id[:8]}")
        turn.live.push(text)
        yield None  # the audio reaches the context from the turn's task

    async def _speak_into_context(self, context_id: str, open_stream: Callable[[], Any]) -> None:
        try:
            async for frame in self._speak(open_stream, context_id):
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

    async def on_audio_context_interrupted(self, context_id: str):
        turn = self._text_turns.pop(context_id, None)
        if turn is not None:  # stop taking text, and stop the stream at its next frame
            turn.live.cancel()
            if turn.task is not None:
                await self.cancel_task(turn.task)

    def _log_wait(self) -> None:
        self.engine_waits += 1
        logger.info(f"{self}: the shared synthesizer is speaking for another pipeline; this utterance waits "
                    "for it (one stream per engine at a time)")

    def _record_release(self, release_ms: float, cancelled_metrics) -> None:
        if cancelled_metrics is not None:  # runs on the worker thread: plain assignment only
            self.last_interruption = dict(release_ms=release_ms,
                                          frames_after_cancel=cancelled_metrics.frames_after_cancel)


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
