"""`qwen3-tts-trt serve` told to stop, as `docker stop`, systemd and Kubernetes tell it (SIGTERM)
and as a terminal does (Ctrl-C, SIGINT): it stops taking requests, lets the streams in flight
finish within the grace period (`--drain-seconds`) and ends the rest at a frame, then exits 0
with no traceback or stack dump and no process of its session left behind."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")

from support import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FRAME_BYTES = 1920 * 2  # one 80 ms frame of 24 kHz PCM16
LONG = "This is a long sentence that keeps the model busy for a while. " * 30
SHORT = "This sentence ends well within the grace period."
# `slow`: each case starts Ray in a process of its own (~40 s on 2 cores).
pytestmark = [pytest.mark.slow, pytest.mark.serve, pytest.mark.timeout(400)]


def _session_processes(sid: int) -> list[str]:
    out = subprocess.run(["ps", "-e", "-o", "sid=,pid=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if line.split(None, 1)[0] == str(sid)]


def _start(checkpoint, build, port: int, drain_s: float, log) -> subprocess.Popen:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    # A session of its own, as a service manager starts it: whatever it leaves behind is found by
    # its session id. Ctrl-C's default disposition, as from a terminal.
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwen3_tts_trt.commands", "serve", "-m", str(checkpoint), "--build-dir", str(build),
         "--backend", "onnx", "--port", str(port), "--num-cpus", "0.5", "--drain-seconds", str(drain_s)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for _ in range(600):  # polled, never timed: start-up is Ray's plus the warm-up
        log.seek(0)
        output = log.read()
        if proc.poll() is not None:
            pytest.fail(f"serve exited with {proc.returncode}:\n{output[-3000:]}")
        # its "serving" line, not /health: a replica answers a moment before the command is ready
        # to drain (until then a signal stops it at once, as during the warm-up)
        if any(line.startswith("serving ") for line in output.splitlines()):
            return proc
        time.sleep(0.5)
    pytest.fail("serve did not come up")


async def _http_stream(url: str, text: str, first_bytes: asyncio.Event) -> bytes:
    # max_new_tokens caps each sentence (the random tiny model rarely ends one itself)
    body = {"input": text, "voice": "ryan", "response_format": "pcm", "seed": 1, "max_new_tokens": 300}
    parts = []
    async with httpx.AsyncClient(timeout=120) as client:
        async with client.stream("POST", url + "/v1/audio/speech", json=body) as r:
            assert r.status_code == 200
            async for part in r.aiter_raw():
                parts.append(part)
                first_bytes.set()
    return b"".join(parts)


async def _waiting_websocket(ws_url: str, opened: asyncio.Event):
    """A conversation whose text is still being written when the server stops: (close code, audio)."""
    pcm = []
    async with websockets.connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "session.config", "voice": "ryan", "seed": 1}))
        await ws.send(json.dumps({"type": "input.text", "text": "The rest of this text never comes, "}))
        opened.set()
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    pcm.append(message)
        except websockets.ConnectionClosed:
            pass
        return ws.close_code, b"".join(pcm)


# SIGTERM: a 2 s grace period cuts 30 sentences short (~30 s of work); SIGINT: a minute lets one end.
@pytest.mark.parametrize("sig, drain_s, text", [(signal.SIGTERM, 2.0, LONG), (signal.SIGINT, 60.0, SHORT)],
                         ids=["sigterm", "sigint"])
async def test_stop_drains_the_streams_in_flight_and_leaves_nothing_behind(tiny_custom_voice, tiny_build, tmp_path,
                                                                          sig, drain_s, text):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "serve.log", "w+") as log:
        proc = _start(tiny_custom_voice, tiny_build[0], port, drain_s, log)
        try:
            first_bytes, opened = asyncio.Event(), asyncio.Event()
            stream = asyncio.ensure_future(_http_stream(url, text, first_bytes))
            waiting = asyncio.ensure_future(_waiting_websocket(url.replace("http", "ws") + "/v1/audio/speech/stream",
                                                               opened)) if drain_s < 10 else None
            await asyncio.wait_for(first_bytes.wait(), 120)
            if waiting:
                await asyncio.wait_for(opened.wait(), 60)
            stopped_at = time.monotonic()
            proc.send_signal(sig)
            # while it drains, it takes no new request: /health says so, a request gets 503
            async with httpx.AsyncClient(timeout=30) as client:
                for _ in range(100):
                    health = await client.get(url + "/health")
                    if health.status_code == 503:
                        break
                    await asyncio.sleep(0.02)
                assert health.json()["status"] == "draining"
                refused = await client.post(url + "/v1/audio/speech", json={"input": "Hello.", "voice": "ryan"})
                assert refused.status_code == 503 and refused.headers["retry-after"]
                assert refused.json()["error"]["code"] == "shutting_down"
            audio = await asyncio.wait_for(stream, 120)
            code = await asyncio.to_thread(proc.wait, drain_s + 10 + 20)
            took = time.monotonic() - stopped_at
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        log.seek(0)
        output = log.read()
    assert code == 0, output[-3000:]
    assert took < drain_s + 10 + 10, f"stopping took {took:.1f} s"
    for sign in ("Traceback", "Aborted", "SIGTERM received at"):
        assert sign not in output, output[-3000:]
    assert any(line.startswith("stopped:") for line in output.splitlines()), output[-3000:]
    # the stream in flight ended whole (SIGINT: a minute of grace) or at a frame (SIGTERM: 2 s)
    assert len(audio) > 0 and len(audio) % FRAME_BYTES == 0
    if waiting:
        ws_code, _ = await waiting
        assert ws_code == 1001  # going away: ended by the grace period
        assert "ended at a frame after the 2 s grace period" in output
    else:
        assert "every stream finished" in output
    time.sleep(1)
    assert _session_processes(proc.pid) == []
