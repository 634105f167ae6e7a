"""A schema fuzzer on the live server: Schemathesis reads the OpenAPI schema that the Ray Serve
ingress serves (FastAPI's /openapi.json) and sends generated requests, valid and invalid, to the
replica on 127.0.0.1: the schema's examples and boundaries (Schemathesis's coverage phase: every
field's edge values, wrong types, missing and unknown fields, undeclared methods, other content
types) and random bodies (its fuzzing phase), a bounded number of each.

For every answer: no 5xx (requests go one at a time, so not even 503 "busy" is legitimate here);
every 4xx in the OpenAI error shape; a request the schema forbids refused with a 4xx; a method the
schema does not declare answered 405 with `Allow`; speech answered with audio. Then the server
still speaks, and an unknown route is refused in the OpenAI shape too.

Bounds: max_examples per operation, the server's input limit (MAX_INPUT characters) so that no
generated text is long, and a wall-clock budget for the whole fuzzing (BUDGET_S) after which the
remaining examples are not sent. Each request has a timeout, so a hang fails instead of stalling.
"""

import os
import time
from collections import Counter

import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")
schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402  (schemathesis depends on hypothesis)

from qwen3_tts_trt.serve.audio import MEDIA_TYPES  # noqa: E402
from support import LIMITS, free_port, serving  # noqa: E402


VOICE = "ryan"
MAX_INPUT = 200  # the server's input limit here: a generated text past it is refused before the engine
# Random bodies per operation, after the coverage phase's cases, and the wall-clock seconds of
# fuzzing for all operations together (the whole file: about 55 s on 2 cores, Ray's start included).
# A longer hunt: QWEN3_TTS_FUZZ_EXAMPLES=2000 QWEN3_TTS_FUZZ_SECONDS=600.
MAX_EXAMPLES = int(os.environ.get("QWEN3_TTS_FUZZ_EXAMPLES", "100"))
BUDGET_S = float(os.environ.get("QWEN3_TTS_FUZZ_SECONDS", "30"))
REQUEST_TIMEOUT_S = 30.0  # one generated request: a hang fails instead of stalling the run
SLOW_S = 2.0  # generated requests slower than this are listed in the summary
pytestmark = [pytest.mark.serve, pytest.mark.timeout(240 + BUDGET_S)]


@pytest.fixture(scope="module")
def server(tiny_custom_voice, tiny_build):
    from qwen3_tts_trt.serve import ServeConfig

    config = ServeConfig(model=str(tiny_custom_voice), build_dir=str(tiny_build[0]), backend="onnx",
                         num_cpus=0.5, max_input_chars=MAX_INPUT, wait_s=1.0, capacity=LIMITS.max_batch)
    with serving(config, metrics_port=free_port()) as url:
        yield {"url": url, "model": config.served_model,
               "stats": {"sent": 0, "skipped": 0, "slow": [], "refused": Counter()}}


@pytest.fixture(scope="module")
def api_schema(server):
    # The schema the ingress itself serves (so a route Ray Serve hides or renames would show here).
    schema = schemathesis.openapi.from_url(server["url"] + "/openapi.json", timeout=10)
    schema.config.update(base_url=server["url"], request_timeout=REQUEST_TIMEOUT_S)
    schema.config.generation.update(max_examples=MAX_EXAMPLES, database="none")
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


def _openai_error(response) -> str | None:
    """Why `response` (a 4xx) is not an OpenAI error object, or None when it is one."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.content[:200]!r}"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"message", "type", "param", "code"}:
        return f"not {{'error': {{message, type, param, code}}}}: {body!r}"
    if not (isinstance(error["message"], str) and error["message"] and isinstance(error["type"], str)):
        return f"message and type must be strings: {body!r}"
    if not all(error[k] is None or isinstance(error[k], str) for k in ("param", "code")):
        return f"param and code must be strings or null: {body!r}"
    return None


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, print_blob=True,
          suppress_health_check=list(HealthCheck))
def test_generated_requests_get_no_5xx_and_openai_shaped_4xx(case, server):
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import negative_data_rejection, unsupported_method

    stats = server["stats"]
    stats.setdefault("t0", time.monotonic())
    if time.monotonic() - stats["t0"] > BUDGET_S:  # the wall-clock bound: the rest are not sent
        stats["skipped"] += 1
        return
    t = time.monotonic()
    # One request at a time, so the slots are never all busy: a 503 here fails like any 5xx.
    response = case.call(timeout=REQUEST_TIMEOUT_S)
    took = time.monotonic() - t
    stats["sent"] += 1
    if took > SLOW_S:
        stats["slow"].append((round(took, 2), case.method, case.path, case.body))
    case.validate_response(response, checks=[not_a_server_error, negative_data_rejection, unsupported_method])
    where = f"{case.method} {case.formatted_path} -> {response.status_code}"
    if 400 <= response.status_code < 500:
        problem = _openai_error(response)
        assert problem is None, f"{where}: {problem}"
        stats["refused"][response.json()["error"]["code"]] += 1
    elif case.path == "/v1/audio/speech" and case.method == "POST" and response.status_code == 200:
        media = response.headers.get("content-type", [""])[0]
        assert media in MEDIA_TYPES.values(), f"{where}: {media}"
        assert len(response.content) > 0, where
        if media in ("audio/wav", "audio/pcm"):
            assert len(response.content) % 2 == 0, where  # whole 16-bit samples


def test_the_server_still_speaks_after_the_fuzzing(server):
    stats = server["stats"]
    print(f"\nfuzzing: {stats['sent']} requests sent, {stats['skipped']} left unsent past {BUDGET_S:g} s, "
          f"refusals {dict(stats['refused'])}, slower than {SLOW_S:g} s: {stats['slow']}")
    with httpx.Client(base_url=server["url"], timeout=60) as http:
        health = http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ready"
        assert health.json()["live_streams"] == 0  # no generated request left a stream behind
        r = http.post("/v1/audio/speech", json={"model": server["model"], "input": "Hello there!", "voice": VOICE,
                                                "response_format": "pcm", "seed": 1, "max_new_tokens": 30})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "audio/pcm" and len(r.content) > 0
        # What no generated request reaches (the schema names every path it has): an unknown route,
        # in the OpenAI shape too.
        r = http.get("/v1/no-such-route")
        assert r.status_code == 404 and _openai_error(r) is None, r.text
        assert r.json()["error"]["code"] == "not_found"
