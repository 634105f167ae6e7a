"""What the server adds to the time to first audio: the same requests spoken by a `Synthesizer` in
this process, then through the server over HTTP (`pcm`) and over the WebSocket, one at a time.

    python -m serve.bench -m checkpoints/tiny-custom-voice --build-dir builds/cpu/tiny-custom-voice \
        --backend onnx --runs 30 --json out/serve-bench.json [--haproxy]

The server runs in Ray on this machine (one replica, started here, stopped at the end). Times are
taken where a client sees them: from sending the request (the WebSocket: the message with the
whole text) to the first audio bytes received. Requests run one after another, so the figures
hold the path's overhead, not queueing (a replica serves one stream at a time until the step loop).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import time
from pathlib import Path

TEXTS = [
    "Hello! Thanks for calling. How can I help you today?",
    "Your order has shipped and should arrive on Thursday, between nine and noon.",
    "I'm sorry, I didn't catch that. Could you say the account number again, slowly?",
]
VOICE = "ryan"


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def _summary(ms: list[float]) -> dict:
    return {"p50_ms": round(_percentile(ms, 50), 2), "p95_ms": round(_percentile(ms, 95), 2),
            "mean_ms": round(statistics.fmean(ms), 2), "runs": len(ms)}


def direct(args) -> list[float]:
    import torch

    from runtime.prompt import Voice
    from runtime.stream import StreamOptions, Synthesizer

    from .config import ServeConfig

    # A replica runs with OMP_NUM_THREADS = ServeConfig.threads; so do these runs, or torch's host
    # work fights ONNX Runtime's threads and the comparison is one of thread counts. (The variable
    # itself is read when torch is imported, which the `serve` package has done by now.)
    torch.set_num_threads(ServeConfig(model="").threads)

    synth = Synthesizer.open(args.model, args.build_dir, args.backend, options=StreamOptions(pcm16=True))
    synth.warmup()
    out = []
    for i in range(args.runs):
        params = synth.default_params(seed=i, max_new_tokens=args.max_new_tokens)
        t0 = time.perf_counter()
        chunks = synth.stream(TEXTS[i % len(TEXTS)], Voice(speaker=VOICE), params)
        next(chunks)
        out.append(1000 * (time.perf_counter() - t0))
        chunks.close()
    return out


def over_http(url: str, args) -> list[float]:
    import httpx

    out = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(args.runs):
            body = {"input": TEXTS[i % len(TEXTS)], "voice": VOICE, "response_format": "pcm", "seed": i,
                    "max_new_tokens": args.max_new_tokens}
            t0 = time.perf_counter()
            with client.stream("POST", "/v1/audio/speech", json=body) as r:
                audio = r.iter_raw()
                next(audio)
                out.append(1000 * (time.perf_counter() - t0))
                for _ in audio:  # the whole stream, so the next request finds the slot free
                    pass
    return out


async def over_websocket(url: str, args) -> list[float]:
    import websockets

    out = []
    for i in range(args.runs):
        async with websockets.connect(url) as ws:
            await ws.send(json.dumps({"type": "session.config", "voice": VOICE, "seed": i,
                                      "max_new_tokens": args.max_new_tokens}))
            assert json.loads(await ws.recv())["type"] == "audio.start"
            t0 = time.perf_counter()
            await ws.send(json.dumps({"type": "input.text", "text": TEXTS[i % len(TEXTS)]}))
            await ws.send(json.dumps({"type": "input.done"}))
            while not isinstance(await ws.recv(), bytes):
                pass
            out.append(1000 * (time.perf_counter() - t0))
            async for _ in ws:
                pass
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--build-dir")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--max-new-tokens", type=int, default=60, help="per request (keeps each run short)")
    ap.add_argument("--haproxy", action="store_true", help="Serve's HAProxy mode instead of its Python proxy")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on this machine
    from . import ServeConfig
    from .local import start, stop

    report = {"direct": _summary(direct(args)), "proxy": "haproxy" if args.haproxy else "python"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start(ServeConfig(model=args.model, build_dir=args.build_dir, backend=args.backend, num_cpus=0.5),
          "127.0.0.1", port, haproxy=args.haproxy)
    try:
        url = f"http://127.0.0.1:{port}"
        over_http(url, argparse.Namespace(**{**vars(args), "runs": 3}))  # the connection and the proxy warm up
        report["http"] = _summary(over_http(url, args))
        report["websocket"] = _summary(asyncio.run(over_websocket(url.replace("http", "ws") +
                                                                  "/v1/audio/speech/stream", args)))
    finally:
        stop()
    for path in ("http", "websocket"):
        report[path]["added_p50_ms"] = round(report[path]["p50_ms"] - report["direct"]["p50_ms"], 2)
    print(json.dumps(report, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
