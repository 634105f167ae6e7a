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
        params = synth.default_params(seed=i, **_lengths(args))
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


def _concurrent_summary(ttfc_ms: list[float], frames: int, wall_s: float, streams: int, arrivals: list,
                        prebuffers: list[float], stream_xrt: list[float]) -> dict:
    """`arrivals`: each stream's chunks as (arrival s, audio s); what a listener of each heard is
    worked out for every start-up buffer in `prebuffers` (runtime.metrics.playback)."""
    from qwen3_tts_trt.runtime.metrics import playback

    underruns = []
    for prebuffer in prebuffers:
        heard = [playback(tuple(a), prebuffer) for a in arrivals]
        underrun = [h.underrun_ms for h in heard]
        underruns.append({**_summary(underrun), "max_ms": round(max(underrun), 1),
                          "worst_gap_ms": round(max(h.worst_gap_ms for h in heard), 1),
                          "streams_with_gaps_over_100ms": sum(h.gaps_over_100ms > 0 for h in heard),
                          "prebuffer_ms": prebuffer})
    return {"streams": streams, "ttfc": _summary(ttfc_ms), "frames": frames,
            "aggregate_fps": round(frames / wall_s, 1), "aggregate_xrt": round(frames * 0.08 / wall_s, 2),
            "stream_xrt": {"p50": round(_percentile(stream_xrt, 50), 2), "min": round(min(stream_xrt), 2)},
            "underrun": underruns}


def concurrent_direct(args, streams: int) -> dict:
    """`streams` requests at once on synthesizers sharing one step loop, `--rounds` times: each
    stream's TTFC and the frames per second of all of them together."""
    import threading

    from qwen3_tts_trt.runtime.voice import Voice

    synths, busy = _synths(args, streams)
    busy.update(dict.fromkeys(busy, 0.0))
    loop = synths[0].steps
    counts_before = _call_counts(loop)
    ttfc, frames, wall, arrivals, xrt = [], 0, 0.0, [], []
    for r in range(args.rounds):
        made = [0] * streams
        times = [0.0] * streams
        played = [None] * streams

        def speak(i):
            synth = synths[i]
            params = synth.default_params(seed=r * 100 + i, **_lengths(args))
            t0 = time.perf_counter()
            for n, chunk in enumerate(synth.stream(TEXTS[i % len(TEXTS)], Voice(speaker=VOICE), params)):
                if n == 0:
                    times[i] = 1000 * (time.perf_counter() - t0)
                made[i] += chunk.frames
            played[i] = synth.last_metrics

        threads = [threading.Thread(target=speak, args=(i,)) for i in range(streams)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall += time.perf_counter() - t0
        ttfc += times
        frames += sum(made)
        arrivals += [m.chunk_times for m in played]
        xrt += [m.xrt for m in played]
    summary = _concurrent_summary(ttfc, frames, wall, streams, arrivals, args.prebuffers, xrt)
    calls, rows, codec_calls, codec_rows = (after - before for after, before in zip(_call_counts(loop), counts_before))
    # Where the time goes: each engine's busy share of the wall time (the frame loop's thread runs
    # the talker and the predictor, the codec has its own), and how many streams each call served.
    summary["profile"] = {**{f"{k}_busy": round(v / wall, 2) for k, v in busy.items()},
                          "rows_per_talker_step": round(rows / max(calls, 1), 2),
                          "rows_per_codec_call": round(codec_rows / max(codec_calls, 1), 2)}
    return summary


def _call_counts(loop) -> tuple[int, int, int, int]:
    """The step loop's talker steps and their rows, its codec calls and their rows, so far."""
    return loop.stats.decode_calls, loop.stats.decode_rows, loop.codecs.stats.calls, loop.codecs.stats.rows


def _lengths(args) -> dict:
    """max_new_tokens, and min_new_tokens where given (equal to it: every request makes the same
    number of frames, EOS held off, so levels compare)."""
    return dict(max_new_tokens=args.max_new_tokens,
                **({"min_new_tokens": args.min_new_tokens} if args.min_new_tokens is not None else {}))


_POOL: dict = {}  # one step loop for every level: its synthesizers, and its engines' time per part


def _synths(args, n: int) -> tuple[list, dict]:
    """n synthesizers on one step loop (made once, grown as needed), and the dict its engine calls
    add their time to (runtime.metrics.engine_seconds_by_part)."""
    from qwen3_tts_trt.runtime.metrics import engine_seconds_by_part
    from qwen3_tts_trt.runtime.stream import Synthesizer

    if not _POOL:
        first = Synthesizer.open(args.model, args.build_dir, args.backend)
        first.warmup()
        _POOL.update(synths=[first], spent=engine_seconds_by_part(first.steps.backend))
    synths = _POOL["synths"]
    while len(synths) < n:
        synths.append(synths[0].sibling())
    return synths[:n], _POOL["spent"]


async def concurrent_http(url: str, args, streams: int) -> dict:
    """The same load through the server: `streams` HTTP requests at once, `--rounds` times."""
    import httpx

    ttfc, frames, wall, heard, xrt = [], 0, 0.0, [], []
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
            heard.append(arrivals)
            xrt.append(size / 2 / 24000 / (time.perf_counter() - t0))
            return first, size // (2 * SAMPLES_PER_FRAME)

        for r in range(args.rounds):
            t0 = time.perf_counter()
            results = await asyncio.gather(*(speak(i, r) for i in range(streams)))
            wall += time.perf_counter() - t0
            ttfc += [t for t, _ in results]
            frames += sum(f for _, f in results)
    return _concurrent_summary(ttfc, frames, wall, streams, heard, args.prebuffers, xrt)


def streams_table(rows: list[dict]) -> str:
    """The many-streams figures as a markdown table, one row per level and start-up buffer."""
    lines = ["| streams | aggregate fps | aggregate xRT | stream xRT p50 (min) | TTFC p50 / p95 ms | prebuffer ms "
             "| underrun p50 / max ms | worst gap ms | streams with a gap > 100 ms |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        for u in row["underrun"]:
            lines.append(f"| {row['streams']} | {row['aggregate_fps']} | {row['aggregate_xrt']} | "
                         f"{row['stream_xrt']['p50']} ({row['stream_xrt']['min']}) | {row['ttfc']['p50_ms']:.0f} / "
                         f"{row['ttfc']['p95_ms']:.0f} | {u['prebuffer_ms']:.0f} | {u['p50_ms']:.0f} / {u['max_ms']:.0f} | "
                         f"{u['worst_gap_ms']:.0f} | {u['streams_with_gaps_over_100ms']} of {u['runs']} |")
    return "\n".join(lines)


def _report_streams(report: dict, args) -> None:
    print(json.dumps(report, indent=1))
    print(f"\nsingle-thread read {report['read_gbs'][0]} GB/s before, {report['read_gbs'][1]} after; "
          f"{os.cpu_count()} cores")
    for path in ("direct", "http"):
        if path in report:
            print(f"\n{path}:\n{streams_table(report[path])}")
    print("\n| streams | talker busy | predictor busy | codec busy | rows per talker step | rows per codec call |\n"
          "|---|---|---|---|---|---|")
    for row in report["direct"]:
        f = row["profile"]
        print(f"| {row['streams']} | {f['talker_busy']} | {f['predictor_busy']} | {f['codec_busy']} | "
              f"{f['rows_per_talker_step']} | {f['rows_per_codec_call']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


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
    ap.add_argument("--min-new-tokens", type=int,
                    help="with --streams and --direct-only: per request (default: the checkpoint's); equal to "
                         "--max-new-tokens, every request makes the same number of frames")
    ap.add_argument("--prebuffer-ms", default="0",
                    help="with --streams: the playback view's start-up buffer (a player starting this long after "
                         "the first chunk); several, comma-separated, are worked out from the same runs")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args(argv)
    args.prebuffers = [float(ms) for ms in args.prebuffer_ms.split(",")]
    if args.min_new_tokens is not None and not (args.streams and args.direct_only):
        ap.error("--min-new-tokens is for --streams ... --direct-only: the API has no min_new_tokens")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway cluster on this machine
    from . import ServeConfig
    from .local import start, stop

    levels = [int(n) for n in args.streams.split(",")] if args.streams else []
    if levels:
        from qwen3_tts_trt.runtime.device_info import host_read_gbs

        read_gbs = host_read_gbs()  # beside every CPU figure: these hosts' bandwidth drifts
        report = {"proxy": "haproxy" if args.haproxy else "python", "direct": [concurrent_direct(args, n) for n in levels]}
        report["read_gbs"] = [round(read_gbs, 1), round(host_read_gbs(), 1)]
        _POOL.clear()  # the engines of this process go before the server's start
        if args.direct_only:
            _report_streams(report, args)
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
            _report_streams(report, args)
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
