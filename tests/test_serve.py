"""The Ray Serve application (serve/), started for real on 127.0.0.1 with the tiny CustomVoice
checkpoint on ONNX Runtime, and spoken to only with real clients: the `openai` package, httpx and
`websockets`. Audio is compared sample for sample with a `Synthesizer` in this process (same
build, same seed), which is what the CLI's `say` runs."""

import asyncio
import contextlib
import json
import time

import numpy as np
import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
openai = pytest.importorskip("openai")
websockets = pytest.importorskip("websockets")
sf = pytest.importorskip("soundfile")

from qwen3_tts_trt.runtime.voice import Voice  # noqa: E402
from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer, to_pcm16  # noqa: E402
from bad_requests import CASES, refusal  # noqa: E402
from support import LIMITS, free_port, serving  # noqa: E402

TEXT = "Hello there! The server streams this sentence."
LONG = " ".join(["This sentence keeps the engine busy for a while, frame after frame."] * 6)
VOICE = "ryan"
MAX_INPUT = 3000  # the server's limit here, so an oversize request stays small
TEXT_IDLE = 6.0  # seconds a WebSocket may send no text before input.done (30 by default)
SLOTS = LIMITS.max_batch  # streams the replica runs at once: every KV row of the tests' build
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tiny_build):
    """One Ray cluster and one replica for the whole file (starting them takes most of its time)."""
    from qwen3_tts_trt.serve import ServeConfig

    metrics_port = free_port()
    config = ServeConfig(model=str(tiny_custom_voice), build_dir=str(tiny_build[0]), backend="onnx",
                         num_cpus=0.5, max_input_chars=MAX_INPUT, wait_s=1.0, text_idle_s=TEXT_IDLE,
                         capacity=SLOTS)
    with serving(config, metrics_port=metrics_port) as url:
        yield {"url": url, "ws": url.replace("http", "ws") + "/v1/audio/speech/stream",
               "model": config.served_model, "metrics": f"http://127.0.0.1:{metrics_port}/metrics",
               "checkpoint": str(tiny_custom_voice), "build": str(tiny_build[0])}


@pytest.fixture(scope="module")
def synth(tiny_custom_voice, tiny_build):
    """The reference: the engines the replica runs, in this process, int16 out as the wire carries."""
    return Synthesizer.open(tiny_custom_voice, tiny_build[0], "onnx")


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server["url"], timeout=60) as client:
        yield client


def _reference(synth, text=TEXT, *, seed=None, max_new_tokens=60, greedy=False) -> np.ndarray:
    params = (synth.greedy_params if greedy else synth.default_params)(max_new_tokens=max_new_tokens, seed=seed)
    return to_pcm16(synth.synthesize(text, Voice(speaker=VOICE), params))


def _idle(http, cancelled_before: int) -> dict:
    """/health once the cancelled stream has given its slot back (polled; never timed)."""
    for _ in range(400):
        health = http.get("/health").json()
        if health["live_streams"] == 0 and health["streams_cancelled"] > cancelled_before:
            return health
        time.sleep(0.05)
    raise AssertionError(f"the stream was not released: {health}")


# -- OpenAI speech API -----------------------------------------------------------------------------
def test_openai_client_streams_a_wav_equal_to_the_synthesizer_and_the_cli(server, synth, tmp_path):
    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    out = tmp_path / "speech.wav"
    with client.audio.speech.with_streaming_response.create(
            model=server["model"], voice=VOICE, input=TEXT, response_format="wav",
            extra_body={"seed": 7, "max_new_tokens": 60}) as response:
        assert response.headers["content-type"] == "audio/wav"
        assert response.headers.get("transfer-encoding") == "chunked"  # streamed, not sent whole
        response.stream_to_file(out)
    audio, rate = sf.read(out, dtype="int16")
    assert rate == 24000
    expected = _reference(synth, seed=7)
    assert len(expected) > 0
    np.testing.assert_array_equal(audio, expected)
    # ... and the CLI's file for the same text, voice and seed, to the last of its 16 bits: the CLI
    # hands float samples to libsndfile, whose float -> int16 is floor(x * 32768) (measured with
    # soundfile 0.13 / libsndfile 1.2.2), where the runtime's to_pcm16, which the server's PCM16
    # and the reference above use, is round(x * 32767).
    from qwen3_tts_trt.commands.main import main

    cli_wav = tmp_path / "cli.wav"
    assert main(["say", TEXT, "--speaker", VOICE, "--seed", "7", "--max-new-tokens", "60", "-q", "--no-warmup",
                 "-m", server["checkpoint"], "--build-dir", server["build"], "--backend", "onnx", "-o", str(cli_wav)]) == 0
    cli = sf.read(cli_wav, dtype="int16")[0]
    assert cli.shape == audio.shape
    assert np.abs(cli.astype(np.int32) - audio).max() <= 1


def test_pcm_is_raw_int16_equal_to_the_synthesizer(http, synth):
    # SGLang-Omni's `speaker` for `voice`, capitalized as in vLLM-Omni's examples
    body = {"model": "tiny-custom_voice-float32", "input": TEXT, "speaker": "Ryan", "response_format": "pcm",
            "greedy": True, "max_new_tokens": 60}
    chunks = []
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "audio/pcm"
        for part in r.iter_bytes():
            chunks.append(part)
    audio = np.frombuffer(b"".join(chunks), dtype="<i2")
    np.testing.assert_array_equal(audio, _reference(synth, greedy=True))


@pytest.mark.parametrize("fmt, media_type", [("mp3", "audio/mpeg"), ("opus", "audio/ogg"), ("aac", "audio/aac"),
                                               ("flac", "audio/flac")])
def test_openai_formats_decode_to_the_pcm_answers_duration(server, fmt, media_type):
    """Code written for OpenAI, unchanged but for base_url: its model name and any of its formats."""
    import io

    import av

    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    extra = {"seed": 4, "max_new_tokens": 60}
    pcm = client.audio.speech.create(model="tts-1", voice=VOICE, input=TEXT, response_format="pcm",
                                     extra_body=extra).content
    with client.audio.speech.with_streaming_response.create(model="gpt-4o-mini-tts", voice=VOICE, input=TEXT,
                                                            response_format=fmt, extra_body=extra) as response:
        assert response.headers["content-type"] == media_type
        assert response.headers.get("transfer-encoding") == "chunked"
        data = b"".join(response.iter_bytes())
    with av.open(io.BytesIO(data)) as container:  # decoded by the library that encoded it
        decoded_s = sum(f.samples for f in container.decode(audio=0)) / container.streams.audio[0].rate
    pcm_s = len(pcm) / 2 / 24000
    assert pcm_s > 0.5
    assert -0.01 <= decoded_s - pcm_s <= 0.16, (decoded_s, pcm_s)  # codec padding, under one 2-frame chunk


def test_an_encoded_body_leaves_before_the_audio_is_all_made(http):
    """The first mp3 bytes arrive while the engine still speaks: the client leaves then, and the
    stream is counted as cancelled (one that had ended would not be)."""
    before = http.get("/health").json()["streams_cancelled"]
    body = {"input": LONG * 4, "voice": VOICE, "response_format": "mp3", "seed": 1}
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        assert len(next(r.iter_raw())) > 0
    health = _idle(http, before)  # waits for the cancelled count to rise
    assert health["streams_cancelled"] == before + 1


def test_models_lists_every_served_name(http, server):
    names = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert names == [server["model"], "tts-1", "tts-1-hd", "gpt-4o-mini-tts"]


def test_http_disconnect_frees_the_engine_and_the_next_request_is_whole(http, synth):
    before = http.get("/health").json()["streams_cancelled"]
    body = {"input": LONG, "voice": VOICE, "response_format": "pcm", "seed": 1}
    with http.stream("POST", "/v1/audio/speech", json=body) as r:
        assert r.status_code == 200
        first = next(r.iter_raw())
        assert len(first) > 0
    # leaving the block closed the connection mid-stream
    health = _idle(http, before)
    assert health["last_cancelled"]["frames_after_cancel"] in (0, 1)  # stopped within one frame
    r = http.post("/v1/audio/speech", json={"input": TEXT, "voice": VOICE, "response_format": "pcm", "seed": 3,
                                            "max_new_tokens": 60})
    assert r.status_code == 200
    np.testing.assert_array_equal(np.frombuffer(r.content, dtype="<i2"), _reference(synth, seed=3))


# -- WebSocket ---------------------------------------------------------------------------------------
async def _drain(ws) -> list:
    """Every message until the server closes (websockets raises at a close code other than 1000)."""
    messages = []
    try:
        while True:
            messages.append(await ws.recv())
    except websockets.ConnectionClosed:
        return messages


async def _ws_speak(url: str, config: dict, fragments, *, done: bool = True):
    """(audio, final message, close code) of one WebSocket session."""
    pcm, final = [], None
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "session.config", **config}))
        for fragment in fragments:
            await ws.send(json.dumps({"type": "input.text", "text": fragment}))
        if done:
            await ws.send(json.dumps({"type": "input.done"}))
        for message in await _drain(ws):
            if isinstance(message, bytes):
                pcm.append(message)
            else:
                data = json.loads(message)
                if data["type"] in ("session.done", "error"):
                    final = data
        code = ws.close_code
    return np.frombuffer(b"".join(pcm), dtype="<i2"), final, code


async def test_websocket_incremental_text_equals_stream_text(server, synth):
    fragments = ["Hel", "lo there", "! The ser", "ver streams ", "this sen", "tence."]
    audio, final, code = await _ws_speak(server["ws"], {"voice": VOICE, "greedy": True, "max_new_tokens": 60},
                                         fragments)
    assert code == 1000 and final["type"] == "session.done"
    assert final["metrics"]["frames"] > 0 and final["metrics"]["ttfc_ms"] is not None
    params = synth.greedy_params(max_new_tokens=60)
    expected = np.concatenate([c.pcm16() for c in synth.stream_text(iter(fragments), Voice(speaker=VOICE), params)])
    np.testing.assert_array_equal(audio, expected)


async def test_websocket_close_frees_the_engine_and_the_next_stream_is_whole(server, synth, http):
    before = http.get("/health").json()["streams_cancelled"]
    async with websockets.connect(server["ws"]) as ws:
        await ws.send(json.dumps({"type": "session.config", "voice": VOICE, "seed": 1}))
        await ws.send(json.dumps({"type": "input.text", "text": LONG}))
        await ws.send(json.dumps({"type": "input.done"}))
        while not isinstance(await ws.recv(), bytes):  # audio.start, then the first chunk
            pass
    # the client closed mid-stream; nothing on the server sends to it any more
    health = await asyncio.to_thread(_idle, http, before)
    assert health["last_cancelled"]["frames_after_cancel"] in (0, 1)
    audio, final, code = await _ws_speak(server["ws"], {"voice": VOICE, "seed": 3, "max_new_tokens": 60}, [TEXT])
    assert code == 1000 and final["type"] == "session.done"
    params = synth.default_params(max_new_tokens=60, seed=3)
    expected = np.concatenate([c.pcm16() for c in synth.stream_text(iter([TEXT]), Voice(speaker=VOICE), params)])
    np.testing.assert_array_equal(audio, expected)


async def test_sixteen_concurrent_streams_each_equal_their_solo_audio(server, http, synth):
    """SLOTS requests at once on one replica: its step loop runs their frames in shared engine
    calls (streams joining and leaving at different frames), and each stream's audio equals the
    same request spoken alone, greedy and sampled."""
    def body(i):
        return {"input": f"Caller {i}: {TEXT}", "voice": VOICE, "response_format": "pcm",
                "max_new_tokens": 12 + 3 * (i % 5), **({"greedy": True} if i % 2 == 0 else {"seed": 40 + i})}

    before = http.get("/health").json()["step_loop"]
    async with httpx.AsyncClient(base_url=server["url"], timeout=120) as client:
        replies = await asyncio.gather(*(client.post("/v1/audio/speech", json=body(i)) for i in range(SLOTS)))
    after = http.get("/health").json()["step_loop"]
    for i, reply in enumerate(replies):
        assert reply.status_code == 200, reply.text
        b = body(i)
        params = (synth.greedy_params(max_new_tokens=b["max_new_tokens"]) if i % 2 == 0
                  else synth.default_params(max_new_tokens=b["max_new_tokens"], seed=b["seed"]))
        alone = np.concatenate([c.pcm16() for c in synth.stream(b["input"], Voice(speaker=VOICE), params)])
        np.testing.assert_array_equal(np.frombuffer(reply.content, np.int16), alone, err_msg=f"stream {i}")
    rows, calls = after["decode_rows"] - before["decode_rows"], after["decode_calls"] - before["decode_calls"]
    assert after["max_rows"] >= 4 and rows > 1.5 * calls, (rows, calls)  # the streams shared talker steps


async def test_busy_replica_refuses_with_503_and_close_1013(server, http):
    """Every slot is held by a WebSocket stream waiting for more text: a further request waits
    wait_s for one, then is refused clearly instead of queueing without end."""
    async def keep_talking(ws):  # a word now and then: a holder is never closed as a quiet client
        while True:
            await asyncio.sleep(TEXT_IDLE / 3)
            await ws.send(json.dumps({"type": "input.text", "text": "and "}))

    async with contextlib.AsyncExitStack() as stack:
        holders = [await stack.enter_async_context(websockets.connect(server["ws"])) for _ in range(SLOTS)]
        keepers = []
        for holder in holders:
            await holder.send(json.dumps({"type": "session.config", "voice": VOICE, "greedy": True,
                                          "max_new_tokens": 30}))
            await holder.send(json.dumps({"type": "input.text", "text": "Hello there, "}))
            assert json.loads(await holder.recv())["type"] == "audio.start"
            keepers.append(asyncio.ensure_future(keep_talking(holder)))
        r = await asyncio.to_thread(http.post, "/v1/audio/speech", json={"input": TEXT, "voice": VOICE})
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "engine_busy" and "busy" in r.json()["error"]["message"]
        _, final, code = await _ws_speak(server["ws"], {"voice": VOICE}, [TEXT])
        assert code == 1013 and final["error"]["code"] == "engine_busy"
        for keeper in keepers:
            keeper.cancel()
        for holder in holders:  # every text ends now: draining one at a time must not leave the rest quiet
            await holder.send(json.dumps({"type": "input.done"}))
        for holder in holders:
            assert any(isinstance(m, str) and json.loads(m)["type"] == "session.done" for m in await _drain(holder))
    r = http.post("/v1/audio/speech", json={"input": TEXT, "voice": VOICE, "max_new_tokens": 20})
    assert r.status_code == 200 and len(r.content) > 44


async def test_a_quiet_websocket_is_closed_and_its_slot_freed(server, http):
    async with websockets.connect(server["ws"]) as ws:
        await ws.send(json.dumps({"type": "session.config", "voice": VOICE, "greedy": True, "max_new_tokens": 30}))
        await ws.send(json.dumps({"type": "input.text", "text": "Hello there, "}))
        messages = await _drain(ws)  # then nothing more: the server gives up after TEXT_IDLE seconds
        assert ws.close_code == 1008
    error = next(json.loads(m) for m in messages if isinstance(m, str) and json.loads(m)["type"] == "error")
    assert error["error"]["code"] == "text_timeout"
    assert http.get("/health").json()["live_streams"] == 0
    assert http.post("/v1/audio/speech", json={"input": "Fine.", "voice": VOICE, "max_new_tokens": 10}).status_code == 200


# -- bad requests --------------------------------------------------------------------------------------
BAD = [
    ("empty input", {"input": "   ", "voice": VOICE}, "empty_input"),
    ("unknown voice", {"input": TEXT, "voice": "nobody"}, "unknown_voice"),
    ("oversize input", {"input": "word " * (MAX_INPUT // 4), "voice": VOICE}, "input_too_long"),
    ("unknown format", {"input": TEXT, "voice": VOICE, "response_format": "ogg"}, "unsupported_format"),
    ("speed", {"input": TEXT, "voice": VOICE, "speed": 1.25}, "unsupported_speed"),
    ("unknown field", {"input": TEXT, "voice": VOICE, "instruction": "slowly"}, "unknown_field"),
    ("missing input", {"voice": VOICE}, "invalid_value"),
    ("another model", {"model": "whisper-1", "input": TEXT, "voice": VOICE}, "model_not_found"),
    ("task type", {"input": TEXT, "voice": VOICE, "task_type": "Base"}, "task_type_mismatch"),
    ("clone on CustomVoice", {"input": TEXT, "ref_audio": "UklGRg==", "ref_text": "hi"}, "clone_unsupported"),
    ("unknown language", {"input": TEXT, "voice": VOICE, "language": "klingon"}, "unknown_language"),
    ("bad seed", {"input": TEXT, "voice": VOICE, "seed": -1}, "invalid_sampling"),
]


@pytest.mark.parametrize("body, code", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_request_gets_a_clear_400_and_the_server_keeps_serving(http, body, code):
    r = http.post("/v1/audio/speech", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == code and error["type"] == "invalid_request_error"
    assert error["message"] and "\n" not in error["message"]
    ok = http.post("/v1/audio/speech", json={"input": "Fine.", "voice": VOICE, "max_new_tokens": 10})
    assert ok.status_code == 200 and len(ok.content) > 44


SERVED_CASES = [name for name, case in CASES.items() if case.variant == "custom_voice"]  # the Base one: test_serve_cli


@pytest.fixture(scope="module")
def limited(tiny_custom_voice, tiny_build):
    """The runtime with the server's limits, whose refusals the server must pass on."""
    return Synthesizer.open(tiny_custom_voice, tiny_build[0], "onnx", options=StreamOptions(max_text_chars=MAX_INPUT))


def _body_of(case) -> dict:
    fields = dict(input=case.text, voice=case.speaker, language=case.language, instructions=case.instruct,
                  max_new_tokens=10, **case.sampling)
    return {k: v for k, v in fields.items() if v is not None}


@pytest.mark.parametrize("name", SERVED_CASES)
def test_the_bad_request_table_gets_the_runtimes_message_in_a_400(http, limited, name):
    case = CASES[name]
    expected = refusal(limited, case)
    r = http.post("/v1/audio/speech", json=_body_of(case))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["message"], error["code"], error["type"]) == (str(expected), case.code, "invalid_request_error")
    assert error["param"] == {"text": "input"}.get(expected.field, expected.field)


@pytest.mark.parametrize("name", SERVED_CASES)
async def test_the_bad_request_table_gets_the_runtimes_message_and_close_1008(server, limited, name):
    case = CASES[name]
    expected = refusal(limited, case)
    config = {k: v for k, v in _body_of(case).items() if k != "input"}
    async with websockets.connect(server["ws"]) as ws:
        await ws.send(json.dumps({"type": "session.config", **config}))
        await ws.send(json.dumps({"type": "input.text", "text": case.text}))
        await ws.send(json.dumps({"type": "input.done"}))
        errors = [json.loads(m) for m in await _drain(ws) if isinstance(m, str)]
        assert ws.close_code == 1008
    error = next(e for e in errors if e["type"] == "error")["error"]
    assert (error["message"], error["code"]) == (str(expected), case.code)


def test_malformed_json_gets_a_400(http):
    for content in (b'{"input": "hi", ', b"[1, 2]", b"not json"):
        r = http.post("/v1/audio/speech", content=content, headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("invalid_json", "invalid_body")


def test_openai_client_raises_on_a_refused_request(server):
    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="unknown speaker .nobody."):
        with client.audio.speech.with_streaming_response.create(model=server["model"], voice="nobody", input=TEXT):
            pass


@pytest.mark.parametrize("messages, code", [
    (["not json"], "invalid_json"),
    ([{"type": "session.config", "voice": "nobody"}], "unknown_voice"),
    ([{"type": "session.config", "voice": VOICE, "response_format": "wav"}], "unsupported_format"),
    ([{"type": "session.config", "voice": VOICE}, {"type": "input.text", "text": "x" * (MAX_INPUT + 1)}],
     "input_too_long"),
    ([{"type": "session.config", "voice": VOICE}, {"type": "input.speak"}], None),
    ([{"type": "session.config", "voice": VOICE}, {"type": "input.text", "text": "  "}, {"type": "input.done"}],
     "empty_input"),
], ids=["malformed", "unknown voice", "format", "oversize", "unknown message", "empty text"])
async def test_websocket_refusals_say_why_and_close_1008(server, messages, code):
    async with websockets.connect(server["ws"]) as ws:
        for m in messages:
            await ws.send(m if isinstance(m, str) else json.dumps(m))
        errors = [json.loads(m) for m in await _drain(ws) if isinstance(m, str)]
        assert ws.close_code == 1008
    error = next(e for e in errors if e["type"] == "error")["error"]
    assert error["message"] and (code is None or error["code"] == code)
    audio, final, close = await _ws_speak(server["ws"], {"voice": VOICE, "max_new_tokens": 10}, ["Fine."])
    assert close == 1000 and len(audio) > 0


def test_back_to_back_requests_leave_memory_flat(http):
    """200 requests one after another, every 10th one dropped mid-stream: the replica's memory
    after them is where it was after the first 20 (streams, chunks and metrics are not kept)."""
    body = {"input": "Short one.", "voice": VOICE, "response_format": "pcm", "max_new_tokens": 4}

    def run(n):
        for i in range(n):
            if i % 10 == 9:
                with http.stream("POST", "/v1/audio/speech", json=dict(body, max_new_tokens=200)) as r:
                    next(r.iter_raw())
            else:
                assert http.post("/v1/audio/speech", json=body).status_code == 200

    run(20)
    before = http.get("/health").json()["rss_mb"]
    run(200)
    after = http.get("/health").json()
    assert after["rss_mb"] - before < 25, (before, after["rss_mb"])


def test_underruns_are_chunks_sent_after_the_audio_before_them_ran_out():
    from qwen3_tts_trt.serve.metrics import PlaybackClock

    clock = PlaybackClock()
    clock.sent(0.08, now=10.0)  # playback starts: 80 ms of audio
    clock.sent(0.16, now=10.05)  # in time (50 ms < 80 ms played)
    clock.sent(0.32, now=10.30)  # 300 ms > 240 ms sent before it: the listener heard silence
    clock.sent(0.80, now=10.50)  # 500 ms < 560 ms: in time again
    assert clock.underruns == 1


def test_app_builder_args_become_a_config():
    """`serve run qwen3_tts_trt.serve:app_builder key=value` and serveConfigV2 pass strings."""
    from qwen3_tts_trt.serve import ServeConfig

    config = ServeConfig.from_args({"model": "m", "replicas": "2", "num_gpus": "1", "fallback": "true", "wait_s": 0.5})
    assert (config.replicas, config.num_gpus, config.fallback, config.wait_s) == (2, 1.0, True, 0.5)
    with pytest.raises(ValueError, match="unknown ServeConfig arguments: replica"):
        ServeConfig.from_args({"model": "m", "replica": "2"})


# -- voices, models, health ------------------------------------------------------------------------------
def test_voices_models_and_health(http, server, synth):
    voices = http.get("/v1/voices").json()["voices"]
    assert voices == list(synth.config.speakers) and VOICE in voices
    assert http.get("/v1/models").json()["data"][0]["id"] == server["model"]
    health = http.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ready" and health.json()["backend"] == "onnx"
    assert health.json()["capacity"] == SLOTS


def test_prometheus_metrics_reach_rays_metrics_port(server, http):
    """TTFC, xRT, live streams and stream ends, exported by Ray's metrics agent (polled: Ray
    pushes them every few seconds)."""
    assert http.post("/v1/audio/speech", json={"input": "Fine.", "voice": VOICE, "max_new_tokens": 10}).status_code == 200
    wanted = ("ray_qwen3_tts_ttfc_seconds_count", "ray_qwen3_tts_xrt_count", "ray_qwen3_tts_live_streams",
              "ray_qwen3_tts_streams_total", "ray_qwen3_tts_rejected_total")
    for _ in range(120):
        text = httpx.get(server["metrics"], timeout=10).text
        if all(name in text for name in wanted):
            break
        time.sleep(0.5)
    missing = [name for name in wanted if name not in text]
    assert not missing, f"not exported: {missing}"
