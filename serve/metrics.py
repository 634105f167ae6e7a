"""Prometheus metrics of a replica, through Ray's metrics agent (`ray.serve.metrics`), which
exports them with every other Ray and Serve metric on each node's metrics port, tagged with the
deployment and replica. A `/metrics` route would reach one random replica per scrape instead.

- `qwen3_tts_ttfc_seconds`: request arrival at the replica -> first audio chunk ready to send.
- `qwen3_tts_xrt`: audio seconds per second of generation, per stream (the Synthesizer's figure).
- `qwen3_tts_live_streams`: streams holding a slot now.
- `qwen3_tts_streams_total{endpoint, end}`: finished streams by how they ended (eos, frame_cap,
  cancelled, error, ...).
- `qwen3_tts_rejected_total{endpoint, reason}`: refused requests (bad_request, busy).
- `qwen3_tts_underruns_total{endpoint}`: see `PlaybackClock`.
"""

from __future__ import annotations

import time

from ray.serve.metrics import Counter, Gauge, Histogram

TTFC_BOUNDARIES = [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0]
XRT_BOUNDARIES = [0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]


class PlaybackClock:
    """Underruns as a client that plays the stream in real time would hear them, measured where
    the server hands each chunk to the connection (the network's own delays are not in it).

    Playback starts when the first chunk leaves. A later chunk is late when the audio sent before
    it has already finished playing: the listener heard silence. Each late chunk counts once.
    Only whole-text requests count: a WebSocket stream that waits for its client's next words is
    not late (that wait is `text_stall_ms` in its final message).
    """

    def __init__(self):
        self.start: float | None = None
        self.sent_seconds = 0.0
        self.underruns = 0

    def sent(self, seconds: float, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        if self.start is None:
            self.start = now
        elif now - self.start > self.sent_seconds:
            self.underruns += 1
        self.sent_seconds += seconds


class ServeMetrics:
    def __init__(self):
        self.ttfc = Histogram("qwen3_tts_ttfc_seconds", description="request arrival to first audio chunk",
                              boundaries=TTFC_BOUNDARIES, tag_keys=("endpoint",))
        self.xrt = Histogram("qwen3_tts_xrt", description="audio seconds per second of generation, per stream",
                             boundaries=XRT_BOUNDARIES, tag_keys=("endpoint",))
        self.live = Gauge("qwen3_tts_live_streams", description="streams holding an engine slot")
        self.streams = Counter("qwen3_tts_streams_total", description="finished streams by how they ended",
                               tag_keys=("endpoint", "end"))
        self.rejected = Counter("qwen3_tts_rejected_total", description="refused requests",
                                tag_keys=("endpoint", "reason"))
        self.underruns = Counter("qwen3_tts_underruns_total", description="chunks sent after the audio before "
                                 "them had finished playing (whole-text streams)", tag_keys=("endpoint",))
        # The same facts for GET /health (this replica only), kept here as plain numbers.
        self.served = 0
        self.cancelled = 0
        self.last_cancelled: dict | None = None

    def first_chunk(self, endpoint: str, seconds: float) -> None:
        self.ttfc.observe(seconds, tags={"endpoint": endpoint})

    def reject(self, endpoint: str, reason: str) -> None:
        self.rejected.inc(tags={"endpoint": endpoint, "reason": reason})

    def finished(self, endpoint: str, metrics, *, error: bool = False, refused: bool = False,
                 underruns: int = 0) -> None:
        """One stream has given its slot back; `metrics` is its UtteranceMetrics (None if it made nothing)."""
        if refused:  # the engine's own checks refused the request as it started: a 4xx, not a stream
            return
        end = "error" if error else (metrics.end_reason if metrics is not None else "cancelled")
        self.served += 1
        self.streams.inc(tags={"endpoint": endpoint, "end": end})
        if metrics is not None and metrics.frames and not error:
            self.xrt.observe(metrics.xrt, tags={"endpoint": endpoint})
        if underruns:
            self.underruns.inc(underruns, tags={"endpoint": endpoint})
        if end == "cancelled":
            self.cancelled += 1
            self.last_cancelled = None if metrics is None else {
                "frames": metrics.frames, "frames_after_cancel": metrics.frames_after_cancel}

    def set_live(self, n: int) -> None:
        self.live.set(n)
