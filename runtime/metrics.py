"""Per-utterance metrics: what one stream made and where its time went."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass


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


class MetricsRecorder:
    """Counts one utterance as the streamer makes it. The wall time is the streamer's own: the time
    its consumer holds a chunk is left out (a client playing audio in real time is not slowness)."""

    def __init__(self, t_request: float):
        self.t_request = t_request
        self.frames = self.chunks = self.audio_samples = 0
        self.ttfc: float | None = None
        self.segments = 0
        self.end_reason = "eos"
        self.active = 0.0
        self.metrics: UtteranceMetrics | None = None  # set once the stream has ended
        self._resumed: float | None = time.perf_counter()  # None while the consumer holds a chunk

    def segments_added(self, count: int) -> None:
        self.segments += count

    def segment_ended(self, reason: str) -> None:
        if reason != "eos":  # the utterance ends as its last segment that did not end by EOS
            self.end_reason = reason

    def chunk_out(self, samples: int) -> None:
        """Before a chunk is handed over: the consumer's time from here on is not the stream's."""
        self.chunks += 1
        self.audio_samples += samples
        now = time.perf_counter()
        if self.ttfc is None:
            self.ttfc = now - self.t_request
        self._count_until(now)
        self._resumed = None

    def chunk_taken(self) -> None:
        self._resumed = time.perf_counter()

    def stop(self) -> None:
        """The stream ended (a consumer that closed it while holding a chunk adds nothing)."""
        self._count_until(time.perf_counter())
        self._resumed = None

    def _count_until(self, now: float) -> None:
        if self._resumed is not None:
            self.active += now - self._resumed
