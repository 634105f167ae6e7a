"""Streaming runtime for Qwen3-TTS-12Hz: prompt building, generation and stateful vocoding."""

from .config import ModelConfig, load_model_config
from .errors import CheckpointError, PromptError, Qwen3TTSError

__all__ = ["CheckpointError", "ModelConfig", "PromptError", "Qwen3TTSError", "load_model_config"]
