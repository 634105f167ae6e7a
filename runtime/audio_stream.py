"""Frames -> audio chunks: the read-ahead, the chunk ramp, the stateful codec, cancellation, and the
utterance's metrics.

The frames are made in a thread of their own (`ReadAhead`) while the caller's thread runs the
codec on the last ones; at most a chunk of the ramp's largest size waits. Every chunk goes through
the backend's stateful codec, so chunk edges are exact; an ICL clone's reference codes prime it
first (they are the codec's left context).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from .contract import chunk_frames
from .decode_loop import TEXT_STALL
from .frame_source import Events, SegmentEnd, SegmentsAdded, TextEntered
from .metrics import MetricsRecorder, UtteranceMetrics
from .read_ahead import ReadAhead
from .text_stream import TextInput
from .text_timing import TextFed


def to_pcm16(samples: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] -> int16 (clipped, rounded): the one conversion every output uses."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


@dataclass
class AudioChunk:
    samples: np.ndarray  # float32 in [-1, 1], mono
    sample_rate: int
    index: int
    frames: int
    codes: torch.Tensor | None = None  # [frames, 16] int64: the codes this audio was decoded from (cache, re-vocode)
    # The text ids that entered the talker with this chunk's frames: where each lies in the request's
    # text and with which frame of the utterance it entered (runtime/text_timing.py: word timestamps).
    text_fed: tuple[TextFed, ...] = ()

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    def pcm16(self) -> np.ndarray:
        """The samples as int16 (clipped, rounded)."""
        return to_pcm16(self.samples)

    def pcm16_bytes(self) -> bytes:
        """The samples as PCM16 little-endian bytes (the wire format of every front end)."""
        return np.asarray(self.pcm16(), dtype="<i2").tobytes()


class StreamControl:
    """Cancellation of a synthesizer's utterance in progress: `cancel()` may come from any thread."""

    def __init__(self):
        self._event = threading.Event()
        self.frames_made = 0
        self.mark: int | None = None  # frames made when cancel() was called
        self.live: TextInput | None = None  # the utterance's arriving text, woken by cancel()

    def begin(self, live: TextInput | None) -> None:
        self._event.clear()
        self.mark, self.frames_made, self.live = None, 0, live

    def cancel(self) -> None:
        self.mark = self.frames_made
        self._event.set()
        live = self.live
        if live is not None:
            live.cancel()  # a frame loop waiting for text wakes up and sees the flag

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def frames_after_cancel(self) -> int | None:
        return None if self.mark is None else self.frames_made - self.mark


def stream_audio(events: Events, backend, control: StreamControl, recorder: MetricsRecorder,
                 ramp: tuple[int, ...], *, ref_codes: torch.Tensor | None = None,
                 live: TextInput | None = None) -> Iterator[AudioChunk]:
    """Chunks of audio from `events`; fills `recorder` and, once the stream ends however it ends,
    sets `recorder.metrics`."""
    sample_rate = backend.config.codec.sample_rate
    engine_start, steps_start = backend.engine_seconds, backend.step_seconds
    source, ahead = _counted(events, control), None
    cancelled = False
    pending: list[torch.Tensor] = []
    fed: list[TextFed] = []  # the text that entered with the pending frames
    try:
        codec = backend.new_codec_state()  # this stream's codec state, carried from chunk to chunk
        if ref_codes is not None:
            codec = _prime_codec(backend, codec, torch.as_tensor(ref_codes, dtype=torch.long))
        ahead = ReadAhead(source, depth=max(ramp), name="qwen3-tts-frames")
        for event in itertools.chain(ahead, [None]):  # None: the end, flush what is pending
            if control.cancelled:
                cancelled = True
                break
            if isinstance(event, SegmentsAdded):
                recorder.segments_added(event.count)
                continue
            if isinstance(event, SegmentEnd):
                recorder.segment_ended(event.reason)
                continue
            if isinstance(event, _FrameWithText):
                fed.extend(TextFed(recorder.frames, start, end) for start, end in event.text.spans)
                event = event.frame
            stalled = event is TEXT_STALL  # the loop waits for text: what is made plays meanwhile
            if isinstance(event, torch.Tensor):
                recorder.frames += 1
                pending.append(event)
            if pending and (event is None or stalled
                            or len(pending) >= chunk_frames(recorder.chunks, ramp, backend.limits.max_chunk)):
                chunk, codec = _decode(backend, codec, pending, recorder.chunks, sample_rate)
                chunk.text_fed = tuple(fed)
                pending, fed = [], []
                recorder.chunk_out(len(chunk.samples), sample_rate)
                yield chunk
                recorder.chunk_taken()
    except GeneratorExit:
        cancelled = True
        raise
    finally:
        if live is not None:
            live.cancel()  # a frame loop waiting for text wakes up; a pump still pushing text stops
        if ahead is not None:
            ahead.close()  # the frame in progress ends; its source closes in its own thread
        else:
            source.close()
        backend.end_stream()  # the step loop stops waiting for this stream's steps
        if cancelled:
            recorder.segment_ended("cancelled")
        recorder.stop()
        host = 0.0
        if ahead is not None:
            stalled_s = live.stall_seconds if live is not None else 0.0
            host = max(ahead.made_seconds - ahead.waited_seconds - stalled_s
                       - (backend.step_seconds - steps_start), 0.0)
        r = recorder
        recorder.metrics = UtteranceMetrics(
            backend=backend.name, ttfc_ms=None if r.ttfc is None else 1000 * r.ttfc, frames=r.frames,
            audio_seconds=r.audio_samples / sample_rate, wall_seconds=r.active,
            engine_seconds=backend.engine_seconds - engine_start, host_seconds=host, end_reason=r.end_reason,
            segments=r.segments, chunks=r.chunks, fallback=backend.fallback,
            frames_after_cancel=control.frames_after_cancel() if r.end_reason == "cancelled" else None,
            text_stall_ms=None if live is None else 1000 * live.stall_seconds, chunk_times=tuple(r.chunk_times))


class _FrameWithText(NamedTuple):
    """A frame and the `TextEntered` before it, as one read-ahead item: the read-ahead's bound
    stays a count of frames."""

    text: TextEntered
    frame: torch.Tensor


def _counted(events: Events, control: StreamControl) -> Events:
    """The events as they are made, frames counted for `cancel()`, ending after the frame in
    progress once the utterance is cancelled. A `TextEntered` rides with the frame it precedes."""
    entered = None
    try:
        for event in events:
            if isinstance(event, TextEntered):
                entered = event
                continue
            if isinstance(event, torch.Tensor):
                control.frames_made += 1
                if entered is not None:
                    event, entered = _FrameWithText(entered, event), None
            yield event
            if control.cancelled:
                return
    finally:
        events.close()


def _decode(backend, state, frames: list[torch.Tensor], index: int, sample_rate: int) -> tuple[AudioChunk, object]:
    """The chunk of `frames` and the codec state after it."""
    codes = torch.stack(frames).T[None]  # [1, 16, n]
    pcm, state = backend.codec_run(codes, state)
    samples = pcm.detach().float().cpu().numpy().reshape(-1).astype(np.float32, copy=False)
    return AudioChunk(samples, sample_rate, index, len(frames), codes=codes[0].T.clone()), state


def _prime_codec(backend, state, ref_codes: torch.Tensor):
    """The codec state after the reference codes [F, 16] (an ICL clone's left context; their audio is dropped)."""
    step = backend.limits.max_chunk
    for i in range(0, ref_codes.shape[0], step):
        _, state = backend.codec_run(ref_codes[i:i + step].T[None], state)
    return state
