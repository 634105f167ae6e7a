"""The playground page against a real server with an API key and a Base checkpoint (tiny, ONNX
Runtime), in the system's Chromium driven by Playwright: the page asks for the key before it
fetches anything, shows a wrong key's refusal, and with the right key clones a voice from a
recording the user picks and speaks with it. Every sample it plays is compared with
POST /v1/audio/speech's answer for the same clone request. Skipped, with the reason, where
Playwright or Chromium cannot be had."""

import base64

import numpy as np
import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

from support import REF_TEXT, serving, write_wav  # noqa: E402

KEY = "sk-playground-test"
TEXT = "Hello in a voice cloned in the browser."
SEED, MAX_NEW_TOKENS = 7, 30
pytestmark = [pytest.mark.serve, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server(browser, tiny_base, tiny_base_build):
    from qwen3_tts_trt.serve import ServeConfig

    config = ServeConfig(model=str(tiny_base), build_dir=str(tiny_base_build[0]), backend="onnx", num_cpus=0.5,
                         api_key=KEY, warmup=False)
    with serving(config, app_name="qwen3-tts-playground-key") as url:
        yield url


def test_the_page_asks_for_the_key_and_speaks_in_a_voice_cloned_from_a_picked_file(browser, server, tmp_path):
    recording = write_wav(tmp_path / "me.wav", seconds=3.0, rate=16000).read_bytes()
    with httpx.Client(base_url=server, timeout=60) as http:
        assert http.get("/").status_code == 200  # the page itself is open: it holds no data
        assert http.get("/health").json()["auth_required"] is True
        assert http.get("/v1/voices").status_code == 401
        expected = http.post("/v1/audio/speech", headers={"Authorization": f"Bearer {KEY}"}, json={
            "input": TEXT, "language": "auto", "response_format": "pcm", "seed": SEED,
            "max_new_tokens": MAX_NEW_TOKENS, "ref_audio": base64.b64encode(recording).decode(),
            "ref_text": REF_TEXT})
        assert expected.status_code == 200, expected.text
    expected = np.frombuffer(expected.content, dtype="<i2")

    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server + "/")
    page.wait_for_selector("#keyPanel", state="visible")
    page.fill("#apiKey", "wrong")
    page.click("#keyButton")
    page.wait_for_selector("#error.shown")
    assert "API key" in page.inner_text("#error")
    page.fill("#apiKey", KEY)
    page.click("#keyButton")
    page.wait_for_function("() => window.playground.ready", timeout=30_000)
    assert page.is_visible("#clonePanel")  # a Base checkpoint
    page.set_input_files("#cloneFile", files=[{"name": "me.wav", "mimeType": "audio/wav", "buffer": recording}])
    page.fill("#cloneText", REF_TEXT)
    page.click("#cloneButton")
    page.wait_for_function("() => document.getElementById('voice').value === '__clone__'")  # the file is read async
    page.fill("#seed", str(SEED))
    page.fill("#maxTokens", str(MAX_NEW_TOKENS))
    page.fill("#text", TEXT)
    page.click("#speak")
    page.wait_for_function("() => window.playground.last && window.playground.last.done", timeout=60_000)
    last = page.evaluate("window.playground.last")
    assert last["error"] is None, last
    assert last["samples"] == len(expected) > 0 and last["played_samples"] == last["samples"], last
    assert problems == []
    page.close()
