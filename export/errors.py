"""The build's own error: raised where build.sh cannot go on."""

from __future__ import annotations

from qwen3_tts_trt.runtime.errors import Qwen3TTSError


class BuildError(Qwen3TTSError):
    """The build cannot go on; the message says why and what to do."""
