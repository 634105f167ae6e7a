"""The error a command raises for an argument that cannot work: one line on stderr, exit status 2."""

from __future__ import annotations

from qwen3_tts_trt.runtime.errors import Qwen3TTSError


class UsageError(Qwen3TTSError):
    """A command-line argument that cannot work (found before any model is loaded)."""
