"""What the server checks before it reads a request: the API key (`serve --api-key`) and the size of
a body or a WebSocket message. A server of its own on 127.0.0.1 (tiny CustomVoice, ONNX Runtime),
spoken to by the `openai` package, httpx and `websockets`."""

import base64
import json

import numpy as np
import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
websockets = pytest.importorskip("websockets")

from qwen3_tts_trt.serve.guard import MAX_BODY_BYTES, bearer_token, check_key  # noqa: E402
from qwen3_tts_trt.serve.errors import RequestError  # noqa: E402
from support import serving  # noqa: E402

KEY = "sk-test-0123456789"
LIMIT = 256 * 1024  # this server's body and message limit, small so an oversize request stays cheap
VOICE = "ryan"
TEXT = "The key opens the door."
pytestmark = [pytest.mark.serve, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tiny_build):
    from qwen3_tts_trt.serve import ServeConfig

    # one stream slot, as a default build (`build.sh` --max-batch 1) gives, and the default waiting room
    config = ServeConfig(model=str(tiny_custom_voice), build_dir=str(tiny_build[0]), backend="onnx", num_cpus=0.5,
                         api_key=KEY, max_body_bytes=LIMIT, warmup=False, capacity=1)
    with serving(config, app_name="qwen3-tts-guard") as url:
        yield {"url": url, "ws": url.replace("http", "ws") + "/v1/audio/speech/stream", "model": config.served_model}


def _openai(server, key):
    return openai.OpenAI(base_url=server["url"] + "/v1", api_key=key, max_retries=0)


def _speak(client, model):
    return client.audio.speech.create(model=model, voice=VOICE, input=TEXT, response_format="pcm",
                                      extra_body={"seed": 2, "max_new_tokens": 30})


# -- the API key -----------------------------------------------------------------------------------
@pytest.mark.parametrize("key, code", [("wrong-key", "invalid_api_key"), (KEY + "x", "invalid_api_key"),
                                       ("", "missing_api_key")], ids=["wrong", "longer", "missing"])
def test_openai_client_without_the_key_gets_401_in_openais_shape(server, key, code):
    if key:
        client = _openai(server, key)
    else:  # the openai client will not go without a key: a bare request
        r = httpx.post(server["url"] + "/v1/audio/speech", json={"input": TEXT, "voice": VOICE})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == code
        return
    with pytest.raises(openai.AuthenticationError) as caught:
        _speak(client, server["model"])
    assert caught.value.status_code == 401
    error = caught.value.body
    assert error["code"] == code and error["type"] == "invalid_request_error" and error["message"]


def test_openai_client_with_the_key_gets_audio(server):
    audio = np.frombuffer(_speak(_openai(server, KEY), server["model"]).content, dtype="<i2")
    assert len(audio) > 0 and len(audio) % 1920 == 0


@pytest.mark.parametrize("path", ["/v1/voices", "/v1/models"])
def test_every_route_but_health_needs_the_key(server, path):
    assert httpx.get(server["url"] + path).status_code == 401
    assert httpx.get(server["url"] + path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(server["url"] + "/health").status_code == 200  # open: a load balancer's probe has no key


async def _ws_session(server, config: dict, headers=None):
    """(close code, error message or None, audio bytes) of one WebSocket session."""
    pcm, error = [], None
    async with websockets.connect(server["ws"], additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "session.config", "voice": VOICE, "seed": 2, "max_new_tokens": 30,
                                  **config}))
        try:  # a refused session may be closed before these arrive
            await ws.send(json.dumps({"type": "input.text", "text": TEXT}))
            await ws.send(json.dumps({"type": "input.done"}))
            async for message in ws:
                if isinstance(message, bytes):
                    pcm.append(message)
                elif json.loads(message)["type"] == "error":
                    error = json.loads(message)["error"]
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, error, b"".join(pcm)


async def test_websocket_without_the_key_is_closed_with_1008(server):
    code, error, audio = await _ws_session(server, {})
    assert (code, error["code"], audio) == (1008, "missing_api_key", b"")
    code, error, audio = await _ws_session(server, {"api_key": "wrong"})
    assert (code, error["code"], audio) == (1008, "invalid_api_key", b"")


@pytest.mark.parametrize("how", ["header", "first_message"])
async def test_websocket_with_the_key_gets_audio(server, how):
    if how == "header":
        code, error, audio = await _ws_session(server, {}, headers={"Authorization": f"Bearer {KEY}"})
    else:  # a browser cannot set headers on a WebSocket
        code, error, audio = await _ws_session(server, {"api_key": KEY})
    assert code == 1000 and error is None and len(audio) > 0


def test_key_comparison_rules():
    check_key(None, None)
    check_key("anything", None)
    check_key(KEY, KEY)
    for given in (None, "", KEY[:-1], KEY + " ", KEY.upper()):
        with pytest.raises(RequestError) as caught:
            check_key(given, KEY)
        assert caught.value.status == 401
    assert bearer_token(f"Bearer {KEY}") == KEY and bearer_token(f"bearer  {KEY} ") == KEY
    assert bearer_token(f"Basic {KEY}") is None and bearer_token(None) is None


# -- limits before parsing -------------------------------------------------------------------------
def _rss(server) -> float:
    return httpx.get(server["url"] + "/health").json()["rss_mb"]


def _post_oversize(server, mib: int, declared: bool) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(mib * 2**20)

    def body():  # made as it is sent: the test holds no copy of it
        for _ in range(mib):
            yield b"a" * 2**20

    return httpx.post(server["url"] + "/v1/audio/speech", content=body(), headers=headers, timeout=120)


@pytest.mark.parametrize("declared", [True, False], ids=["content_length", "chunked"])
def test_oversize_body_gets_413_before_the_replica_reads_it(server, declared):
    _post_oversize(server, 16, declared)  # the allocator's first growth for a request is not the body's
    before = _rss(server)
    r = _post_oversize(server, 256, declared)
    assert r.status_code == 413, r.text
    error = r.json()["error"]
    assert error["code"] == "request_too_large" and str(LIMIT) in error["message"]
    assert _rss(server) - before < 64, "the replica's memory grew with the body it refused"
    # ... and a body under the limit is read as usual
    r = httpx.post(server["url"] + "/v1/audio/speech", headers={"Authorization": f"Bearer {KEY}"},
                   json={"input": TEXT, "voice": VOICE, "response_format": "pcm", "max_new_tokens": 10})
    assert r.status_code == 200


async def test_oversize_websocket_message_is_closed_with_1009(server):
    code, error, audio = await _ws_session(server, {"api_key": KEY, "instructions": "x" * (LIMIT + 1)})
    assert (code, error["code"], audio) == (1009, "request_too_large", b"")


def test_default_body_limit_fits_the_largest_reference_recording_a_clone_accepts():
    from qwen3_tts_trt.serve.config import ServeConfig
    from qwen3_tts_trt.serve.voices import MAX_REF_AUDIO_BYTES

    largest = json.dumps({"input": "\u2028" * ServeConfig(model="m").max_input_chars, "voice": "x" * 64,
                          "ref_text": "\u2028" * 2000,
                          "ref_audio": "data:audio/wav;base64," + base64.b64encode(bytes(MAX_REF_AUDIO_BYTES)).decode()})
    assert len(largest.encode()) <= MAX_BODY_BYTES == ServeConfig(model="m").max_body_bytes


# -- the waiting room ------------------------------------------------------------------------------
def test_eight_concurrent_openai_clients_on_one_slot_all_get_whole_audio(server):
    """Eight conversations at once on a one-slot replica: they wait their turn (the wait each can
    expect is well within the default 20 s), none is turned away with a 503."""
    from concurrent.futures import ThreadPoolExecutor

    def one(seed):
        reply = _openai(server, KEY).audio.speech.create(
            model="tts-1", voice=VOICE, input=TEXT, response_format="pcm",
            extra_body={"seed": seed, "max_new_tokens": 30})
        return np.frombuffer(reply.content, dtype="<i2")

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(one, range(8)))
    assert all(len(a) > 0 and len(a) % 1920 == 0 for a in replies)
    assert [len(a) for a in replies] == [len(one(seed)) for seed in range(8)]  # whole: as long as alone
