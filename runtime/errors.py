"""Errors a user can act on. Each names what is wrong and, where it can, what would be right."""


class Qwen3TTSError(Exception):
    """Base class of every error this package raises on purpose. `field` names the request field
    at fault (text, voice, language, instruct, or a sampling setting's name) and `code` says what
    is wrong in a word, for front ends that answer in a structured form (an HTTP error body)."""

    def __init__(self, message: str = "", *, field: str | None = None, code: str | None = None):
        super().__init__(message)
        self.field, self.code = field, code


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
    """Every stream slot of a `StreamPool` is taken and the wait for one ran out (or would run out):
    retry, elsewhere or after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 1.0):
        super().__init__(message)
        self.retry_after_s = retry_after_s


def error_kind(exc: BaseException) -> str:
    """How every front end treats an error: "refused" (this request cannot be spoken: say why and
    keep serving), "busy" (every stream slot is taken: retry, here later or elsewhere), "failure"
    (the engines or the host failed: report it, fail over rather than retry)."""
    if isinstance(exc, (PromptError, VoiceError)):
        return "refused"
    if isinstance(exc, PoolBusy):
        return "busy"
    return "failure"
