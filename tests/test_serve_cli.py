"""`qwen3-tts-trt serve` as a user starts it: a subprocess with its own Ray on this machine,
serving the tiny Base checkpoint on 127.0.0.1. Voices are cloned from reference audio sent with
the request (vLLM-Omni's `ref_audio` + `ref_text`) and taken from the voice folder by name; the
audio equals a `Synthesizer` speaking the same voice in this process. It runs with `--haproxy`
(Serve's HAProxy in place of its Python proxy). Ctrl-C stops the server."""

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

from qwen3_tts_trt.runtime.stream import Synthesizer, to_pcm16  # noqa: E402
from qwen3_tts_trt.runtime.voice import VoiceMaker  # noqa: E402
from bad_requests import CASES, refusal  # noqa: E402
from support import REF_TEXT, write_wav  # noqa: E402

TEXT = "A cloned voice speaks through the server."
ROOT = Path(__file__).resolve().parent.parent
# `slow`: a `qwen3-tts-trt serve` process of its own starts Ray again (~1.5 min for the file), so
# it runs in CI's slow step; the default run keeps test_serve.py (every route, in-process Ray).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def base_server(tiny_base, tiny_base_build, tmp_path_factory):
    build = tiny_base_build[0]
    work = tmp_path_factory.mktemp("serve-cli")
    voices = work / "voices"
    voices.mkdir()
    ref = write_wav(work / "ref.wav", seconds=2.0, rate=16000)
    maker = VoiceMaker.open(tiny_base, build, "onnx")
    maker.make(str(ref), REF_TEXT).save(voices / "alice.voice")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # RAY_AUTH_MODE=disabled: no token file written into the home folder by a throwaway test cluster.
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    log = open(work / "serve.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen3_tts_trt.commands", "serve", "-m", str(tiny_base), "--build-dir", str(build),
         "--backend", "onnx", "--port", str(port), "--num-cpus", "0.5", "--voice-dir", str(voices),
         "--haproxy"],  # Serve's HAProxy mode here; tests/test_serve.py runs the default Python proxy
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # polled, never timed: start-up is Ray's plus the warm-up
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"serve exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if httpx.get(url + "/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        yield {"url": url, "proc": proc, "ref": ref, "maker": maker, "voices": voices, "log": log}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


@pytest.fixture(scope="module")
def synth(tiny_base, tiny_base_build):
    return Synthesizer.open(tiny_base, tiny_base_build[0], "onnx")


def _speak(url: str, **fields) -> httpx.Response:
    body = {"input": TEXT, "response_format": "pcm", "seed": 5, "max_new_tokens": 50, **fields}
    return httpx.post(url + "/v1/audio/speech", json=body, timeout=120)


def test_voices_lists_the_voice_folder(base_server):
    voices = httpx.get(base_server["url"] + "/v1/voices").json()
    assert voices["voices"] == ["alice"]
    assert voices["variant"] == "base" and voices["auth"] is False  # what the playground page reads too


def test_clone_from_ref_audio_equals_the_synthesizer(base_server, synth):
    data = base64.b64encode(Path(base_server["ref"]).read_bytes()).decode()
    for ref_audio in (data, "data:audio/wav;base64," + data):  # the second one is encoded once, then cached
        r = _speak(base_server["url"], task_type="Base", ref_audio=ref_audio, ref_text=REF_TEXT)
        assert r.status_code == 200, r.text
        voice = base_server["maker"].make(str(base_server["ref"]), REF_TEXT)
        expected = to_pcm16(synth.synthesize(TEXT, voice, synth.default_params(seed=5, max_new_tokens=50)))
        np.testing.assert_array_equal(np.frombuffer(r.content, dtype="<i2"), expected)


def test_voice_from_the_folder_by_name(base_server, synth):
    from qwen3_tts_trt.runtime.voice import Voice

    r = _speak(base_server["url"], voice="alice")
    assert r.status_code == 200, r.text
    voice = Voice.load(base_server["voices"] / "alice.voice", synth.config)
    expected = to_pcm16(synth.synthesize(TEXT, voice, synth.default_params(seed=5, max_new_tokens=50)))
    np.testing.assert_array_equal(np.frombuffer(r.content, dtype="<i2"), expected)


@pytest.mark.parametrize("fields, code", [
    ({}, "voice_required"),
    ({"voice": "bob"}, "voice_required"),
    ({"ref_audio": "not base64!", "ref_text": REF_TEXT}, "ref_audio_not_base64"),
    ({"ref_audio": "/etc/passwd", "ref_text": REF_TEXT}, "ref_audio_not_inline"),
    ({"ref_audio": "https://example.com/a.wav", "ref_text": REF_TEXT}, "ref_audio_not_inline"),
    ({"ref_audio": base64.b64encode(b"RIFF....").decode(), "ref_text": REF_TEXT}, "ref_audio_unreadable"),
    ({"task_type": "CustomVoice", "voice": "alice"}, "task_type_mismatch"),
], ids=["no voice", "unknown voice", "not base64", "a path", "a URL", "not audio", "task type"])
def test_clone_requests_that_cannot_work_get_a_400(base_server, fields, code):
    r = _speak(base_server["url"], **fields)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


def test_an_instruct_this_checkpoint_ignores_gets_the_runtimes_message_in_a_400(base_server, synth):
    """The Base row of the bad-request table (tests/bad_requests.py); the others: test_serve.py."""
    from qwen3_tts_trt.runtime.voice import Voice

    case = CASES["instruct ignored by the checkpoint"]
    expected = refusal(synth, case, clone=Voice.load(base_server["voices"] / "alice.voice", synth.config))
    r = _speak(base_server["url"], voice="alice", instructions=case.instruct)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error["message"], error["code"], error["param"]) == (str(expected), case.code, "instructions")


def test_ctrl_c_stops_the_server(base_server):
    proc = base_server["proc"]
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 0
    base_server["log"].seek(0)
    assert "serving" in base_server["log"].read()
