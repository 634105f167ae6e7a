"""The project's ONNX Runtime builds (fp32, int8, int4) and the official qwen-tts on one CPU, side by side.

Same checkpoint, same text, same forced frame count (EOS held off with min_new_tokens), one
configuration at a time, each in its own process (so each has its own peak RSS and nothing
stays warm in between), all in one run of this script: the host's memory bandwidth drifts on
shared machines, so only figures from the same run compare. Per configuration, the median of
--runs utterances after one warm-up:

- ms per frame of each engine (talker: prefill + decode steps; predictor; codec), and of host work
  in the frame loop (sampling, embedding sums, the step loop's hand-over, Python), measured in a
  pass of the frame loop without the codec. The codec runs beside the frame loop (it turns the
  last frames into audio while the next are made), so the parts add up to more than the total;
- xRT (audio seconds per wall second), TTFC (first PCM chunk; the official code is not streaming,
  so its first audio comes with its last), peak RSS, and the ratio to the official code.

    python benchmarks/cpu_precisions.py -m CKPT --build fp32=DIR --build int8=DIR --build int4=DIR \\
        --frames 60 --runs 3 --json out/cpu-precisions.json

Needs the test extra and qwen-tts (see README) for the official side (--no-official skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from qwen3_tts_trt.runtime.metrics import engine_seconds_by_part, wrap_engine_calls  # first_audio.py imports the second from here

ROOT = Path(__file__).resolve().parent.parent
TEXT = ("Good morning! The weather today is mild and clear, with a light breeze from the west, "
        "and the evening should stay dry, so it is a fine day for a long walk in the park.")
COMPONENTS = ("talker", "predictor", "codec")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_ours(model: str, build: str, frames: int, runs: int, sampled: bool, speaker: str) -> dict:
    from qwen3_tts_trt.runtime.sampling import SamplingParams
    from qwen3_tts_trt.runtime.stream import Synthesizer
    from qwen3_tts_trt.runtime.voice import Voice

    synth = Synthesizer.open(model, build, backend="onnx")
    # the engine itself, under the step loop: the stream's own client only hands calls to the loop, so
    # its lock and hand-over count as host time here
    spent = engine_seconds_by_part(synth.steps.backend)
    defaults = synth.config.sampling
    params = (SamplingParams.from_defaults(defaults, seed=1) if sampled else SamplingParams.greedy(defaults))
    params = replace(params, min_new_tokens=frames + 1, max_new_tokens=frames + 1)  # exactly `frames` frames
    voice = Voice(speaker=speaker, language="english")
    rows = []
    for i in range(runs + 1):  # the first is a warm-up
        for k in spent:
            spent[k] = 0.0
        t0 = time.perf_counter()
        n = sum(1 for _ in synth.stream(TEXT, voice, params))
        wall = time.perf_counter() - t0
        m = synth.last_metrics
        assert m.frames == frames, (m.frames, frames)
        if i:
            per = {k: 1000 * v / frames for k, v in spent.items()}
            rows.append(dict(per, total=1000 * wall / frames, ttfc_ms=m.ttfc_ms, xrt=m.xrt, chunks=n))
    out = {k: statistics.median(r[k] for r in rows) for k in (*COMPONENTS, "total", "ttfc_ms", "xrt")}
    out["host"] = _frame_loop_host_ms(synth, spent, TEXT, voice, params, frames, runs)
    out["precision"] = synth.backend.limits.precision
    out["codec_precision"] = synth.backend.limits.codec_precision
    return out


def _frame_loop_host_ms(synth, spent: dict, text: str, voice, params, frames: int, runs: int) -> float:
    """Host ms per frame of the frame loop alone (no codec): its wall time less its engines' time."""
    from qwen3_tts_trt.runtime.decode_loop import FrameLoop

    prompt = synth.prepare(text, voice, params)[0]
    hosts = []
    for _ in range(runs):
        for k in spent:
            spent[k] = 0.0
        t0 = time.perf_counter()
        made = sum(1 for _ in FrameLoop(synth.backend).frames(prompt, params))
        wall = time.perf_counter() - t0
        synth.backend.end_stream()
        assert made == frames, (made, frames)
        hosts.append(1000 * (wall - spent["talker"] - spent["predictor"]) / frames)
    return statistics.median(hosts)


def run_official(model: str, frames: int, runs: int, sampled: bool, speaker: str) -> dict:
    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from official import load_official

    torch.set_num_threads(os.cpu_count() or 1)
    w = load_official(model)
    ids = w._tokenize_texts([w._build_assistant_text(TEXT)])
    sampling = dict(do_sample=True, subtalker_dosample=True) if sampled else dict(do_sample=False, subtalker_dosample=False)
    rows = []
    for i in range(runs + 1):
        torch.manual_seed(1)
        t0 = time.perf_counter()
        codes, _ = w.model.generate(input_ids=ids, languages=["english"], speakers=[speaker], non_streaming_mode=False,
                                    max_new_tokens=frames + 1, min_new_tokens=frames + 1, **sampling)
        t1 = time.perf_counter()
        w.model.speech_tokenizer.decode([{"audio_codes": codes[0]}])
        t2 = time.perf_counter()
        n = codes[0].shape[0]
        assert n == frames, (n, frames)
        if i:
            total = 1000 * (t2 - t0) / n
            rows.append(dict(lm=1000 * (t1 - t0) / n, codec=1000 * (t2 - t1) / n, total=total,
                             ttfc_ms=1000 * (t2 - t0), xrt=n * 0.08 / (t2 - t0)))
    return {k: statistics.median(r[k] for r in rows) for k in rows[0]}


def _one(args) -> int:
    """Child process: one configuration, figures as one JSON line on stdout."""
    kind, _, build = args.one.partition("=")
    if kind == "official":
        out = run_official(args.model, args.frames, args.runs, args.sampled, args.speaker)
    else:
        out = run_ours(args.model, build, args.frames, args.runs, args.sampled, args.speaker)
    out["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(out))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True, help="checkpoint directory")
    ap.add_argument("--build", action="append", default=[], metavar="NAME=DIR", help="a build folder to compare")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--speaker", default="ryan")
    ap.add_argument("--modes", default="greedy,sampled")
    ap.add_argument("--no-official", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--sampled", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        return _one(args)

    from qwen3_tts_trt.runtime.device_info import host_read_gbs

    configs = list(args.build) + ([] if args.no_official else ["official"])
    results = []
    read_gbs = [host_read_gbs()]  # beside every CPU table: these hosts' bandwidth drifts from day to day
    for mode in args.modes.split(","):
        for config in configs:
            cmd = [sys.executable, __file__, "-m", args.model, "--frames", str(args.frames), "--runs", str(args.runs),
                   "--speaker", args.speaker, "--one", config] + (["--sampled"] if mode == "sampled" else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{config} ({mode}) failed")
            row = dict(json.loads(line[7:]), config=config.split("=")[0], mode=mode)
            results.append(row)
            print(_row_text(row), flush=True)
    for row in results:
        off = next((r for r in results if r["config"] == "official" and r["mode"] == row["mode"]), None)
        row["speedup_vs_official"] = round(off["total"] / row["total"], 2) if off else None
    read_gbs.append(host_read_gbs())
    print()
    print(f"single-thread read {read_gbs[0]:.1f} GB/s before, {read_gbs[1]:.1f} after; {os.cpu_count()} cores")
    print(table(results))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(dict(
            model=args.model, frames=args.frames, runs=args.runs, text=TEXT, cpu_count=os.cpu_count(),
            python=platform.python_version(), read_gbs=read_gbs, date=time.strftime("%Y-%m-%d"), results=results), indent=1))
    return 0


def _row_text(r: dict) -> str:
    return f"{r['config']:>8} {r['mode']:<8} {r['total']:7.1f} ms/frame  xRT {r['xrt']:.2f}  TTFC {r['ttfc_ms']:.0f} ms"


def table(results: list[dict]) -> str:
    head = "| build | mode | talker | predictor | codec | host | total ms/frame | xRT | TTFC ms | peak RSS MB | vs official |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in results:
        if r["config"] == "official":
            parts = [f"{r['lm']:.1f} (talker + predictor)", "", f"{r['codec']:.1f}", ""]
        else:
            parts = [f"{r['talker']:.1f}", f"{r['predictor']:.1f}", f"{r['codec']:.1f}", f"{r['host']:.1f}"]
        lines.append("| " + " | ".join([r["config"], r["mode"], *parts, f"{r['total']:.1f}", f"{r['xrt']:.2f}",
                                         f"{r['ttfc_ms']:.0f}", f"{r['peak_rss_mb']:.0f}",
                                         f"{r['speedup_vs_official']}x" if r["speedup_vs_official"] else ""]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
