"""The Ray Serve deployment: one `StreamPool` per replica behind an OpenAI-compatible API.

    POST /v1/audio/speech          OpenAI's speech API (+ vLLM-Omni / SGLang-Omni extension fields);
                                   the body streams as chunks are made: `pcm` or `wav`
    WS   /v1/audio/speech/stream   text in as it is written, PCM16 chunks out, a final JSON with metrics
    GET  /v1/voices                {"voices": [ids usable as `voice`], "variant", "languages", ...}
    GET  /v1/models                the one model served (OpenAI's list shape)
    GET  /health                   200 once the replica's engine is warm
    GET  /                         the playground: one static page (serve/static/playground.html)

No `from __future__ import annotations` here: Ray Serve's FastAPI ingress then sees string
annotations, and WebSocket routes answer HTTP 403 (measured with Ray 2.60).
"""

import asyncio
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
import ray
from pydantic import ValidationError
from ray import serve
from starlette.exceptions import HTTPException
from starlette.websockets import WebSocketDisconnect, WebSocketState

from qwen3_tts_trt.runtime.errors import PoolBusy, PromptError, Qwen3TTSError, error_kind
from qwen3_tts_trt.runtime.request_plan import StreamOptions, text_too_long
from qwen3_tts_trt.runtime.requests import sampling_params
from qwen3_tts_trt.runtime.stream_pool import PooledStream, StreamPool

from .audio import FORMATS, MEDIA_TYPES, StreamEncoder
from .config import ServeConfig
from .drain import DRAIN_NAMESPACE, ReplicaDrain
from .errors import RequestError, bad_request, refused
from .guard import bearer_token, check_key, read_body, too_large
from .metrics import PlaybackClock, ServeMetrics
from .schemas import SessionConfig, SpeechRequest, VoiceFields
from .voices import VoiceBook

# WebSocket close codes (RFC 6455): 1000 done, 1001 the server is going away (shutting down),
# 1003 a message of the wrong kind, 1008 a request refused (policy), 1009 a message too big,
# 1011 a failure inside the server, 1013 "try again later" (every slot busy).
WS_DONE, WS_GOING_AWAY, WS_UNSUPPORTED, WS_REFUSED, WS_TOO_BIG, WS_FAILED, WS_BUSY = \
    1000, 1001, 1003, 1008, 1009, 1011, 1013
# POST /v1/audio/speech reads its body itself (size first, then parse): its schema for OpenAPI.
SPEECH_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": SpeechRequest.model_json_schema(ref_template="#/components/schemas/{model}")}}}}

api = FastAPI(title="qwen3-tts-trt", description="Qwen3-TTS streaming speech, OpenAI-compatible")
# The playground page at `/`: plain HTML, CSS and JS in one file (package data), read once at import.
PLAYGROUND_HTML = (Path(__file__).parent / "static" / "playground.html").read_text(encoding="utf-8")


@api.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError):
    headers = {"Retry-After": str(math.ceil(exc.retry_after_s))} if exc.status == 503 \
        else {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


@api.exception_handler(RequestValidationError)
async def _invalid_body(request: Request, exc: RequestValidationError):
    return JSONResponse(_validation_error(exc.errors()).body(), status_code=400)


# Starlette's own refusals (no such route: 404; a method the route does not serve: 405, with
# `Allow`) in the OpenAI error shape too, instead of FastAPI's {"detail": ...}.
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException):
    method = request.scope.get("method", "WEBSOCKET")  # starlette passes a WebSocket for a WebSocket route
    where = f"{method} {request.url.path}"
    if exc.status_code == 404:
        message = f"no such route: {where} (GET /openapi.json lists the routes)"
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow")
        message = f"method {method} is not served at {request.url.path}"
        message += f" (use {allowed})" if allowed else ""
    else:
        message = f"{where}: {exc.detail}"
    body = RequestError(exc.status_code, message, code=_HTTP_CODES.get(exc.status_code)).body()
    if exc.status_code >= 500 and exc.status_code != 503:
        body["error"]["type"] = "server_error"
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


def _validation_error(errors) -> RequestError:
    """FastAPI's / pydantic's first complaint as one line, in the OpenAI error shape."""
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return bad_request(f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})",
                           code="invalid_json")
    where = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(where) or None
    if first.get("type") == "extra_forbidden":
        return bad_request(f"unknown field {param!r}", param, "unknown_field")
    if first.get("type") in ("model_attributes_type", "model_type"):  # FastAPI's / pydantic's name
        return bad_request("the body must be a JSON object", code="invalid_body")
    return bad_request(f"{param or 'body'}: {first.get('msg', 'invalid')}", param, "invalid_value")


# Helpers come before the class: @serve.ingress freezes a pickled copy of the FastAPI app (its
# routes are this class's methods) when the class is decorated, with the module's names of that
# moment; a helper defined below it is a NameError in the replica.
def _json_message(message: dict, limit: int) -> dict:
    if message.get("text") is None:
        raise bad_request("messages are JSON text frames; binary frames are not read", "type", "binary_message")
    if len(message["text"]) > limit // 4 and len(message["text"].encode()) > limit:
        raise too_large(len(message["text"].encode()), limit, "a message")
    try:
        data = json.loads(message["text"])
    except json.JSONDecodeError as exc:
        raise bad_request(f"a message is not valid JSON ({exc.msg})", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("a message must be a JSON object", code="invalid_body")
    return data


def _speech_request(data: bytes) -> SpeechRequest:
    try:
        return SpeechRequest.model_validate_json(data)
    except ValidationError as exc:
        raise _validation_error(exc.errors()) from None


def _reason(exc: RequestError) -> str:
    """The `reason` label of a refusal in qwen3_tts_rejected_total."""
    return {401: "unauthorized", 413: "too_large", 503: "busy"}.get(exc.status, "bad_request")


def _ws_code(exc: RequestError) -> int:
    """The close code a WebSocket gets for a refusal."""
    if exc.code == "shutting_down":
        return WS_GOING_AWAY
    return {503: WS_BUSY, 413: WS_TOO_BIG}.get(exc.status, WS_REFUSED)


def _rss_mb() -> float:
    """This replica's resident memory (psutil comes with Ray)."""
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, Qwen3TTSError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _refuse(ws: WebSocket, exc: RequestError, code: int) -> None:
    try:
        await ws.send_json({"type": "error", "error": exc.body()["error"]})
    except Exception:  # noqa: BLE001  (the client is gone: nothing to tell)
        pass
    await _close(ws, code, exc.message.encode()[:120].decode(errors="ignore"))  # a close reason holds 123 bytes


async def _close(ws: WebSocket, code: int, reason: str = "") -> None:
    if ws.application_state != WebSocketState.DISCONNECTED and ws.client_state != WebSocketState.DISCONNECTED:
        try:
            await ws.close(code=code, reason=reason)
        except Exception:  # noqa: BLE001
            pass


@serve.deployment
@serve.ingress(api)
class SpeechServer:
    def __init__(self, config: ServeConfig):
        self.config = config
        # The constructor loads and warms the engines: Ray routes requests to a replica only
        # once it returns, so a replica is never reachable before it can answer at full speed.
        self.pool = StreamPool.load(config.model, config.build_dir, config.backend, fallback=config.fallback,
                                        options=StreamOptions(max_text_chars=config.max_input_chars),
                                        warmup=config.warmup, capacity=config.capacity,
                                        max_waiting=config.max_waiting, wait_s=config.wait_s)
        self.voices = VoiceBook(config.model, config.build_dir, config.backend, config.voice_dir)
        self.metrics = ServeMetrics()
        self.metrics.set_live(0)
        self.node_id = ray.get_runtime_context().get_node_id()  # which machine answered (/health)
        self.drain = ReplicaDrain()
        if config.drain_signal:
            # The constructor runs on the replica's event loop: the task lives as long as the replica.
            self._drain_task = asyncio.get_running_loop().create_task(self.drain.follow(
                config.drain_signal, DRAIN_NAMESPACE, ray.get_runtime_context().get_actor_id(),
                live=lambda: self.pool.live, end_all=self.pool.end_all))

    def _check_open(self) -> None:
        """A server that is draining takes no new request (serve/drain.py)."""
        if self.drain.draining:
            raise RequestError(503, "this server is shutting down: retry (another replica, or this one once it is "
                                    "back)", code="shutting_down")

    def _admit(self, headers) -> None:
        """What every HTTP route but /health checks first: the server still takes requests, and the
        caller has the key."""
        self._check_open()
        check_key(bearer_token(headers.get("authorization")), self.config.api_key)

    def check_health(self):
        """Ray's own health check (every 10 s): a replica that answers is healthy; one whose
        process died or whose event loop hangs past the timeout is replaced. Readiness needs no
        check: the constructor returns only once the engines are warm."""

    # -- plain routes ----------------------------------------------------------------------------
    @api.get("/health")
    async def health(self):
        pool = self.pool
        if self.drain.draining:  # a load balancer stops sending here
            return JSONResponse({"status": "draining", "live_streams": pool.live}, status_code=503)
        return {"status": "ready", "model": self.config.served_model, "backend": pool.synth.backend_name,
                "node_id": self.node_id, "auth_required": self.config.api_key is not None,
                "capacity": pool.capacity, "live_streams": pool.live, "waiting": pool.waiting,
                "streams_served": self.metrics.served, "streams_cancelled": self.metrics.cancelled,
                "last_cancelled": self.metrics.last_cancelled, "rss_mb": _rss_mb(),
                "step_loop": asdict(pool.synth.steps.stats)}

    @api.get("/", include_in_schema=False)
    async def playground(self):
        """The playground page: open (it holds no data; what it fetches needs the key, if any)."""
        return HTMLResponse(PLAYGROUND_HTML, headers={"Cache-Control": "no-cache"})

    @api.get("/v1/voices")
    async def voices(self, request: Request):
        self._admit(request.headers)
        cfg = self.voices.config
        # "voices" as before; the rest for the playground: what the checkpoint speaks and takes
        return {"voices": self.voices.ids(), "model": self.config.served_model, "variant": cfg.variant,
                "languages": cfg.public_languages, "instructions": cfg.supports_instruct,
                "auth": self.config.api_key is not None}

    @api.get("/v1/models")
    async def models(self, request: Request):
        self._admit(request.headers)
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "qwen3-tts-trt"}
                                           for name in self.config.model_names]}

    # -- POST /v1/audio/speech ---------------------------------------------------------------------
    @api.post("/v1/audio/speech", openapi_extra=SPEECH_BODY)
    async def speech(self, request: Request):
        t0 = time.perf_counter()
        endpoint = "http"
        try:
            self._admit(request.headers)
            body = _speech_request(await read_body(request, self.config.max_body_bytes))
            fmt = self._check_speech(body)
            voice, params = await self._voice_and_params(body)
            stream = await self._open(body.input, voice, params)
        except RequestError as exc:
            self.metrics.reject(endpoint, _reason(exc))
            raise
        clock = PlaybackClock()
        stream.on_release.append(lambda s: self._done(endpoint, s, underruns=clock.underruns))
        # The status line waits for the first chunk (one frame): a request the engine refuses
        # then still gets its 4xx, not a 200 with an empty body.
        try:
            first = await stream.__anext__()
        except StopAsyncIteration:
            first = None
        except BaseException as exc:
            await stream.aclose()
            if error_kind(exc) == "refused":
                self.metrics.reject(endpoint, "bad_request")
                raise refused(exc) from None
            raise
        if first is not None:
            self.metrics.first_chunk(endpoint, time.perf_counter() - t0)
        headers = {"X-Sample-Rate": str(self.pool.sample_rate), "Cache-Control": "no-store"}
        return StreamingResponse(self._body(stream, first, fmt, clock), media_type=MEDIA_TYPES[fmt],
                                 headers=headers)

    def _check_speech(self, body: SpeechRequest) -> str:
        fmt = (body.response_format or "wav").lower()
        if fmt not in FORMATS:
            raise bad_request(f"response_format {body.response_format!r} is not served: use one of "
                              f"{', '.join(FORMATS)}", "response_format", "unsupported_format")
        if body.speed is not None and body.speed != 1.0:
            raise bad_request(f"speed {body.speed:g} is not supported: the model speaks at its own pace (1.0); "
                              "change the pace on the client", "speed", "unsupported_speed")
        if body.stream_format not in (None, "audio"):
            raise bad_request(f"stream_format {body.stream_format!r} is not served: the body streams raw audio "
                              "('audio')", "stream_format", "unsupported_stream_format")
        self._check_text(body.input)
        return fmt

    def _check_text(self, text: str) -> None:
        try:
            self.pool.synth.planner.check_text(text)  # limit: ServeConfig.max_input_chars
        except Qwen3TTSError as exc:
            raise refused(exc) from None

    async def _voice_and_params(self, fields: VoiceFields):
        if fields.model and fields.model not in self.config.model_names:
            raise bad_request(f"model {fields.model!r} is not served here; this server takes "
                              f"{', '.join(map(repr, self.config.model_names))} (GET /v1/models)", "model",
                              "model_not_found")
        try:
            voice = await self.voices.resolve(voice=fields.voice, language=fields.language,
                                              instructions=fields.instructions, task_type=fields.task_type,
                                              ref_audio=fields.ref_audio, ref_text=fields.ref_text,
                                              x_vector_only=fields.x_vector_only_mode)
            params = sampling_params(self.pool.config.sampling, greedy=fields.greedy, **fields.sampling())
            self.pool.check(voice, params)
        except Qwen3TTSError as exc:
            raise refused(exc) from None
        return voice, params

    async def _open(self, text, voice, params) -> PooledStream:
        try:
            stream = await self.pool.open(text, voice, params)
        except PoolBusy as exc:
            raise RequestError(503, str(exc), code="engine_busy", retry_after_s=exc.retry_after_s) from None
        self.metrics.set_live(self.pool.live)
        return stream

    async def _body(self, stream: PooledStream, first, fmt: str, clock: PlaybackClock):
        """The response body, encoded chunk by chunk. A client that disconnects cancels this
        generator (Serve cancels the request), and `stream.aclose()` then stops the engine at its
        next frame."""
        encoder = StreamEncoder(fmt, self.pool.sample_rate)
        try:
            if header := encoder.start():
                yield header
            if first is None:
                return
            clock.sent(first.seconds)
            if data := encoder.add(first.pcm16()):
                yield data
            async for chunk in stream:
                clock.sent(chunk.seconds)
                if data := encoder.add(chunk.pcm16()):
                    yield data
            if data := encoder.finish():
                yield data
        finally:  # an engine failure after the status line: the body ends short, and the metrics say so
            encoder.close()
            await stream.aclose()

    def _done(self, endpoint: str, stream: PooledStream, *, underruns: int = 0) -> None:
        """Accounting of a stream whose slot is free again (PooledStream.on_release)."""
        # a refused request is counted in rejected_total{reason="bad_request"}, not as an error
        was_refused = stream.error is not None and error_kind(stream.error) == "refused"
        self.metrics.finished(endpoint, stream.metrics, error=stream.error is not None and not was_refused,
                              refused=was_refused, underruns=underruns)
        self.metrics.set_live(self.pool.live)

    # -- WebSocket /v1/audio/speech/stream -----------------------------------------------------------
    @api.websocket("/v1/audio/speech/stream")
    async def speech_stream(self, ws: WebSocket):
        """{"type": "session.config", ...voice fields} first, then {"type": "input.text", "text": "..."}
        as the text is written, then {"type": "input.done"}. Out: {"type": "audio.start"}, binary PCM16
        chunks, then {"type": "session.done", "metrics": {...}}; {"type": "error", "error": {...}} and a
        close code when refused. Closing the socket ends the stream within one frame."""
        endpoint = "websocket"
        await ws.accept()
        try:
            self._check_open()  # the key may come in session.config: checked once that is read
            session = await self._session(ws)
            check_key(bearer_token(ws.headers.get("authorization")) or session.api_key, self.config.api_key)
            voice, params = await self._voice_and_params(session)
        except RequestError as exc:
            self.metrics.reject(endpoint, _reason(exc))
            await _refuse(ws, exc, _ws_code(exc))
            return
        except WebSocketDisconnect:
            return
        texts: asyncio.Queue = asyncio.Queue()

        async def fragments():
            while (fragment := await texts.get()) is not None:
                yield fragment

        try:
            stream = await self._open(fragments(), voice, params)
        except RequestError as exc:
            self.metrics.reject(endpoint, "busy")
            await _refuse(ws, exc, WS_BUSY)
            return
        stream.on_release.append(lambda s: self._done(endpoint, s))
        t0 = time.perf_counter()
        producer = asyncio.ensure_future(self._send_audio(ws, stream, endpoint, t0))
        # Ray does not cancel a handler that only sends: the client's close is seen by reading.
        receiver = asyncio.ensure_future(self._read_text(ws, texts))
        try:
            await asyncio.wait({producer, receiver}, return_when=asyncio.FIRST_COMPLETED)
        finally:  # the client left or broke the protocol, or the stream ended: stop the other side
            for task in (producer, receiver):
                task.cancel()
            await asyncio.gather(producer, receiver, return_exceptions=True)
            await stream.aclose()  # the engine is idle before the handler returns
        if not receiver.cancelled():  # the client ended the session first
            if isinstance(receiver.result(), RequestError):
                await _refuse(ws, receiver.result(), _ws_code(receiver.result()))
            return
        failure = None if producer.cancelled() else producer.exception()
        if failure is None:
            # ended at a frame by a shutdown's grace period: going away, not done
            await _close(ws, WS_GOING_AWAY if self.drain.expired() and not stream.finished else WS_DONE)
        elif isinstance(failure, RequestError):
            await _refuse(ws, failure, WS_REFUSED)
        else:
            await _refuse(ws, RequestError(500, _one_line(failure), code="engine_error"), WS_FAILED)

    async def _session(self, ws: WebSocket) -> SessionConfig:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        data = _json_message(message, self.config.max_body_bytes)
        if data.get("type", "session.config") != "session.config":
            raise bad_request(f"the first message must be session.config, not {data.get('type')!r}", "type")
        try:
            session = SessionConfig(**data)
        except ValidationError as exc:
            raise _validation_error(exc.errors()) from None
        if session.response_format != "pcm":
            raise bad_request("the WebSocket sends raw PCM16 chunks: response_format must be 'pcm'",
                              "response_format", "unsupported_format")
        return session

    async def _read_text(self, ws: WebSocket, texts: asyncio.Queue):
        """Client messages until the socket closes: text goes to the stream; returns why it stopped
        (a WebSocketDisconnect, or a RequestError for a message that breaks the protocol)."""
        chars, done, spoken = 0, False, False
        idle = self.config.text_idle_s
        while True:
            try:
                # Until input.done, a client that goes quiet would hold the slot for ever.
                message = await (ws.receive() if done else asyncio.wait_for(ws.receive(), idle))
            except asyncio.TimeoutError:
                texts.put_nowait(None)
                return RequestError(408, f"no text for {idle:g} s before input.done: the stream was ended to free "
                                    "its slot (send input.done when the text is complete)", param="type",
                                    code="text_timeout")
            if message["type"] == "websocket.disconnect":
                texts.put_nowait(None)
                return WebSocketDisconnect(message.get("code", 1000))
            try:
                data = _json_message(message, self.config.max_body_bytes)
                kind = data.get("type")
                if kind == "input.text":
                    text = data.get("text")
                    if not isinstance(text, str):
                        raise bad_request("input.text needs a string `text`", "text")
                    if done:
                        raise bad_request("input.text after input.done", "type")
                    chars += len(text)
                    if chars > self.config.max_input_chars:
                        raise refused(text_too_long(chars, self.config.max_input_chars), text_param="text")
                    if text:
                        texts.put_nowait(text)
                        spoken = spoken or bool(text.strip())
                elif kind == "input.done":
                    if not spoken:
                        raise refused(PromptError("text is empty: nothing to say", field="text", code="empty_input"),
                                      text_param="text")
                    if not done:
                        done = True
                        texts.put_nowait(None)
                else:
                    raise bad_request(f"unknown message type {kind!r}: input.text or input.done", "type")
            except RequestError as exc:
                texts.put_nowait(None)
                return exc

    async def _send_audio(self, ws: WebSocket, stream: PooledStream, endpoint: str, t0: float) -> None:
        await ws.send_json({"type": "audio.start", "format": "pcm", "sample_rate": self.pool.sample_rate,
                            "channels": 1, "sample_width": 2})
        first = True
        try:
            async for chunk in stream:
                if first:
                    self.metrics.first_chunk(endpoint, time.perf_counter() - t0)
                    first = False
                await ws.send_bytes(chunk.pcm16_bytes())
        except PromptError as exc:  # e.g. the text was empty after all
            raise refused(exc, text_param="text") from None
        finally:
            await stream.aclose()
        m = stream.metrics
        await ws.send_json({"type": "session.done", "metrics": m.to_dict() if m is not None else None})


def build_app(config: ServeConfig):
    """The Serve application for `serve.run(build_app(ServeConfig(model=...)))`."""
    config = config.resolved()
    return SpeechServer.options(**config.deployment_options()).bind(config)
