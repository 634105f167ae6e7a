"""Qwen3TTSService in real Pipecat pipelines (pipecat.tests.utils.run_test), tiny checkpoint, ONNX Runtime.

Nothing here is mocked: the pipelines are Pipecat's own, the engines are the tiny build's ONNX
graphs, and every byte of audio is compared with what the `Synthesizer` makes for the same request.
"""

from __future__ import annotations

import asyncio
import shutil
import time

import numpy as np
import pytest
import torch

pytest.importorskip("pipecat")

from pipecat.frames.frames import (  # noqa: E402
    AggregatedTextFrame, ErrorFrame, InterruptionFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame,
    MetricsFrame, TextFrame, TTSAudioRawFrame, TTSSpeakFrame, TTSStartedFrame, TTSStoppedFrame, TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import ProcessingMetricsData, TTFBMetricsData, TTSUsageMetricsData  # noqa: E402
from pipecat.frames.frames import EndFrame  # noqa: E402
from pipecat.observers.base_observer import BaseObserver, FramePushed  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.service_switcher import ServiceSwitcher, ServiceSwitcherStrategyFailover  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402
from pipecat.services.tts_service import TTSService  # noqa: E402
from pipecat.tests.utils import run_test  # noqa: E402
from pipecat.transcriptions.language import Language  # noqa: E402

from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings  # noqa: E402
from qwen3_tts_trt.runtime.voice import Voice  # noqa: E402
from qwen3_tts_trt.runtime.requests import sampling_params  # noqa: E402
from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer  # noqa: E402

FRAMES = 40  # frames per piece of text: random weights rarely say EOS, so bound every utterance
GREEDY = Qwen3TTSSettings(voice="ryan", language=Language.EN, greedy=True, max_new_tokens=FRAMES + 1)
HELLO = "Hello there, how are you doing today?"


@pytest.fixture(scope="module")
def synth(onnx_synth):
    """The module's shared synthesizer (conftest's warmed-up ONNX Runtime one)."""
    return onnx_synth


@pytest.fixture(autouse=True)
def stream_slot_is_given_back(request):
    """Every test must leave the shared synthesizer's slot free: a slot left taken would make the
    next utterance wait forever, so it fails here, in the test that leaked it. Slots come back on
    the test's event loop, and the test is over: there is nothing left to wait for."""
    yield
    if "synth" not in request.fixturenames:
        return
    from qwen3_tts_trt.pipecat_service.tts import _SharedPool

    shared = _SharedPool._of.get(request.getfixturevalue("synth"))
    if shared is not None and (shared.pool.live or shared.pool.waiting):
        pytest.fail(f"the test left {shared.pool.live} stream slot(s) of the shared synthesizer taken and "
                    f"{shared.pool.waiting} utterance(s) waiting (an utterance was never closed)")


def service(synth, text_streaming=False, **settings) -> Qwen3TTSService:
    delta = Qwen3TTSSettings(**{**GREEDY.given_fields(), **settings})
    return Qwen3TTSService(synthesizer=synth, settings=delta, text_streaming=text_streaming)


def reference_pcm(synth, text, speaker="ryan", max_new_tokens=FRAMES + 1, **params) -> bytes:
    """What the Synthesizer alone makes for one request, as PCM16 bytes."""
    params["max_new_tokens"] = max_new_tokens
    p = synth.greedy_params(**params) if not params.get("seed") else synth.default_params(**params)
    voice = Voice(speaker=speaker, language="english")
    return b"".join(c.pcm16_bytes() for c in synth.stream(text, voice, p))


def audio_of(frames, context_id=None) -> bytes:
    return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame)
                    and (context_id is None or f.context_id == context_id))


def kinds(frames) -> list[type]:
    return [type(f) for f in frames if not isinstance(f, (TTSAudioRawFrame, MetricsFrame))]


class ToneTTS(TTSService):
    """A minimal in-process TTS written the way Pipecat's own local services are (Kokoro, Piper,
    PocketTTS: push_start_frame, push_stop_frames, audio yielded inline). Its frame order is the
    yardstick for ours."""

    def __init__(self, **kwargs):
        super().__init__(push_start_frame=True, push_stop_frames=True, **kwargs)

    async def run_tts(self, text, context_id):
        t = np.arange(1920) / 24000
        pcm = (0.2 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16).tobytes()
        for _ in range(3):
            await asyncio.sleep(0)
            yield TTSAudioRawFrame(pcm, self.sample_rate, 1, context_id=context_id)


async def test_speak_frame_order_and_audio_equal_the_synthesizer(synth):
    down, up = await run_test(service(synth), frames_to_send=[TTSSpeakFrame(HELLO)])
    tone_down, _ = await run_test(ToneTTS(), frames_to_send=[TTSSpeakFrame(HELLO)])
    assert kinds(down) == kinds(tone_down)
    assert kinds(down)[:2] == [AggregatedTextFrame, TTSStartedFrame] and kinds(down)[-1] is TTSStoppedFrame
    started = next(f for f in down if isinstance(f, TTSStartedFrame))
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    first, text_at = down.index(audio[0]), next(i for i, f in enumerate(down) if isinstance(f, TTSTextFrame))
    assert down.index(started) < first and down.index(audio[-1]) < text_at
    assert all(f.context_id == started.context_id and f.sample_rate == 24000 and f.num_channels == 1 for f in audio)
    assert len(audio) >= 5  # streamed chunk by chunk (1, 2, 4, 8, 10 frames...), not one block
    assert audio[0].num_frames == 1920  # the first chunk is one 80 ms frame
    assert audio_of(down) == reference_pcm(synth, HELLO)
    assert not [f for f in up if isinstance(f, ErrorFrame)]


@pytest.mark.parametrize("options", [StreamOptions(), StreamOptions(chunk_ramp=(3, 5), base_frames=20)],
                         ids=["default", "own_ramp_and_cap"])
async def test_one_synthesizer_gives_the_same_pcm16_to_pipecat_and_to_the_servers_pool(
        tiny_build, tiny_custom_voice, options):
    """Chunks carry float32 samples whatever the synthesizer's options, and every front end turns
    them into PCM16 the same way: the bytes Pipecat plays equal the bytes the server sends."""
    from qwen3_tts_trt.runtime.stream_pool import StreamPool

    synth = Synthesizer.open(tiny_custom_voice, tiny_build[0], "onnx", options=options)
    down, up = await run_test(service(synth), frames_to_send=[TTSSpeakFrame(HELLO)])
    assert not [f for f in up if isinstance(f, ErrorFrame)]
    pool = StreamPool(synth, capacity=1)
    stream = await pool.open(HELLO, Voice(speaker="ryan", language="english"),
                             sampling_params(pool.config.sampling, greedy=True, max_new_tokens=FRAMES + 1))
    served = b"".join([chunk.pcm16_bytes() async for chunk in stream])
    assert len(served) > 2 * 1920 and audio_of(down) == served == reference_pcm(synth, HELLO)


async def test_chunk_ramp_setting_reaches_the_stream(synth):
    down, _ = await run_test(service(synth, chunk_ramp=(3, 5)), frames_to_send=[TTSSpeakFrame(HELLO)])
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert [f.num_frames for f in audio[:3]] == [3 * 1920, 5 * 1920, 5 * 1920]
    expected = b"".join(c.pcm16_bytes() for c in synth.stream(
        HELLO, Voice(speaker="ryan", language="english"), synth.greedy_params(max_new_tokens=FRAMES + 1),
        chunk_ramp=(3, 5)))
    assert audio_of(down) == expected


async def test_llm_turn_of_two_sentences_is_one_context(synth):
    frames = [LLMFullResponseStartFrame(), TextFrame("Hello there. "), TextFrame("How are you today?"),
              LLMFullResponseEndFrame()]
    down, _ = await run_test(service(synth), frames_to_send=frames)
    tone_down, _ = await run_test(ToneTTS(), frames_to_send=frames)
    assert kinds(down) == kinds(tone_down)
    assert kinds(down).count(TTSStartedFrame) == 1 and kinds(down).count(TTSStoppedFrame) == 1
    ids = {f.context_id for f in down if isinstance(f, (TTSAudioRawFrame, TTSStartedFrame, TTSStoppedFrame))}
    assert len(ids) == 1
    assert audio_of(down) == reference_pcm(synth, "Hello there.") + reference_pcm(synth, "How are you today?")


async def test_sampled_audio_with_a_seed_equals_the_synthesizer(synth):
    down, _ = await run_test(service(synth, greedy=False, seed=7), frames_to_send=[TTSSpeakFrame(HELLO)])
    assert audio_of(down) == reference_pcm(synth, HELLO, seed=7)


class Recorder(FrameProcessor):
    """The end of a test pipeline: keeps every frame and wakes waiters when one they wait for passes."""

    def __init__(self):
        super().__init__()
        self.frames: list = []
        self.times: list[float] = []  # when each frame arrived
        self._waiters: list = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        self.times.append(time.perf_counter())
        for predicate, event in self._waiters:
            if predicate(frame):
                event.set()
        await self.push_frame(frame, direction)

    async def until(self, predicate, timeout=120.0):
        event = asyncio.Event()
        self._waiters.append((predicate, event))
        if any(predicate(f) for f in self.frames):
            event.set()
        await asyncio.wait_for(event.wait(), timeout)


async def drive(processor, script, params: PipelineParams | None = None):
    """Run `processor` in a real pipeline and let `script(worker, recorder)` queue frames as the
    pipeline's output unfolds (e.g. interrupt as soon as the first audio leaves)."""
    recorder = Recorder()
    worker = PipelineWorker(Pipeline([processor, recorder]), params=params or PipelineParams(),
                            cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def _started(worker, frame):
        started.set()

    async def run_script():
        await asyncio.wait_for(started.wait(), 60)
        await script(worker, recorder)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), run_script())
    return recorder


async def barge_in_then_speak(worker, rec):
    """Interrupt as soon as the first audio leaves, then speak HELLO as a whole, bounded turn."""
    await rec.until(lambda f: isinstance(f, TTSAudioRawFrame))  # speaking now: barge in
    await worker.queue_frame(InterruptionFrame())
    await rec.until(lambda f: isinstance(f, InterruptionFrame))
    await worker.queue_frame(TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(max_new_tokens=FRAMES + 1)))
    await worker.queue_frame(TTSSpeakFrame(HELLO))
    await rec.until(lambda f: isinstance(f, TTSStoppedFrame))


async def test_interruption_stops_within_one_frame_and_the_next_turn_is_whole(synth):
    tts = service(synth, max_new_tokens=2048)  # the first turn would run to its EOS guard (hundreds of frames)

    async def script(worker, rec):
        await worker.queue_frame(TTSSpeakFrame(HELLO))
        await barge_in_then_speak(worker, rec)

    down = (await drive(tts, script)).frames
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    started = [f for f in down if isinstance(f, TTSStartedFrame)]
    assert len(started) == 2
    old, new = started[0].context_id, started[1].context_id
    assert audio_of(down[:cut], old)
    assert not audio_of(down[cut:], old), "audio of the interrupted turn leaked after the interruption"
    assert not [f for f in down if isinstance(f, TTSStoppedFrame) and f.context_id == old]
    assert synth.last_metrics.end_reason != "cancelled"  # the next turn ran to its end
    assert tts.last_interruption is not None, "the interrupted stream was never cancelled"
    assert tts.last_interruption["frames_after_cancel"] <= 1  # free within one frame
    assert audio_of(down[cut:], new) == reference_pcm(synth, HELLO)


def broken_service(tiny_build, tiny_custom_voice, tmp_path) -> Qwen3TTSService:
    """A service whose build folder loses a graph after the app made the service (before start)."""
    out, _ = tiny_build
    broken_dir = tmp_path / "broken-build"
    shutil.copytree(out, broken_dir)
    tts = Qwen3TTSService.from_pretrained(tiny_custom_voice, broken_dir, backend="onnx", settings=GREEDY)
    (broken_dir / "talker_decode.onnx").unlink()
    return tts


async def test_a_broken_build_is_an_error_frame_not_a_crash(tiny_build, tiny_custom_voice, tmp_path):
    broken = broken_service(tiny_build, tiny_custom_voice, tmp_path)
    down, up = await run_test(broken, frames_to_send=[TTSSpeakFrame(HELLO), TTSSpeakFrame(HELLO)], start_timeout=30)
    errors = [f.error for f in up if isinstance(f, ErrorFrame)]
    assert errors and "talker_decode.onnx is missing" in errors[0] and "build.sh" in errors[0]
    assert not broken.is_usable and not audio_of(down)


class ErrorWatcher(BaseObserver):
    """Sees every ErrorFrame pushed anywhere in the pipeline (a switcher absorbs the ones it handles)."""

    def __init__(self):
        super().__init__()
        self.errors: list[str] = []

    async def on_push_frame(self, data: FramePushed):
        if isinstance(data.frame, ErrorFrame) and data.frame.error not in self.errors:
            self.errors.append(data.frame.error)


async def test_a_broken_build_fails_over_to_a_good_service(synth, tiny_build, tiny_custom_voice, tmp_path):
    broken = broken_service(tiny_build, tiny_custom_voice, tmp_path)
    switcher = ServiceSwitcher([broken, service(synth)], strategy_type=ServiceSwitcherStrategyFailover)
    watcher = ErrorWatcher()
    down, _ = await run_test(switcher, frames_to_send=[TTSSpeakFrame(HELLO)], start_timeout=30, observers=[watcher])
    assert watcher.errors and "talker_decode.onnx is missing" in watcher.errors[0]
    assert not broken.is_usable
    assert audio_of(down) == reference_pcm(synth, HELLO)  # the next utterance plays on the good service


async def test_a_bad_request_is_an_error_frame_and_the_next_one_plays(synth):
    tts = service(synth)
    frames = [TTSSpeakFrame("x" * 100_001), TTSSpeakFrame(HELLO)]
    down, up = await run_test(tts, frames_to_send=frames)
    errors = [f.error for f in up if isinstance(f, ErrorFrame)]
    assert any("100,001 characters" in e for e in errors)
    assert audio_of(down) == reference_pcm(synth, HELLO)
    assert tts.is_usable


async def test_bad_settings_updates_are_refused_and_the_voice_keeps_speaking(synth):
    tts = service(synth)
    frames = [TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(voice="nobody")),
              TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(temperature=-1.0, greedy=False)),
              TTSSpeakFrame(HELLO)]
    down, up = await run_test(tts, frames_to_send=frames)
    errors = [f.error for f in up if isinstance(f, ErrorFrame)]
    assert any("unknown speaker 'nobody'" in e and "ryan" in e for e in errors)
    assert any("temperature" in e for e in errors)
    assert tts._settings.voice == "ryan" and tts._settings.greedy is True
    assert audio_of(down) == reference_pcm(synth, HELLO)


async def test_settings_update_changes_the_speaker(synth):
    frames = [TTSSpeakFrame(HELLO), TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(voice="vivian")),
              TTSSpeakFrame(HELLO)]
    down, _ = await run_test(service(synth), frames_to_send=frames)
    first, second = [f.context_id for f in down if isinstance(f, TTSStartedFrame)]
    assert audio_of(down, first) == reference_pcm(synth, HELLO, speaker="ryan")
    assert audio_of(down, second) == reference_pcm(synth, HELLO, speaker="vivian")
    codes = {}
    for speaker in ("ryan", "vivian"):
        chunks = synth.stream(HELLO, Voice(speaker=speaker, language="english"), synth.greedy_params())
        codes[speaker] = np.concatenate([c.codes.numpy() for c in chunks])
    assert not np.array_equal(codes["ryan"], codes["vivian"])


async def test_language_setting_reaches_the_sentence_splitter(synth):
    tts = service(synth, language="chinese")
    assert tts.text_aggregation_language == "zh"
    assert tts._settings.language == "chinese"
    await run_test(tts, frames_to_send=[TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(language=Language.JA))])
    assert tts.text_aggregation_language == "ja" and tts._settings.language == "japanese"


async def test_16khz_pipeline_gets_16khz_audio_without_clicks_at_chunk_edges(synth):
    import soxr

    down, _ = await run_test(service(synth), frames_to_send=[TTSSpeakFrame(HELLO)],
                             pipeline_params=PipelineParams(audio_out_sample_rate=16000))
    audio = [f for f in down if isinstance(f, TTSAudioRawFrame)]
    assert audio and all(f.sample_rate == 16000 for f in audio)
    source = np.frombuffer(reference_pcm(synth, HELLO), np.int16)
    got = np.frombuffer(audio_of(down), np.int16).astype(np.float64)
    assert abs(len(got) - len(source) * 2 / 3) <= 1920 * 2 / 3  # +- one chunk of resampler delay
    # jumps between consecutive samples: at chunk edges no larger than inside chunks
    edges = np.cumsum([len(f.audio) // 2 for f in audio])[:-1]
    jumps = np.abs(np.diff(got))
    assert jumps[edges - 1].max() <= jumps.max()
    assert jumps[edges - 1].max() <= np.delete(jumps, edges - 1).max()
    # and the stream equals resampling the whole utterance at once (one resampler per stream)
    whole = soxr.resample(source.astype(np.float64), 24000, 16000, quality="HQ")
    n = min(len(whole), len(got))
    assert np.abs(got[:n] - whole[:n]).max() <= 0.01 * 32767


async def test_metrics_as_pipecat_services_report_them(synth):
    tts = service(synth)
    down, _ = await run_test(tts, frames_to_send=[TTSSpeakFrame(HELLO)],
                             pipeline_params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))
    data = [d for f in down if isinstance(f, MetricsFrame) for d in f.data]
    ttfb = [d.value for d in data if isinstance(d, TTFBMetricsData) and d.value > 0]
    assert ttfb and [d for d in data if isinstance(d, ProcessingMetricsData) and d.value > 0]
    assert [d for d in data if isinstance(d, TTSUsageMetricsData) and d.value == len(HELLO)]
    assert tts.last_metrics.frames > 0 and tts.last_metrics.ttfc_ms > 0


async def test_two_pipelines_sharing_one_synthesizer_never_interleave(synth):
    # Pipecat ends an audio context that stays silent for stop_frame_timeout_s; the one that waits
    # for the engine (200 frames of the other's turn, longer than 0.2 s) must still be one whole turn.
    def shared(**settings):
        return Qwen3TTSService(synthesizer=synth, settings=Qwen3TTSSettings(**{**GREEDY.given_fields(), **settings}),
                               stop_frame_timeout_s=0.2)

    a, b = shared(max_new_tokens=200), shared(voice="vivian", max_new_tokens=200)
    (down_a, _), (down_b, _) = await asyncio.gather(run_test(a, frames_to_send=[TTSSpeakFrame(HELLO)]),
                                                    run_test(b, frames_to_send=[TTSSpeakFrame(HELLO)]))
    assert audio_of(down_a) == reference_pcm(synth, HELLO, speaker="ryan", max_new_tokens=200)
    assert audio_of(down_b) == reference_pcm(synth, HELLO, speaker="vivian", max_new_tokens=200)
    assert a.engine_waits + b.engine_waits >= 1  # the second waited for the first, and said so
    for down in (down_a, down_b):
        assert kinds(down).count(TTSStartedFrame) == kinds(down).count(TTSStoppedFrame) == 1
        stopped = next(i for i, f in enumerate(down) if isinstance(f, TTSStoppedFrame))
        assert not [f for f in down[stopped:] if isinstance(f, TTSAudioRawFrame)], "audio after the turn's stop"


async def test_two_pipelines_on_sibling_synthesizers_speak_at_once(synth):
    """Each conversation with its own `sibling()`: both speak at the same time, their frames in
    shared engine calls (the step loop), neither waits for the other, and each is whole."""
    twin = synth.sibling()
    try:
        a = Qwen3TTSService(synthesizer=synth, settings=Qwen3TTSSettings(**{**GREEDY.given_fields(), "max_new_tokens": 60}))
        b = Qwen3TTSService(synthesizer=twin, settings=Qwen3TTSSettings(
            **{**GREEDY.given_fields(), "voice": "vivian", "max_new_tokens": 60}))
        stats = synth.steps.stats
        before = stats.decode_calls, stats.decode_rows
        (down_a, _), (down_b, _) = await asyncio.gather(run_test(a, frames_to_send=[TTSSpeakFrame(HELLO)]),
                                                        run_test(b, frames_to_send=[TTSSpeakFrame(HELLO)]))
        assert audio_of(down_a) == reference_pcm(synth, HELLO, speaker="ryan", max_new_tokens=60)
        assert audio_of(down_b) == reference_pcm(synth, HELLO, speaker="vivian", max_new_tokens=60)
        assert a.engine_waits == b.engine_waits == 0
        calls, rows = stats.decode_calls - before[0], stats.decode_rows - before[1]
        assert rows > calls, (rows, calls)  # talker steps ran both streams' rows at once
    finally:
        twin.close()


def test_engines_open_in_start_from_a_checkpoint(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    tts = Qwen3TTSService.from_pretrained(tiny_custom_voice, out, backend="onnx", settings=GREEDY)
    assert tts.synthesizer is None  # nothing loads at construction

    async def go():
        return await run_test(tts, frames_to_send=[TTSSpeakFrame(HELLO)], start_timeout=30)

    down, up = asyncio.run(go())
    assert tts.synthesizer is not None and tts.synthesizer.backend_name == "onnx"
    assert len(audio_of(down)) > 0 and not [f for f in up if isinstance(f, ErrorFrame)]


def test_constructor_errors_are_clear(synth):
    with pytest.raises(ValueError, match="either synthesizer= .* or checkpoint="):
        Qwen3TTSService()


def test_voice_agent_example_builds_its_pipeline(synth):
    """The full agent is not run here (browser, microphone, LLM), but it is imported and its
    pipeline built around a real small-WebRTC transport, so it cannot rot."""
    import importlib.util
    import inspect
    from pathlib import Path

    from pipecat.transports.base_transport import TransportParams
    from pipecat.transports.smallwebrtc.connection import SmallWebRTCConnection
    from pipecat.transports.smallwebrtc.transport import SmallWebRTCTransport

    path = Path(__file__).resolve().parent.parent / "examples" / "pipecat_voice_agent.py"
    spec = importlib.util.spec_from_file_location("pipecat_voice_agent", path)
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    assert inspect.iscoroutinefunction(agent.bot)
    transport = SmallWebRTCTransport(webrtc_connection=SmallWebRTCConnection(),
                                     params=TransportParams(audio_in_enabled=True, audio_out_enabled=True))
    pipeline, context = agent.build_pipeline(transport, synth)
    tts = [p for p in pipeline.processors if isinstance(p, Qwen3TTSService)]
    assert len(tts) == 1 and tts[0].synthesizer is synth
    assert context.get_messages()[0]["role"] == "system"


def test_offline_example_writes_a_wav_of_whole_frames(tiny_build, tiny_custom_voice, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import soundfile as sf

    out, _ = tiny_build
    wav, report = tmp_path / "pipecat.wav", tmp_path / "pipecat.json"
    script = Path(__file__).resolve().parent.parent / "examples" / "pipecat_offline.py"
    run = subprocess.run([sys.executable, str(script), "-m", str(tiny_custom_voice), "--build-dir", str(out),
                          "--backend", "onnx", "--max-new-tokens", "41", "-o", str(wav), "--json", str(report)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "TTFB" in run.stdout and "xRT" in run.stdout
    info = sf.info(str(wav))
    assert info.samplerate == 24000 and info.channels == 1 and info.subtype == "PCM_16"
    assert info.frames > 0 and info.frames % 1920 == 0  # whole 80 ms frames
    import json

    turns = json.loads(report.read_text())["turns"]
    assert len(turns) == 2 and all(t["ttfb_ms"] > 0 and t["synth_ttfc_ms"] > 0 for t in turns)


# -- text streaming: speech starts while the LLM is still writing ---------------------------------
def same_codes(a: bytes, b: bytes) -> bool:
    """PCM16 of the same codes cut into other chunks: a stalled stream flushes at other frames,
    and the streaming codec equals any other split to ~1e-5, which can move PCM16 rounding by one
    step. Different codes would differ by thousands of steps."""
    x, y = np.frombuffer(a, np.int16).astype(int), np.frombuffer(b, np.int16).astype(int)
    return len(x) == len(y) and int(np.abs(x - y).max(initial=0)) <= 2


TOKENS = ["Hello", " there", ",", " how", " are", " you", " doing", " today", "?"]


async def llm_turn(worker, rec, tokens, gap_s):
    """What an LLM service pushes: a response start, tokens as they are generated, the end."""
    await worker.queue_frame(LLMFullResponseStartFrame())
    for token in tokens:
        await worker.queue_frame(LLMTextFrame(token))
        await asyncio.sleep(gap_s)
    rec.last_token_at = time.perf_counter() - gap_s
    await worker.queue_frame(LLMFullResponseEndFrame())


async def test_text_streaming_speaks_before_the_reply_is_written(synth):
    tts = service(synth, text_streaming=True)

    async def script(worker, rec):
        await llm_turn(worker, rec, TOKENS, gap_s=0.15)
        await rec.until(lambda f: isinstance(f, TTSStoppedFrame))

    rec = await drive(tts, script)
    down = rec.frames
    first_audio = next(t for f, t in zip(down, rec.times) if isinstance(f, TTSAudioRawFrame))
    assert first_audio < rec.last_token_at  # audio left before the last token arrived
    started = [f for f in down if isinstance(f, TTSStartedFrame)]
    assert len(started) == 1 and kinds(down).count(TTSStoppedFrame) == 1
    ids = {f.context_id for f in down if isinstance(f, (TTSAudioRawFrame, TTSStoppedFrame))}
    assert ids == {started[0].context_id}
    assert same_codes(audio_of(down), reference_pcm(synth, "".join(TOKENS)))  # = the sentence mode's audio
    assert tts.last_metrics.text_stall_ms > 0


async def test_text_streaming_sampled_with_a_seed_equals_sentence_mode(synth):
    async def script(worker, rec):
        await llm_turn(worker, rec, TOKENS, gap_s=0.0)
        await rec.until(lambda f: isinstance(f, TTSStoppedFrame))

    streamed = (await drive(service(synth, text_streaming=True, greedy=False, seed=5), script)).frames
    sentence = (await drive(service(synth, greedy=False, seed=5), script)).frames
    assert audio_of(streamed) and same_codes(audio_of(streamed), audio_of(sentence))


async def test_text_streaming_interruption_stops_text_and_audio(synth):
    tts = service(synth, text_streaming=True, max_new_tokens=2048)

    async def script(worker, rec):
        await worker.queue_frame(LLMFullResponseStartFrame())
        for token in TOKENS[:4]:
            await worker.queue_frame(LLMTextFrame(token))
        await barge_in_then_speak(worker, rec)

    down = (await drive(tts, script)).frames
    cut = next(i for i, f in enumerate(down) if isinstance(f, InterruptionFrame))
    old = next(f for f in down if isinstance(f, TTSStartedFrame)).context_id
    assert audio_of(down[:cut], old) and not audio_of(down[cut:], old)
    assert tts.last_interruption is not None and tts.last_interruption["frames_after_cancel"] <= 1
    new = [f for f in down[cut:] if isinstance(f, TTSStartedFrame)][-1].context_id
    assert audio_of(down[cut:], new) == reference_pcm(synth, HELLO)


def test_a_misnamed_speaker_is_a_construction_error(synth):
    from qwen3_tts_trt.runtime.errors import PromptError

    with pytest.raises(PromptError, match="unknown speaker 'nobody'.*ryan"):
        service(synth, voice="nobody")


async def test_a_voice_file_speaks_and_one_for_another_model_is_refused(tiny_base, tiny_custom_voice, tmp_path):
    """Base checkpoints speak cloned voices: a .voice file in the `voice` setting is read once and
    checked against the model; one made for another model is refused by name."""
    from qwen3_tts_trt.runtime.voice import origin_of

    synth = Synthesizer.open(tiny_base, None, "torch")
    g = torch.Generator().manual_seed(1)
    made = Voice(xvector=torch.randn(synth.config.talker.hidden_size, generator=g), language="english",
                 made_for=origin_of(synth.config, "tiny-base"))
    path = made.save(tmp_path / "me.voice")
    tts = Qwen3TTSService(synthesizer=synth, settings=Qwen3TTSSettings(voice=str(path), greedy=True,
                                                                       max_new_tokens=FRAMES + 1))
    down, up = await run_test(tts, frames_to_send=[TTSSpeakFrame(HELLO)])
    loaded = Voice.load(path, model=tiny_base)
    expected = b"".join(c.pcm16_bytes()
                        for c in synth.stream(HELLO, loaded, synth.greedy_params(max_new_tokens=FRAMES + 1)))
    assert audio_of(down) == expected and not [f for f in up if isinstance(f, ErrorFrame)]

    other = Synthesizer.open(tiny_custom_voice, None, "torch")
    foreign = Voice(xvector=made.xvector, made_for=origin_of(other.config, "tiny-custom-voice"))
    bad = foreign.save(tmp_path / "foreign.voice")
    _, up = await run_test(tts, frames_to_send=[TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(voice=str(bad)))])
    assert any("refused" in f.error and "foreign.voice" in f.error for f in up if isinstance(f, ErrorFrame))
