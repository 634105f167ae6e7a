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
