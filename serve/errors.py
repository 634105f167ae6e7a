"""Request errors as the OpenAI API shapes them: one status and one clear line each.

    {"error": {"message": "...", "type": "invalid_request_error", "param": "voice", "code": "unknown_voice"}}

The same object travels over the WebSocket as {"type": "error", "error": {...}} before the close.
"""

from __future__ import annotations


class RequestError(Exception):
    """A request the server refuses; `status` is the HTTP status (4xx, or 503 when busy)."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 retry_after_s: float = 1.0):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.retry_after_s = retry_after_s  # a 503's Retry-After

    @property
    def kind(self) -> str:
        return "server_busy_error" if self.status == 503 else "invalid_request_error"

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> RequestError:
    return RequestError(400, message, param=param, code=code)


# The runtime names the request field at fault in its own words; the API's names differ for two.
_PARAMS = {"text": "input", "instruct": "instructions"}


def refused(exc: Exception, text_param: str = "input") -> RequestError:
    """A request the runtime refused (`error_kind(exc) == "refused"`), with the runtime's message."""
    field = getattr(exc, "field", None)
    param = text_param if field == "text" else _PARAMS.get(field, field)
    return bad_request(str(exc), param, getattr(exc, "code", None) or "invalid_request")
