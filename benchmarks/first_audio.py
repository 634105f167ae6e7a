"""Where the time to first audio goes: each engine call before the first chunk, on a time line.

One warm Synthesizer streams the same text --runs times (ONNX Runtime, greedy, 8 frames each); for
each utterance it records when every engine call before the first chunk started and ended,
relative to the request, and in which thread (the frame loop's, or the consumer's that runs the
codec). Prints the median utterance's time line and the TTFC of all of them; --json writes both.

    python benchmarks/first_audio.py -m CKPT --build-dir BUILD --runs 9 --json out/first-audio.json

To compare two commits, run it from each checkout in turn (PYTHONPATH=THAT_CHECKOUT), several
rounds interleaved: the host's memory bandwidth drifts, so only interleaved figures compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_precisions import TEXT, wrap_engine_calls  # noqa: E402  (the same text as the precision table)

ENGINE_CALLS = ("prefill", "decode", "predict_frame", "codec_run")


def measure(model: str, build_dir: str, runs: int, speaker: str = "ryan") -> dict:
    from qwen3_tts_trt.runtime.stream import Synthesizer
    from qwen3_tts_trt.runtime.voice import Voice

    synth = Synthesizer.open(model, build_dir, backend="onnx")
    synth.warmup()
    voice = Voice(speaker=speaker, language="english")
    params = synth.greedy_params(max_new_tokens=8)
    calls: list = []
    wrap_engine_calls(synth.backend, ENGINE_CALLS, lambda *call: calls.append(call))
    utterances = []
    for _ in range(runs):
        calls.clear()
        t_request = time.perf_counter()
        chunks = synth.stream(TEXT, voice, params)
        next(chunks)
        t_first = time.perf_counter()
        for _ in chunks:
            pass
        timeline = [dict(call=n, start_ms=1000 * (a - t_request), end_ms=1000 * (b - t_request), thread=t)
                    for n, a, b, t in sorted(calls, key=lambda c: c[1]) if a < t_first]
        utterances.append(dict(ttfc_ms=synth.last_metrics.ttfc_ms, first_chunk_ms=1000 * (t_first - t_request),
                               timeline=timeline))
    return dict(model=model, build_dir=build_dir, runs=runs, text=TEXT, utterances=utterances,
                ttfc_ms_median=statistics.median(u["ttfc_ms"] for u in utterances))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True, help="checkpoint directory")
    ap.add_argument("--build-dir", required=True, help="the build folder (any precision ONNX Runtime runs)")
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)
    figures = measure(args.model, args.build_dir, args.runs)
    median = sorted(figures["utterances"], key=lambda u: u["ttfc_ms"])[len(figures["utterances"]) // 2]
    print(f"TTFC median {figures['ttfc_ms_median']:.1f} ms; all: "
          + ", ".join(f"{u['ttfc_ms']:.1f}" for u in sorted(figures["utterances"], key=lambda u: u["ttfc_ms"])))
    print("the median utterance, engine calls before its first chunk (ms from the request):")
    for c in median["timeline"]:
        print(f"  {c['call']:14s} {c['start_ms']:7.1f} -> {c['end_ms']:7.1f}  ({c['end_ms'] - c['start_ms']:5.1f} ms)  {c['thread']}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
