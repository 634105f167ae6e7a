"""Bytes on the wire, in the `response_format`s of OpenAI's speech API, each written as the audio
is made: the first bytes leave with the first chunk.

- `pcm`: 24 kHz mono PCM16 little-endian, as OpenAI defines it; `wav`: the same behind a WAV
  header. A streamed WAV cannot know its length when the header leaves: the header (the standard
  library's `wave`) carries the largest length the format holds, the convention for streamed WAV
  (OpenAI's and ffmpeg's do the same); readers such as libsndfile read to the end of the data.
- `mp3`, `opus` (Ogg Opus), `aac` (ADTS), `flac`: encoded by FFmpeg's encoders through PyAV, one
  chunk at a time into a container written to a stream (nothing seeks back). The Ogg muxer
  flushes a page every 20 ms of audio instead of every second, so Opus leaves as it is made.
Nothing is resampled on our side: the model speaks at 24 kHz, which every one of these codecs
takes (an Opus decoder plays it at 48 kHz, as Opus always does).
"""

from __future__ import annotations

import io
import wave

import numpy as np

WAV_MAX_DATA = 0xFFFFFFFF - 36  # RIFF sizes are 32-bit; the RIFF chunk holds 36 header bytes plus the data

MEDIA_TYPES = {"pcm": "audio/pcm", "wav": "audio/wav", "mp3": "audio/mpeg", "opus": "audio/ogg",
               "aac": "audio/aac", "flac": "audio/flac"}
# response_format -> (container, encoder, container options) for PyAV
_CODECS = {"mp3": ("mp3", "libmp3lame", {}), "opus": ("ogg", "libopus", {"page_duration": "20000"}),
           "aac": ("adts", "aac", {}), "flac": ("flac", "flac", {})}
FORMATS = tuple(MEDIA_TYPES)


def wav_header(sample_rate: int) -> bytes:
    buf = io.BytesIO()
    w = wave.open(buf, "wb")
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(sample_rate)
    w.setnframes(WAV_MAX_DATA // 2)
    w.writeframesraw(b"")  # writes the header only
    header = buf.getvalue()
    w.close()  # rewrites the sizes inside `buf` for the 0 frames written: the copy taken above keeps the header
    return header


class _Collected(io.RawIOBase):
    """A write-only, unseekable file that keeps what the muxer wrote until it is taken."""

    def __init__(self):
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


class StreamEncoder:
    """PCM16 chunks in, the response body's bytes out, chunk by chunk: `start()` (a header, if the
    format has one), `add(pcm16)` per chunk, `finish()` once at the end."""

    def __init__(self, fmt: str, sample_rate: int):
        if fmt not in FORMATS:
            raise ValueError(f"unknown response_format {fmt!r}: one of {', '.join(FORMATS)}")
        self.fmt, self.sample_rate = fmt, sample_rate
        self._container = self._stream = None
        self._samples = 0
        if fmt in _CODECS:
            import av  # PyAV (FFmpeg), the serve extra's encoder library

            container, codec, options = _CODECS[fmt]
            self._sink = _Collected()
            self._container = av.open(self._sink, "w", format=container, options=options)
            self._stream = self._container.add_stream(codec, rate=sample_rate, layout="mono")

    def start(self) -> bytes:
        return wav_header(self.sample_rate) if self.fmt == "wav" else b""

    def add(self, pcm16: np.ndarray) -> bytes:
        if self._container is None:
            return pcm16.astype("<i2", copy=False).tobytes()
        import av

        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm16, dtype=np.int16)[None, :], format="s16",
                                           layout="mono")
        frame.sample_rate, frame.pts = self.sample_rate, self._samples
        self._samples += len(pcm16)
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        """The encoder's last packets and the container's trailer."""
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()

    def close(self) -> None:
        """Free the encoder of a body that ended early (a client that left)."""
        if self._container is not None:
            try:
                self._container.close()
            except Exception:  # noqa: BLE001  (a half-written container: nothing is sent any more)
                pass
            self._container = None
