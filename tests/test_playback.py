"""Playback continuity of real streams (tiny build, ONNX Runtime) whose timing the test scripts:
an engine call held up mid-stream is a gap a listener hears, of the length the arithmetic gives;
a consumer that holds each chunk (a player playing in real time) is not."""

import time

import pytest

from qwen3_tts_trt.runtime.voice import Voice

TEXT = "A stream whose codec stalls once, in the middle of the sentence."
VOICE = Voice(speaker="ryan")
STALL_S = 1.5


@pytest.fixture
def stalling_codec(onnx_synth, monkeypatch):
    """The codec's third call of a stream waits STALL_S first (a slow engine call)."""
    backend = onnx_synth.backend
    inner, calls = backend.codec_run, []

    def codec_run(codes, state):
        calls.append(codes.shape[-1])
        if len(calls) == 3:
            time.sleep(STALL_S)
        return inner(codes, state)

    monkeypatch.setattr(backend, "codec_run", codec_run)
    return calls


def test_a_stalled_engine_call_is_one_gap_of_the_stall_less_the_audio_buffered(onnx_synth, stalling_codec):
    params = onnx_synth.greedy_params(max_new_tokens=120)
    chunks = list(onnx_synth.stream(TEXT, VOICE, params))
    m = onnx_synth.last_metrics
    assert len(chunks) >= 4 and len(m.chunk_times) == len(chunks)
    heard = m.playback()
    # when the third chunk is late, the audio of the first two has played for all but the
    # (fast) time it took to make them: the gap is the stall less what was still buffered
    buffered = sum(seconds for _, seconds in m.chunk_times[:2]) - (m.chunk_times[1][0] - m.chunk_times[0][0])
    assert heard.gaps_over_100ms == 1
    assert STALL_S - buffered - 0.1 <= heard.worst_gap_ms / 1000 <= STALL_S - buffered + 0.3, (heard, buffered)
    assert heard.underrun_ms == pytest.approx(heard.worst_gap_ms, abs=100)
    # a start-up buffer as long as the stall hides it
    assert m.playback(prebuffer_ms=1000 * STALL_S).gaps_over_100ms == 0
    assert m.to_dict()["gaps_over_100ms"] == 1


def test_a_consumer_that_holds_each_chunk_is_not_a_gap(onnx_synth):
    params = onnx_synth.greedy_params(max_new_tokens=60)
    for chunk in onnx_synth.stream(TEXT, VOICE, params):
        time.sleep(0.25)  # longer than most chunks play: a consumer slower than real time
    heard = onnx_synth.last_metrics.playback()
    assert heard.gaps_over_100ms == 0 and heard.underrun_ms < 100
