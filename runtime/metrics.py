"""Per-utterance metrics: what one stream made and where its time went."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field

GAP_MS = 100.0  # a silence a listener hears as a break (vLLM-Omni's audio_underrun threshold)


@dataclass(frozen=True)
class Playback:
    """What a listener hears of a stream: a player that starts `prebuffer_ms` after the first chunk
    and then plays in real time, waiting whenever the next audio has not arrived yet."""

    underrun_ms: float  # the total time it waited for audio once playing
    worst_gap_ms: float  # its longest wait
    gaps_over_100ms: int  # waits a listener hears as breaks
    prebuffer_ms: float = 0.0


def playback(chunks: tuple[tuple[float, float], ...], prebuffer_ms: float = 0.0) -> Playback:
    """`chunks`: (arrival time s, audio s) of each chunk in order, on one clock."""
    underrun = worst = 0.0
    gaps = 0
    plays_until = None  # when the audio that arrived so far ends playing
    for arrival, seconds in chunks:
        if plays_until is None:
            plays_until = arrival + prebuffer_ms / 1000  # the player starts
        gap = max(arrival - plays_until, 0.0)
        underrun += gap
        worst = max(worst, gap)
        gaps += gap * 1000 > GAP_MS
        plays_until = max(arrival, plays_until) + seconds
    return Playback(1000 * underrun, 1000 * worst, gaps, prebuffer_ms)


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
    # (when each chunk was ready on the stream's own clock, its audio seconds): `playback()`'s input.
    # The stream's clock leaves out the time its consumer held a chunk, so the figures say whether
    # the engine kept ahead of real time, whatever the consumer did.
    chunk_times: tuple[tuple[float, float], ...] = field(default=(), repr=False)

    def playback(self, prebuffer_ms: float = 0.0) -> Playback:
        return playback(self.chunk_times, prebuffer_ms)

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
        out = asdict(self)
        del out["chunk_times"]
        heard = self.playback()
        return dict(out, ms_per_frame=self.ms_per_frame, host_us_per_frame=self.host_us_per_frame, xrt=self.xrt,
                    underrun_ms=heard.underrun_ms, worst_gap_ms=heard.worst_gap_ms,
                    gaps_over_100ms=heard.gaps_over_100ms)


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
        self.chunk_times: list[tuple[float, float]] = []  # (ready on the stream's clock, audio seconds)
        self.metrics: UtteranceMetrics | None = None  # set once the stream has ended
        self._resumed: float | None = time.perf_counter()  # None while the consumer holds a chunk

    def segments_added(self, count: int) -> None:
        self.segments += count

    def segment_ended(self, reason: str) -> None:
        if reason != "eos":  # the utterance ends as its last segment that did not end by EOS
            self.end_reason = reason

    def chunk_out(self, samples: int, sample_rate: int = 24000) -> None:
        """Before a chunk is handed over: the consumer's time from here on is not the stream's."""
        self.chunks += 1
        self.audio_samples += samples
        now = time.perf_counter()
        if self.ttfc is None:
            self.ttfc = now - self.t_request
        self._count_until(now)
        self._resumed = None
        self.chunk_times.append((self.active, samples / sample_rate))

    def chunk_taken(self) -> None:
        self._resumed = time.perf_counter()

    def stop(self) -> None:
        """The stream ended (a consumer that closed it while holding a chunk adds nothing)."""
        self._count_until(time.perf_counter())
        self._resumed = None

    def _count_until(self, now: float) -> None:
        if self._resumed is not None:
            self.active += now - self._resumed


def wrap_engine_calls(backend, names, record) -> None:
    """For profiles (the benchmarks): wrap the backend's methods `names` so that each call, when it
    returns or raises, calls `record(name, start, end, thread_name)` (perf_counter seconds) under
    one lock: the codec's calls come from another thread than the frame loop's."""
    lock = threading.Lock()
    for name in names:
        inner = getattr(backend, name)

        def timed(*args, _inner=inner, _name=name, **kwargs):
            t0 = time.perf_counter()
            try:
                return _inner(*args, **kwargs)
            finally:
                with lock:
                    record(_name, t0, time.perf_counter(), threading.current_thread().name)

        setattr(backend, name, timed)


# The step loop runs a talker step as decode_rows (which calls decode for a lone stream): only the
# outer call is timed, or the step would count twice.
ENGINE_PARTS = {"prefill": "talker", "decode_rows": "talker", "predict_frame": "predictor", "codec_run": "codec"}


def engine_seconds_by_part(backend) -> dict[str, float]:
    """For profiles: wrap the backend's engine calls and return the dict {talker, predictor, codec}
    to which each call's wall time is added from then on (the caller may zero it between runs)."""
    spent = dict.fromkeys(ENGINE_PARTS.values(), 0.0)

    def add(name, t0, t1, _thread):
        spent[ENGINE_PARTS[name]] += t1 - t0

    wrap_engine_calls(backend, ENGINE_PARTS, add)
    return spent
