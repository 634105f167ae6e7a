"""Errors a user can act on. Each names what is wrong and, where it can, what would be right."""


class Qwen3TTSError(Exception):
    """Base class of every error this package raises on purpose."""


class CheckpointError(Qwen3TTSError):
    """A checkpoint directory is missing files, has a wrong model type or mismatched weights."""


class PromptError(Qwen3TTSError, ValueError):
    """The request cannot be served: empty or invalid text, unknown speaker or language, a
    sampling setting out of range, ..."""


class EngineMismatchError(Qwen3TTSError):
    """Prebuilt engines do not fit: another model, GPU, TensorRT version or engine contract."""


class BackendUnavailableError(Qwen3TTSError):
    """The requested backend cannot run here (library missing, no GPU, engines not built)."""


class VoiceError(Qwen3TTSError, ValueError):
    """Reference audio or a voice file cannot be used: unreadable, too short or long, silent, made
    for another model, ..."""


class PoolBusy(Qwen3TTSError):
    """Every stream slot of a `StreamPool` is taken and the wait for one ran out (or is full): retry,
    elsewhere or later."""
