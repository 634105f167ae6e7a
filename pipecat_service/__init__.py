"""Pipecat integration: `Qwen3TTSService`, a TTS service over the streaming `Synthesizer`."""

from .tts import Qwen3TTSService, Qwen3TTSSettings

__all__ = ["Qwen3TTSService", "Qwen3TTSSettings"]
