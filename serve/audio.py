"""Bytes on the wire: 24 kHz mono PCM16 little-endian (OpenAI's `pcm`), or the same behind a
WAV header (`wav`).

A streamed WAV cannot know its length when the header leaves. The header is written by the
standard library's `wave` module with the largest length the format holds, the convention for
streamed WAV (OpenAI's and ffmpeg's streamed WAV do the same): readers such as libsndfile read
to the end of the data. Nothing is resampled: the model speaks at 24 kHz, which is `pcm`'s rate.
"""

from __future__ import annotations

import io
import wave

WAV_MAX_DATA = 0xFFFFFFFF - 36  # RIFF sizes are 32-bit; the RIFF chunk holds 36 header bytes plus the data


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


MEDIA_TYPES = {"pcm": "audio/pcm", "wav": "audio/wav"}
