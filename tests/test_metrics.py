"""Per-utterance metrics accounting (runtime/metrics.py): pure logic, no model, no build."""

from __future__ import annotations

import time

from qwen3_tts_trt.runtime.metrics import MetricsRecorder, UtteranceMetrics


def test_end_reason_is_the_last_segment_end_that_was_not_eos():
    r = MetricsRecorder(time.perf_counter())
    r.segments_added(3)
    for reason in ("eos", "frame_cap", "eos"):
        r.segment_ended(reason)
    assert (r.segments, r.end_reason) == (3, "frame_cap")
    r.segment_ended("cancelled")
    assert r.end_reason == "cancelled"


def test_the_consumers_time_is_not_the_streams():
    """Bounds from the clock readings around each call, so the check holds on any host."""
    start = time.perf_counter()
    r = MetricsRecorder(start)
    r.chunk_out(1920)
    held_from = time.perf_counter()
    time.sleep(0.05)  # the consumer holds the chunk
    held_to = time.perf_counter()
    r.chunk_taken()
    r.chunk_out(3840)
    held_again = time.perf_counter()
    time.sleep(0.05)  # the consumer holds the last chunk, then closes the stream
    r.stop()
    assert r.audio_samples == 5760 and r.chunks == 2 and 0 <= r.ttfc <= held_from - start
    assert 0 < r.active <= (held_from - start) + (held_again - held_to)


def test_derived_figures():
    m = UtteranceMetrics(backend="onnx", ttfc_ms=100.0, frames=50, audio_seconds=4.0, wall_seconds=2.0,
                         engine_seconds=1.5, host_seconds=0.005, end_reason="eos", segments=1, chunks=8)
    assert (m.ms_per_frame, m.host_us_per_frame, m.xrt) == (40.0, 100.0, 2.0)
    assert m.to_dict()["xrt"] == 2.0 and m.to_dict()["end_reason"] == "eos"


# -- playback continuity: a player that starts at the first chunk and plays in real time ------------
def test_a_stream_ahead_of_real_time_plays_without_a_gap():
    from qwen3_tts_trt.runtime.metrics import playback

    # 0.4 s of audio every 0.2 s: always ahead
    heard = playback(tuple((0.1 + 0.2 * i, 0.4) for i in range(10)))
    assert (heard.underrun_ms, heard.worst_gap_ms, heard.gaps_over_100ms) == (0.0, 0.0, 0)


def test_gaps_are_the_waits_after_the_audio_ran_out():
    from qwen3_tts_trt.runtime.metrics import playback

    # chunk 0 at 1.0 s plays to 1.5; chunk 1 at 1.58 (an 80 ms wait, not a break) plays to 2.08;
    # chunk 2 at 2.4 (a 320 ms wait) plays to 2.9; chunk 3 at 2.5 is queued: plays 2.9 to 3.4
    chunks = ((1.0, 0.5), (1.58, 0.5), (2.4, 0.5), (2.5, 0.5))
    heard = playback(chunks)
    assert round(heard.underrun_ms, 6) == 400.0 and round(heard.worst_gap_ms, 6) == 320.0
    assert heard.gaps_over_100ms == 1
    # 250 ms of start-up buffer: playing from 1.25, chunk 1 comes before chunk 0 ends (1.75) and
    # plays to 2.25; chunk 2 comes 150 ms after that
    buffered = playback(chunks, prebuffer_ms=250)
    assert round(buffered.underrun_ms, 6) == 150.0 and buffered.gaps_over_100ms == 1
    # a buffer as long as the worst stall removes every gap
    assert playback(chunks, prebuffer_ms=700).underrun_ms == 0.0


def test_metrics_report_the_playback_view():
    m = UtteranceMetrics(backend="onnx", ttfc_ms=100.0, frames=20, audio_seconds=1.0, wall_seconds=2.0,
                         engine_seconds=1.5, host_seconds=0.005, end_reason="eos", segments=1, chunks=2,
                         chunk_times=((0.1, 0.5), (0.9, 0.5)))
    d = m.to_dict()
    assert round(d["underrun_ms"], 6) == 300.0 and d["gaps_over_100ms"] == 1 and "chunk_times" not in d
    assert m.playback(prebuffer_ms=300).underrun_ms == 0.0
