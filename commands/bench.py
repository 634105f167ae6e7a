"""`qwen3-tts-trt bench`: time to first chunk, ms per frame, xRT and host overhead over a few utterances."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from .errors import UsageError
from .options import add_synthesis_options, int_at_least, open_synthesizer, params_of, voice_of
from .output_file import AtomicOutput, check_output

BENCH_TEXTS = [
    "Hello! Thanks for calling. How can I help you today?",
    "Your order has shipped and should arrive on Thursday, between nine and noon.",
    "I'm sorry, I didn't catch that. Could you say the account number again, slowly?",
]


def add_parser(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    bench = sub.add_parser("bench", help="time to first chunk, ms per frame, xRT, host overhead", formatter_class=fmt)
    bench.add_argument("--runs", type=int_at_least(1), default=6, help="utterances to time")
    bench.add_argument("--json", help="write the report here")
    bench.add_argument("--prebuffer-ms", type=float, default=0.0,
                       help="the playback view's start-up buffer: a player that starts this long after the first "
                            "chunk (a jitter buffer); its gaps show what buffering removes")
    add_synthesis_options(bench)
    bench.set_defaults(func=run)


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_report(runs: list[dict]) -> dict:
    if not runs:
        raise UsageError("no runs were made: give --runs 1 or more")
    ttfc = [r["ttfc_ms"] for r in runs if r["ttfc_ms"] is not None] or [float("nan")]
    return dict(
        runs=len(runs),
        ttfc_ms_p50=_percentile(ttfc, 50), ttfc_ms_p95=_percentile(ttfc, 95),
        ms_per_frame=statistics.median(r["ms_per_frame"] for r in runs),
        xrt=statistics.median(r["xrt"] for r in runs),
        host_us_per_frame=statistics.median(r["host_us_per_frame"] for r in runs),
        engine_ms_per_frame=statistics.median(1000 * r["engine_seconds"] / max(r["frames"], 1) for r in runs),
        frames=sum(r["frames"] for r in runs),
        underrun_ms_max=max(r["underrun_ms"] for r in runs),
        worst_gap_ms=max(r["worst_gap_ms"] for r in runs),
        gaps_over_100ms=sum(r["gaps_over_100ms"] for r in runs),
    )


def run(args) -> int:
    if args.json:
        check_output(Path(args.json), audio=False)
    synth = open_synthesizer(args)
    runs = []
    for i in range(args.runs):
        text = BENCH_TEXTS[i % len(BENCH_TEXTS)]
        for _ in synth.stream(text, voice_of(args, synth), params_of(synth, args, seed=args.seed + i)):
            pass
        m = synth.last_metrics
        heard = m.playback(args.prebuffer_ms)  # to_dict's playback view starts at the first chunk
        runs.append(dict(m.to_dict(), underrun_ms=heard.underrun_ms, worst_gap_ms=heard.worst_gap_ms,
                         gaps_over_100ms=heard.gaps_over_100ms, prebuffer_ms=args.prebuffer_ms))
    report = dict(bench_report(runs), backend=synth.backend_name, fallback=synth.backend.fallback, model=args.model,
                  greedy=args.greedy, max_new_tokens=args.max_new_tokens, prebuffer_ms=args.prebuffer_ms, per_run=runs)
    rows = [("TTFC p50", f"{report['ttfc_ms_p50']:.1f} ms"), ("TTFC p95", f"{report['ttfc_ms_p95']:.1f} ms"),
            ("per frame", f"{report['ms_per_frame']:.2f} ms"), ("engine per frame", f"{report['engine_ms_per_frame']:.2f} ms"),
            ("host overhead per frame", f"{report['host_us_per_frame']:.0f} us"), ("xRT", f"{report['xrt']:.2f}"),
            ("frames", str(report["frames"])),
            ("playback underrun", f"{report['underrun_ms_max']:.0f} ms in the worst run, worst gap "
             f"{report['worst_gap_ms']:.0f} ms, {report['gaps_over_100ms']} gap(s) over 100 ms "
             f"(prebuffer {args.prebuffer_ms:g} ms)")]
    print(f"backend {report['backend']}, {report['runs']} runs")
    for k, v in rows:
        print(f"  {k:<24}{v}")
    if args.json:
        target = AtomicOutput(Path(args.json))
        try:
            target.tmp.write_text(json.dumps(report, indent=1))
            target.commit()
        finally:
            target.discard()
        print(f"wrote {args.json}")
    return 0
