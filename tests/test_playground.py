"""The playground page at `/`, in a real browser: the system's Chromium (headless) driven by
Playwright, against a server of its own on 127.0.0.1 (tiny CustomVoice, ONNX Runtime). The page
fills its pickers from GET /v1/voices, speaks over the WebSocket and plays each chunk with the
Web Audio API; every sample it received and played is compared with POST /v1/audio/speech's
answer for the same request. A screenshot goes to out/playground.png (a CI artifact).

Skipped, with the reason, where Playwright or Chromium cannot be had (`pip install playwright`;
Debian: `apt-get install chromium`; never `playwright install`, which downloads browsers)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

from support import serving  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VOICE = "ryan"
TEXT = "Hello from the playground page."
SEED, MAX_NEW_TOKENS = 7, 30
TYPED = "Typed as I go."
pytestmark = [pytest.mark.serve, pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def server(browser, tiny_custom_voice, tiny_build):
    from qwen3_tts_trt.serve import ServeConfig

    config = ServeConfig(model=str(tiny_custom_voice), build_dir=str(tiny_build[0]), backend="onnx", num_cpus=0.5)
    with serving(config, app_name="qwen3-tts-playground") as url:
        yield url


def _finished(page, n: int) -> dict:
    """window.playground.last once utterance `n` is over (its audio played, its session closed)."""
    page.wait_for_function(f"() => window.playground.last && window.playground.last.n === {n} "
                           "&& window.playground.last.done", timeout=60_000)
    return page.evaluate("window.playground.last")


def test_the_page_speaks_and_plays_every_sample_the_api_sends(browser, server):
    with httpx.Client(base_url=server, timeout=60) as http:
        page_html = http.get("/")
        assert page_html.status_code == 200 and page_html.headers["content-type"].startswith("text/html")
        assert "http://" not in page_html.text and "https://" not in page_html.text  # nothing from elsewhere
        info = http.get("/v1/voices").json()
        assert http.get("/health").json()["auth_required"] is False
        expected = http.post("/v1/audio/speech", json={
            "input": TEXT, "voice": VOICE, "language": "auto", "response_format": "pcm", "seed": SEED,
            "max_new_tokens": MAX_NEW_TOKENS})
        assert expected.status_code == 200, expected.text
    expected = np.frombuffer(expected.content, dtype="<i2")
    assert info["variant"] == "custom_voice" and "english" in info["languages"] and VOICE in info["voices"]

    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(server + "/")
    page.wait_for_function("() => window.playground && window.playground.ready", timeout=30_000)
    assert page.eval_on_selector_all("#voice option", "os => os.map(o => o.value)") == info["voices"]
    assert page.eval_on_selector_all("#language option", "os => os.map(o => o.value)") == info["languages"]
    assert page.is_hidden("#keyPanel") and page.is_hidden("#clonePanel")  # no key, not a Base checkpoint

    page.select_option("#voice", VOICE)
    page.fill("#seed", str(SEED))
    page.fill("#maxTokens", str(MAX_NEW_TOKENS))
    page.fill("#text", TEXT)
    page.click("#speak")
    last = _finished(page, 1)
    assert last["error"] is None, last
    assert last["samples"] == len(expected) > 0, last
    assert last["played_samples"] == last["samples"], last  # every buffer scheduled and played to its end
    assert last["buffers"] == last["chunks"] > 0
    assert last["ttfc_ms"] > 0 and last["rtf"] > 0 and last["gaps"] >= 0 and last["gap_ms"] >= 0
    assert last["metrics"] is not None  # the server's session.done
    assert page.evaluate("window.playground.audioState()") == "running"
    assert page.inner_text("#mTtfc") != "–" and page.inner_text("#mRtf").endswith("×")

    # speak as I type: the characters go out as they are typed, Enter ends the utterance
    page.fill("#text", "")
    page.click("label:has(#typeMode)")  # the switch: its checkbox is drawn by a <span>
    assert page.is_checked("#typeMode")
    page.type("#text", TYPED, delay=15)
    page.press("#text", "Enter")
    typed = _finished(page, 2)
    assert typed["error"] is None and typed["mode"] == "typing" and typed["text"] == TYPED, typed
    assert typed["samples"] > 0 and typed["played_samples"] == typed["samples"] and typed["ttfc_ms"] > 0
    page.click("label:has(#typeMode)")

    # an empty text: the server's refusal, shown
    page.fill("#text", "")
    page.click("#speak")
    refused = _finished(page, 3)
    assert refused["error"] and "empty" in refused["error"] and refused["samples"] == 0, refused
    assert page.is_visible("#error") and "empty" in page.inner_text("#error")
    assert problems == []

    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    page.screenshot(path=str(out / "playground.png"), full_page=True)
    page.close()
