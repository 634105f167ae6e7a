"""Word timestamps (`Qwen3TTSService(word_timestamps=True)`): each word is timed by the frame with
which its first text token entered the talker, and reported through Pipecat's own word-timestamp
API, so that an interruption leaves only the words already spoken in the assistant's context.

The runtime half is checked without a pipeline (which frame each text id enters with, per prompt
layout; the offsets chunks carry; token -> word -> frame). The service half runs in real Pipecat
pipelines on the tiny checkpoint's ONNX build, as tests/test_pipecat_service.py does; the
interruption test plays the audio in real time through Pipecat's own output transport machinery
(`BaseOutputTransport`: its clock queue releases timed word frames as their audio plays) and
reads the assistant turn from Pipecat's context aggregator.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import torch

pytest.importorskip("pipecat")

from pipecat.frames.frames import (  # noqa: E402
    AggregatedTextFrame, EndFrame, ErrorFrame, InterruptionFrame, LLMAssistantPushAggregationFrame, LLMFullResponseEndFrame,
    LLMFullResponseStartFrame, LLMTextFrame, MetricsFrame, TextFrame, TTSAudioRawFrame, TTSSpeakFrame,
    TTSStartedFrame, TTSStoppedFrame, TTSTextFrame, TTSUpdateSettingsFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair  # noqa: E402
from pipecat.processors.frame_processor import FrameProcessor  # noqa: E402
from pipecat.tests.utils import run_test  # noqa: E402
from pipecat.transcriptions.language import Language  # noqa: E402
from pipecat.transports.base_output import BaseOutputTransport  # noqa: E402
from pipecat.transports.base_transport import TransportParams  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings  # noqa: E402
from qwen3_tts_trt.runtime.config import load_model_config  # noqa: E402
from qwen3_tts_trt.runtime.embed import Embedder  # noqa: E402
from qwen3_tts_trt.runtime.prompt import PromptBuilder  # noqa: E402
from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer  # noqa: E402
from qwen3_tts_trt.runtime.text import TextTokenizer  # noqa: E402
from qwen3_tts_trt.runtime.prompt import text_spans  # noqa: E402
from qwen3_tts_trt.runtime.text_timing import TextFed, WordTimeline  # noqa: E402
from qwen3_tts_trt.runtime.voice import Voice  # noqa: E402

FRAMES = 40  # frames per piece of text: random weights rarely say EOS, so bound every utterance
GREEDY = Qwen3TTSSettings(voice="ryan", language=Language.EN, greedy=True, max_new_tokens=FRAMES + 1)
VOICE = Voice(speaker="ryan", language="english")
HELLO = "Hello there, how are you doing today?"
SECOND = "Fine, thanks for asking."
TOKENS = ["Hello", " there", ",", " how", " are", " you", " doing", " today", "?"]
FRAME_S = 0.08


@pytest.fixture(scope="module")
def synth(onnx_synth):
    return onnx_synth


@pytest.fixture(autouse=True)
def stream_slot_is_given_back(request):
    """As in tests/test_pipecat_service.py: every test leaves the shared synthesizer's slot free."""
    yield
    if "synth" not in request.fixturenames:
        return
    from qwen3_tts_trt.pipecat_service.tts import _SharedPool

    shared = _SharedPool._of.get(request.getfixturevalue("synth"))
    if shared is not None and (shared.pool.live or shared.pool.waiting):
        pytest.fail(f"the test left {shared.pool.live} stream slot(s) taken and {shared.pool.waiting} waiting")


class TimedService(Qwen3TTSService):
    """The service as it is, keeping what it hands to Pipecat's `add_word_timestamps`."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.reported: list[tuple[str, float, str]] = []

    async def add_word_timestamps(self, word_times, context_id=None, *args, **kwargs):
        self.reported.extend((word, t, context_id) for word, t in word_times)
        await super().add_word_timestamps(word_times, context_id, *args, **kwargs)


def service(synth, cls=TimedService, **kwargs) -> Qwen3TTSService:
    settings = Qwen3TTSSettings(**{**GREEDY.given_fields(), **kwargs.pop("settings", {})})
    return cls(synthesizer=synth, settings=settings, **kwargs)


def expected_words(synth, text: str) -> list[tuple[str, float]]:
    """(word, seconds) from the Synthesizer alone: each word at the frame its first token entered."""
    timeline = WordTimeline(text)
    for chunk in synth.stream(text, VOICE, synth.greedy_params(max_new_tokens=FRAMES + 1)):
        timeline.feed(chunk.text_fed)
    return [(word, frame * FRAME_S) for word, frame in timeline.take(final=True)]


def seconds_of(synth, text: str) -> float:
    return sum(c.seconds for c in synth.stream(text, VOICE, synth.greedy_params(max_new_tokens=FRAMES + 1)))


def word_frames(frames) -> list[TTSTextFrame]:
    return [f for f in frames if isinstance(f, TTSTextFrame)]


# -- the runtime: which text enters with which frame ----------------------------------------------
@pytest.fixture(scope="module")
def builders(tiny_custom_voice, tiny_base):
    out = {}
    for name, ckpt in (("custom_voice", tiny_custom_voice), ("base", tiny_base)):
        cfg = load_model_config(ckpt)
        out[name] = PromptBuilder(cfg, TextTokenizer(ckpt), Embedder.from_checkpoint(ckpt, cfg))
    return out


REF_TEXT = "A short reference."


def icl_voice(cfg, frames: int, non_streaming=False) -> Voice:
    g = torch.Generator().manual_seed(frames)
    return Voice(xvector=torch.randn(cfg.talker.hidden_size, generator=g), language="english",
                 ref_codes=torch.randint(0, 2048, (frames, cfg.talker.num_code_groups), generator=g),
                 ref_text=REF_TEXT, non_streaming_text=non_streaming)


@pytest.mark.parametrize("layout", ["streaming", "non_streaming", "icl_short_reference", "icl_long_reference",
                                    "icl_non_streaming"])
def test_each_text_id_enters_with_the_frame_the_prompt_layout_gives(builders, layout):
    """`PromptShape.text_frame(i)` against the prompt itself: an id scheduled for frame f >= 1 is
    the text input of decode step f - 1 (the step that makes frame f); the ids scheduled for
    frame 0 are exactly those the prefill holds."""
    prompts = builders["base" if layout.startswith("icl") else "custom_voice"]
    cfg, ref_ids = prompts.cfg, len(prompts._ref_ids(REF_TEXT))
    short = ref_ids + 3  # reference frames: codec_bos and these take the transcript and the text's first 4 ids
    voice = {"streaming": VOICE, "non_streaming": Voice(speaker="ryan", language="english", non_streaming_text=True),
             "icl_short_reference": icl_voice(cfg, short), "icl_long_reference": icl_voice(cfg, 60),
             "icl_non_streaming": icl_voice(cfg, short, non_streaming=True)}[layout]
    prompt = prompts.build(HELLO, voice)
    shape = prompts.shape(voice)
    ids = prompt.text_ids
    frames = [shape.text_frame(i) for i in range(len(ids))]
    assert frames == sorted(frames)
    for i, f in enumerate(frames):
        if f >= 1:
            assert torch.allclose(prompt.text_input(f - 1), prompts.emb.text([ids[i]]), atol=1e-5), (i, f)
    in_prefill = frames.count(0)
    expected = {"streaming": 1, "non_streaming": len(ids), "icl_non_streaming": len(ids), "icl_long_reference": len(ids),
                "icl_short_reference": 4}[layout]
    assert in_prefill == expected
    if layout == "streaming":
        assert frames == list(range(len(ids)))  # one text token per 80 ms frame, the first in the prefill
    if layout == "icl_short_reference":
        assert 0 < in_prefill < len(ids) and frames[in_prefill:] == list(range(1, len(ids) - in_prefill + 1))


def test_text_spans_are_the_prompts_ids_and_cover_the_text(builders):
    tok = builders["custom_voice"].tok
    for text in (HELLO, "  Ünïcödé 日本語です。 emoji 👍🏽 ok\n", "don't stop"):
        ids, spans = text_spans(tok, text)
        assert ids == builders["custom_voice"].build(text, VOICE).text_ids
        assert [a for a, _ in spans] == sorted(a for a, _ in spans) and all(0 <= a < b <= len(text) for a, b in spans)
        covered = {c for a, b in spans for c in range(a, b)}
        assert covered >= {i for i, ch in enumerate(text) if not ch.isspace()}


def test_a_word_takes_the_frame_of_its_first_token():
    text = "Hi there, you"
    fed = [TextFed(0, 0, 2), TextFed(1, 2, 5), TextFed(2, 5, 9), TextFed(3, 9, 13)]  # "Hi" " th" "ere," " you"
    timeline = WordTimeline(text)
    timeline.feed(fed[:1])
    assert timeline.take(final=True) == [("Hi", 0)]  # "there," has not entered yet
    timeline.feed(fed[1:])
    assert timeline.take(final=True) == [("there,", 1), ("you", 3)]
    assert timeline.take(final=True) == []  # each word once

    # text still being written: a word is given out once its end is known too
    growing = WordTimeline("Hi th")
    growing.feed(fed[:2])
    assert growing.take() == [("Hi", 0)]  # "th" may still grow
    growing.text = "Hi there, "
    assert growing.take() == [("there,", 1)]
    growing.text = "Hi there, you"
    assert growing.take() == [] and growing.take(final=True) == []  # " you" never entered: never given out

    # the non-streaming layout: the whole text is in the prefill, so every word enters with frame 0
    whole = WordTimeline(text)
    whole.feed([TextFed(0, a, b) for a, b in ((0, 2), (2, 5), (5, 9), (9, 13))])
    assert whole.take(final=True) == [("Hi", 0), ("there,", 0), ("you", 0)]


def fed_of(chunks) -> list[TextFed]:
    """Every chunk's text, checked to lie within the chunk's own frames."""
    out, first = [], 0
    for chunk in chunks:
        assert all(first <= f.frame < first + chunk.frames for f in chunk.text_fed), chunk.index
        out.extend(chunk.text_fed)
        first += chunk.frames
    return out


def assert_fed_in_whole_text(fed: list[TextFed], text: str) -> None:
    """The ids fed cover the whole text's words in order, with offsets in the whole text (not in
    one piece of it), entering frame after frame."""
    assert [f.start for f in fed] == sorted(f.start for f in fed)
    covered, end = [], 0
    for f in fed:
        covered.append(" " if f.start > end else "")  # the spaces between pieces are no piece's
        covered.append(text[max(f.start, end):f.end])
        end = max(end, f.end)
    assert "".join(covered).split() == text.split()
    assert [f.frame for f in fed] == sorted(f.frame for f in fed)


@pytest.fixture(scope="module")
def long_synth(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    return Synthesizer.open(tiny_custom_voice, out, "onnx", options=StreamOptions(base_frames=10, frames_per_token=1))


LONG = "This sentence is one of many. " * 12


def test_a_long_text_split_into_pieces_keeps_offsets_in_the_whole_text(long_synth):
    params = long_synth.greedy_params()
    pieces = long_synth.planner.plan(LONG, VOICE, params)
    assert len(pieces) > 1
    fed = fed_of(long_synth.stream(LONG, VOICE, params))
    assert_fed_in_whole_text(fed, LONG)
    # each piece's ids enter one per frame from the piece's first frame (its prompt's layout)
    starts, at = [], 0
    for piece in pieces:
        starts.append(LONG.index(piece, at))
        at = starts[-1] + len(piece)
    groups = [[f for f in fed if s <= f.start < s + len(p)] for s, p in zip(starts, pieces)]
    assert sum(map(len, groups)) == len(fed)
    for group, piece in zip(groups, pieces):
        assert len(group) == len(long_synth.prompts.build(piece, VOICE).text_ids)
        assert [f.frame - group[0].frame for f in group] == list(range(len(group)))
    assert all(a[-1].frame < b[0].frame for a, b in zip(groups, groups[1:]))


def test_text_arriving_in_segments_keeps_offsets_in_the_whole_text(long_synth):
    """The first segment is spoken while its text arrives (its ids are released one by one), the
    next ones were complete when reached (spoken as pieces): offsets in all the text pushed."""
    live, first_audio = long_synth.text_input(), threading.Event()
    words = [w + " " for w in LONG.split()]

    def write():
        live.push(words[0])
        first_audio.wait(60)  # the rest arrives while the first word is spoken, after the model ran dry
        time.sleep(0.2)
        for w in words[1:]:
            live.push(w)
        live.close()

    writer = threading.Thread(target=write)
    writer.start()
    chunks = []
    for chunk in long_synth.stream_text(live, VOICE, long_synth.greedy_params()):
        chunks.append(chunk)
        first_audio.set()
    first_audio.set()
    writer.join()
    segments = [s for s in live.segments if s.text.strip()]
    assert len(segments) > 1 and segments[1].start > 0  # cut into segments as it arrived
    m = long_synth.last_metrics
    assert m.segments == len(segments) and m.text_stall_ms > 0  # the first one waited for its text: live
    assert_fed_in_whole_text(fed_of(chunks), live.text)


# -- the service -----------------------------------------------------------------------------------
def reference_chunks(synth, text) -> int:
    return len(list(synth.stream(text, VOICE, synth.greedy_params(max_new_tokens=FRAMES + 1))))


async def test_without_word_timestamps_the_frames_are_as_before(synth):
    """The default service pushes what it always pushed: one TTSTextFrame per text after its audio
    (no timed word frames), in the order Pipecat's own local services give."""
    down, _ = await run_test(service(synth, cls=Qwen3TTSService), frames_to_send=[TTSSpeakFrame(HELLO)])
    n = reference_chunks(synth, HELLO)
    got = [type(f) for f in down if not isinstance(f, MetricsFrame)]
    assert got == [AggregatedTextFrame, TTSStartedFrame, *[TTSAudioRawFrame] * n, TTSTextFrame,
                   LLMAssistantPushAggregationFrame, TTSStoppedFrame]
    assert [(f.text, f.pts) for f in word_frames(down)] == [(HELLO, None)]

    turn = [LLMFullResponseStartFrame(), TextFrame(HELLO + " "), TextFrame(SECOND), LLMFullResponseEndFrame()]
    down, _ = await run_test(service(synth, cls=Qwen3TTSService), frames_to_send=turn)
    a, b = reference_chunks(synth, HELLO), reference_chunks(synth, SECOND)
    got = [type(f) for f in down if not isinstance(f, MetricsFrame)]
    assert got == [LLMFullResponseStartFrame, AggregatedTextFrame, TTSStartedFrame, *[TTSAudioRawFrame] * a, TTSTextFrame,
                   AggregatedTextFrame, *[TTSAudioRawFrame] * b, TTSTextFrame, TTSStoppedFrame, LLMFullResponseEndFrame]
    assert [(f.text, f.pts) for f in word_frames(down)] == [(HELLO, None), (SECOND, None)]


@pytest.mark.parametrize("lag", [0.0, 0.25])
async def test_every_word_once_in_order_at_its_first_tokens_frame(synth, lag):
    """An LLM turn of two sentences (one audio context): every word reported once, in order, each
    at its first token's frame; the second sentence's after the first one's audio; plus the lag."""
    tts = service(synth, word_timestamps=True, settings={"word_timestamp_lag_s": lag})
    turn = [LLMFullResponseStartFrame(), TextFrame(HELLO + " "), TextFrame(SECOND), LLMFullResponseEndFrame()]
    down, _ = await run_test(tts, frames_to_send=turn)
    first_s = seconds_of(synth, HELLO)
    expected = expected_words(synth, HELLO) + [(w, first_s + t) for w, t in expected_words(synth, SECOND)]
    assert [w for w, _ in expected] == (HELLO + " " + SECOND).split()
    assert [w for w, _, _ in tts.reported] == [w for w, _ in expected]
    assert [t for _, t, _ in tts.reported] == pytest.approx([t + lag for _, t in expected], abs=1e-9)
    assert len({c for _, _, c in tts.reported}) == 1
    # what Pipecat made of them: one word TTSTextFrame per word, timed, in order, for the context
    words = word_frames(down)
    assert [f.text for f in words] == [w for w, _ in expected]
    pts = [f.pts for f in words]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)  # one token per frame: strictly later each word
    assert [(p - pts[0]) / 1e9 for p in pts] == pytest.approx([t - expected[0][1] for _, t in expected], abs=1e-6)
    assert all(f.append_to_context for f in words)


async def test_text_streaming_reports_every_word_once_in_order(synth):
    tts = service(synth, word_timestamps=True, text_streaming=True)
    turn = [LLMFullResponseStartFrame(), *[LLMTextFrame(t) for t in TOKENS], LLMFullResponseEndFrame()]
    down, _ = await run_test(tts, frames_to_send=turn)
    text = "".join(TOKENS)
    expected = expected_words(synth, text)  # the same ids as the whole text, so the same frames
    assert [(w, t) for w, t, _ in tts.reported] == [(w, pytest.approx(t)) for w, t in expected]
    assert [f.text for f in word_frames(down)] == text.split()
    pts = [f.pts for f in word_frames(down)]
    assert pts == sorted(pts)


async def test_a_bad_lag_is_refused(synth):
    from qwen3_tts_trt.runtime.errors import PromptError

    with pytest.raises(PromptError, match="word_timestamp_lag_s"):
        service(synth, word_timestamps=True, settings={"word_timestamp_lag_s": -0.1})
    tts = service(synth, word_timestamps=True)
    _, up = await run_test(tts, frames_to_send=[TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(word_timestamp_lag_s="x"))])
    assert any("word_timestamp_lag_s" in f.error for f in up if isinstance(f, ErrorFrame))
    assert tts._settings.word_timestamp_lag_s == 0.0


# -- an interruption: only the words spoken reach the context --------------------------------------
class RealTimeOutput(BaseOutputTransport):
    """Pipecat's output transport machinery (audio queue, the clock queue that releases timed
    frames at their PTS, interruption handling) over a device that takes each write as long as
    its audio lasts, as a sound card or a paced network sender does."""

    def __init__(self):
        super().__init__(TransportParams(audio_out_enabled=True, audio_out_end_silence_secs=0))

    async def start(self, frame):
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def write_audio_frame(self, frame) -> bool:
        await asyncio.sleep(len(frame.audio) / 2 / frame.sample_rate)
        return True


class Watch(FrameProcessor):
    """Passes every frame on, keeping each downstream one with the pipeline clock's time."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[object, int]] = []
        self._waiters: list = []

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if direction.name == "DOWNSTREAM":
            self.seen.append((frame, self.get_clock().get_time()))
            for predicate, event in self._waiters:
                if predicate(frame):
                    event.set()
        await self.push_frame(frame, direction)

    async def until(self, predicate, timeout=60.0):
        event = asyncio.Event()
        self._waiters.append((predicate, event))
        if any(predicate(f) for f, _ in self.seen):
            event.set()
        await asyncio.wait_for(event.wait(), timeout)


@pytest.mark.parametrize("text_streaming", [False, True], ids=["sentences", "text_streaming"])
async def test_an_interruption_leaves_only_the_words_spoken_in_the_context(synth, text_streaming):
    """tts -> output transport (real-time playback) -> assistant context aggregator. Interrupted
    once three words have played, the context holds exactly the words whose time came before the
    interruption, and the turn was really cut (words after it were reported but never committed)."""
    tts = service(synth, word_timestamps=True, text_streaming=text_streaming)
    context = LLMContext()
    assistant = LLMContextAggregatorPair(context).assistant()
    before, after = Watch(), Watch()
    worker = PipelineWorker(Pipeline([tts, before, RealTimeOutput(), after, assistant]), params=PipelineParams(),
                            cancel_on_idle_timeout=False)
    started = asyncio.Event()
    interrupted_at: list[int] = []

    @worker.event_handler("on_pipeline_started")
    async def _started(worker, frame):
        started.set()

    async def script():
        await asyncio.wait_for(started.wait(), 60)
        await worker.queue_frame(LLMFullResponseStartFrame())
        if text_streaming:
            for token in TOKENS:
                await worker.queue_frame(LLMTextFrame(token))
        else:
            await worker.queue_frame(TextFrame(HELLO))
        await worker.queue_frame(LLMFullResponseEndFrame())
        await after.until(lambda f: len([1 for g, _ in after.seen if isinstance(g, TTSTextFrame)]) >= 3)
        await asyncio.sleep(0.04)  # the third word reaches the context (words are >= 80 ms apart)
        interrupted_at.append(tts.get_clock().get_time())
        await worker.queue_frame(InterruptionFrame())
        await after.until(lambda f: isinstance(f, InterruptionFrame))
        await asyncio.sleep(0.3)  # words due after the interruption would have played by now
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner()
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), script())

    reported = [f for f, _ in before.seen if isinstance(f, TTSTextFrame)]  # every word the TTS timed
    assert [f.text for f in reported] == HELLO.split()
    t_queued = interrupted_at[0]
    t_seen = next(t for f, t in after.seen if isinstance(f, InterruptionFrame))
    spoken = [m["content"] for m in context.get_messages() if m["role"] == "assistant"]
    assert len(spoken) == 1, context.get_messages()
    said = spoken[0].split()
    assert said == HELLO.split()[:len(said)]  # the first words, in order
    assert 3 <= len(said) < len(reported)  # cut short: later words were timed, but never heard
    for i, f in enumerate(reported):  # (a word due while the interruption travels may go either way)
        if f.pts < t_queued:
            assert i < len(said), f"{f.text!r} played before the interruption but is not in the context"
        elif f.pts > t_seen:
            assert i >= len(said), f"{f.text!r} was due after the interruption but is in the context"
