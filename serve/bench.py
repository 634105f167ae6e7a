"""What the server adds to the time to first audio: the same requests spoken by a `Synthesizer` in
this process, then through the server over HTTP (`pcm`) and over the WebSocket, one at a time.

    python -m qwen3_tts_trt.serve.bench -m checkpoints/tiny-custom-voice --build-dir builds/cpu/tiny-custom-voice \
        --backend onnx --runs 30 --json out/serve-bench.json [--haproxy]

The server runs in Ray on this machine (one replica, started here, stopped at the end). Times are
taken where a client sees them: from sending the request (the WebSocket: the message with the
whole text) to the first audio bytes received. Requests run one after another, so the figures
hold the path's overhead, not queueing.

    python -m qwen3_tts_trt.serve.bench ... --streams 1,4,16 --rounds 3 --json out/serve-streams.json

measures many streams at once instead: N requests started together (`--rounds` times per level),
first on N synthesizers sharing one step loop in this process, then through the server (one
replica, capacity N): each stream's TTFC, and the frames per second of all N together (the
batching gain is the growth of that figure with N).
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

    from qwen3_tts_trt.runtime.stream import Synthesizer
    from qwen3_tts_trt.runtime.voice import Voice

    from .config import ServeConfig

    # A replica runs with OMP_NUM_THREADS = ServeConfig.threads; so do these runs, or torch's host
    # work fights ONNX Runtime's threads and the comparison is one of thread counts. (The variable
    # itself is read when torch is imported, which the `serve` package has done by now.)
    torch.set_num_threads(ServeConfig(model="").threads)

    synth = Synthesizer.open(args.model, args.build_dir, args.backend)
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


SAMPLES_PER_FRAME = 1920  # 80 ms at 24 kHz


def _concurrent_summary(ttfc_ms: list[float], frames: int, wall_s: float, streams: int, heard: list) -> dict:
    """`heard`: each stream's `Playback` (runtime.metrics): what a listener of it heard."""
    underrun = [h.underrun_ms for h in heard]
    return {"streams": streams, "ttfc": _summary(ttfc_ms), "frames": frames,
            "aggregate_fps": round(frames / wall_s, 1), "aggregate_xrt": round(frames * 0.08 / wall_s, 2),
            "underrun": {**_summary(underrun), "max_ms": round(max(underrun), 1),
                         "worst_gap_ms": round(max(h.worst_gap_ms for h in heard), 1),
                         "streams_with_gaps_over_100ms": sum(h.gaps_over_100ms > 0 for h in heard),
                         "prebuffer_ms": heard[0].prebuffer_ms}}


def concurrent_direct(args, streams: int) -> dict:
    """`streams` requests at once on synthesizers sharing one step loop, `--rounds` times: each
    stream's TTFC and the frames per second of all of them together."""
    import threading

    from qwen3_tts_trt.runtime.voice import Voice

    synths = _synths(args, streams)
    ttfc, frames, wall, heard = [], 0, 0.0, []
    for r in range(args.rounds):
        made = [0] * streams
        times = [0.0] * streams
        played = [None] * streams

        def speak(i):
            synth = synths[i]
            params = synth.default_params(seed=r * 100 + i, max_new_tokens=args.max_new_tokens)
            t0 = time.perf_counter()
            for n, chunk in enumerate(synth.stream(TEXTS[i % len(TEXTS)], Voice(speaker=VOICE), params)):
                if n == 0:
                    times[i] = 1000 * (time.perf_counter() - t0)
                made[i] += chunk.frames
            played[i] = synth.last_metrics.playback(args.prebuffer_ms)

        threads = [threading.Thread(target=speak, args=(i,)) for i in range(streams)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall += time.perf_counter() - t0
        ttfc += times
        frames += sum(made)
        heard += played
    return _concurrent_summary(ttfc, frames, wall, streams, heard)


_SYNTHS: list = []


def _synths(args, n: int) -> list:
    """n synthesizers on one step loop (made once, grown as needed)."""
    from qwen3_tts_trt.runtime.stream import Synthesizer

    if not _SYNTHS:
        first = Synthesizer.open(args.model, args.build_dir, args.backend)
        first.warmup()
        _SYNTHS.append(first)
    while len(_SYNTHS) < n:
        _SYNTHS.append(_SYNTHS[0].sibling())
    return _SYNTHS[:n]


async def concurrent_http(url: str, args, streams: int) -> dict:
    """The same load through the server: `streams` HTTP requests at once, `--rounds` times."""
    import httpx

    from qwen3_tts_trt.runtime.metrics import playback

    ttfc, frames, wall, heard = [], 0, 0.0, []
    async with httpx.AsyncClient(base_url=url, timeout=300) as client:
        async def speak(i, r):
            body = {"input": TEXTS[i % len(TEXTS)], "voice": VOICE, "response_format": "pcm", "seed": r * 100 + i,
                    "max_new_tokens": args.max_new_tokens}
            t0 = time.perf_counter()
            first, size, arrivals = None, 0, []
            async with client.stream("POST", "/v1/audio/speech", json=body) as reply:
                async for part in reply.aiter_raw():
                    first = first if first is not None else 1000 * (time.perf_counter() - t0)
                    size += len(part)
                    arrivals.append((time.perf_counter(), len(part) / 2 / 24000))  # as the client receives it
            heard.append(playback(tuple(arrivals), args.prebuffer_ms))
            return first, size // (2 * SAMPLES_PER_FRAME)

        for r in range(args.rounds):
            t0 = time.perf_counter()
            results = await asyncio.gather(*(speak(i, r) for i in range(streams)))
            wall += time.perf_counter() - t0
            ttfc += [t for t, _ in results]
            frames += sum(f for _, f in results)
    return _concurrent_summary(ttfc, frames, wall, streams, heard)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--build-dir")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--max-new-tokens", type=int, default=60, help="per request (keeps each run short)")
    ap.add_argument("--haproxy", action="store_true", help="Serve's HAProxy mode instead of its Python proxy")
    ap.add_argument("--streams", help="concurrent streams to measure instead, e.g. 1,4,16: aggregate frames per "
                                      "second and TTFC, direct (one step loop in this process) and through the server")
    ap.add_argument("--rounds", type=int, default=3, help="with --streams: batches of concurrent requests per level")
    ap.add_argument("--direct-only", action="store_true", help="with --streams: the in-process figures only, no server")
    ap.add_argument("--prebuffer-ms", type=float, default=0.0,
                    help="with --streams: the playback view's start-up buffer (a player starting this long after "
                         "the first chunk)")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on this machine
    from . import ServeConfig
    from .local import start, stop

    levels = [int(n) for n in args.streams.split(",")] if args.streams else []
    if levels:
        report = {"proxy": "haproxy" if args.haproxy else "python", "direct": [concurrent_direct(args, n) for n in levels]}
        _SYNTHS.clear()  # the engines of this process go before the server's start
        if args.direct_only:
            print(json.dumps(report, indent=1))
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1))
            return 0
    else:
        report = {"direct": _summary(direct(args)), "proxy": "haproxy" if args.haproxy else "python"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start(ServeConfig(model=args.model, build_dir=args.build_dir, backend=args.backend, num_cpus=0.5,
                      capacity=max(levels, default=0)), "127.0.0.1", port, haproxy=args.haproxy)
    try:
        url = f"http://127.0.0.1:{port}"
        if levels:
            over_http(url, argparse.Namespace(**{**vars(args), "runs": 3}))  # warm-up
            report["http"] = [asyncio.run(concurrent_http(url, args, n)) for n in levels]
            for d, h in zip(report["direct"], report["http"]):
                h["ttfc_added_p50_ms"] = round(h["ttfc"]["p50_ms"] - d["ttfc"]["p50_ms"], 2)
                h["ttfc_added_p95_ms"] = round(h["ttfc"]["p95_ms"] - d["ttfc"]["p95_ms"], 2)
            print(json.dumps(report, indent=1))
            if args.json:
                Path(args.json).write_text(json.dumps(report, indent=1))
            return 0
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
