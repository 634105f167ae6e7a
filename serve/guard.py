"""What a request must pass before the server reads it: the API key, and the size of its body.

Both are checked on what arrives first (the headers), so a caller without the key, or with a body
larger than any request the server can take, costs the replica neither the body's memory nor a
parse of it.
"""

from __future__ import annotations

import hmac

from .errors import RequestError

API_KEY_ENV = "QWEN3_TTS_API_KEY"  # `serve` reads the key from here too, so it stays out of `ps`
# The largest body POST /v1/audio/speech reads: a reference recording at the voice rules' limit
# (serve.voices.MAX_REF_AUDIO_BYTES, 16 MiB, as base64: 4/3 of it) with the longest text the
# server takes, every character a JSON escape, fits under it; anything bigger is refused (413)
# before a byte of it is parsed.
MAX_BODY_BYTES = 24 * 2**20


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (what the `openai` client sends)."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def check_key(given: str | None, api_key: str | None) -> None:
    """Raise 401 unless the server has no key or `given` is it. The comparison takes the same time
    wherever the strings differ, so the key cannot be guessed a character at a time."""
    if api_key is None:
        return
    if given is None:
        raise RequestError(401, "this server needs an API key: send `Authorization: Bearer <key>` (the openai "
                                "client: api_key=...)", code="missing_api_key")
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        raise RequestError(401, "the API key is not this server's", code="invalid_api_key")


def too_large(size: int, limit: int, what: str = "the request body") -> RequestError:
    return RequestError(413, f"{what} is {size} bytes, more than this server's limit of {limit} bytes: send a "
                             "shorter text or a shorter reference recording", code="request_too_large")


async def read_body(request, limit: int) -> bytes:
    """The body of a starlette `Request`, refused (413) as soon as it is known to pass `limit`: from
    its Content-Length before reading, or while it arrives when it has none (chunked)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)
    parts, size = [], 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise too_large(size, limit, "the request body (so far)")
        parts.append(part)
    return b"".join(parts)
