"""Command line: `qwen3-tts-trt say "text" -o out.wav` and `qwen3-tts-trt bench`.

Both stream through the `Synthesizer` on the backend you name (`--backend auto` picks TensorRT
engines if they load here, else the ONNX graphs of the build, else PyTorch). The build folder
defaults to builds/<this GPU or cpu>/<model folder name> when it exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from .errors import Qwen3TTSError

BENCH_TEXTS = [
    "Hello! Thanks for calling. How can I help you today?",
    "Your order has shipped and should arrive on Thursday, between nine and noon.",
    "I'm sorry, I didn't catch that. Could you say the account number again, slowly?",
]


def _default_build_dir(model: str) -> Path | None:
    from .device_info import detect_gpu

    gpu = detect_gpu()
    path = Path("builds") / (gpu["slug"] if gpu else "cpu") / Path(model.rstrip("/")).name
    return path if (path / "manifest.json").is_file() else None


def _open(args):
    from .stream import StreamOptions, Synthesizer

    build_dir = args.build_dir or _default_build_dir(args.model)
    options = StreamOptions(chunk_ramp=tuple(args.chunk_ramp), pcm16=getattr(args, "pcm16", False))
    synth = Synthesizer.open(args.model, build_dir, args.backend, options=options)
    if not args.no_warmup:
        synth.warmup()
    return synth


def _voice(args):
    from .prompt import Voice

    return Voice(speaker=args.speaker, language=args.language, instruct=args.instruct,
                 non_streaming_text=args.non_streaming_text)


def _params(synth, args, seed=None):
    from .sampling import SamplingParams

    overrides = dict(max_new_tokens=args.max_new_tokens, seed=args.seed if seed is None else seed)
    return SamplingParams.greedy(**overrides) if args.greedy else synth.default_params(**overrides)


def _say(args) -> int:
    import soundfile as sf

    t0 = time.perf_counter()
    synth = _open(args)
    t_load = time.perf_counter() - t0
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with sf.SoundFile(args.output, "w", samplerate=synth.sample_rate, channels=1, subtype="PCM_16") as wav:
        for chunk in synth.stream(args.text, _voice(args), _params(synth, args)):
            wav.write(chunk.samples)
    m = synth.last_metrics
    print(f"wrote {args.output}: {m.audio_seconds:.2f} s of audio, {m.frames} frames, end: {m.end_reason}; "
          f"backend {m.backend}, load {t_load:.1f} s, first chunk {m.ttfc_ms:.0f} ms, xRT {m.xrt:.1f}, "
          f"host {m.host_us_per_frame:.0f} us/frame")
    return 0


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_report(runs: list[dict]) -> dict:
    ttfc = [r["ttfc_ms"] for r in runs]
    return dict(
        runs=len(runs),
        ttfc_ms_p50=_percentile(ttfc, 50), ttfc_ms_p95=_percentile(ttfc, 95),
        ms_per_frame=statistics.median(r["ms_per_frame"] for r in runs),
        xrt=statistics.median(r["xrt"] for r in runs),
        host_us_per_frame=statistics.median(r["host_us_per_frame"] for r in runs),
        engine_ms_per_frame=statistics.median(1000 * r["engine_seconds"] / max(r["frames"], 1) for r in runs),
        frames=sum(r["frames"] for r in runs),
    )


def _bench(args) -> int:
    synth = _open(args)
    runs = []
    for i in range(args.runs):
        text = BENCH_TEXTS[i % len(BENCH_TEXTS)]
        for _ in synth.stream(text, _voice(args), _params(synth, args, seed=args.seed + i)):
            pass
        runs.append(synth.last_metrics.to_dict())
    report = dict(bench_report(runs), backend=synth.backend_name, model=args.model,
                  greedy=args.greedy, max_new_tokens=args.max_new_tokens, per_run=runs)
    rows = [("TTFC p50", f"{report['ttfc_ms_p50']:.1f} ms"), ("TTFC p95", f"{report['ttfc_ms_p95']:.1f} ms"),
            ("per frame", f"{report['ms_per_frame']:.2f} ms"), ("engine per frame", f"{report['engine_ms_per_frame']:.2f} ms"),
            ("host overhead per frame", f"{report['host_us_per_frame']:.0f} us"), ("xRT", f"{report['xrt']:.2f}"),
            ("frames", str(report["frames"]))]
    print(f"backend {report['backend']}, {report['runs']} runs")
    for k, v in rows:
        print(f"  {k:<24}{v}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="checkpoint directory or hub id")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"])
    p.add_argument("--build-dir", help="builds/<gpu>/<model> folder (default: found from the model name)")
    p.add_argument("--speaker", help="CustomVoice speaker name")
    p.add_argument("--language", default="auto")
    p.add_argument("--instruct", help="voice description (VoiceDesign, 1.7B CustomVoice)")
    p.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=2048)
    p.add_argument("--chunk-ramp", type=int, nargs="+", default=[1, 2, 4, 8, 10], help="frames per chunk")
    p.add_argument("--non-streaming-text", action="store_true", help="feed the whole text in the prefill")
    p.add_argument("--no-warmup", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qwen3-tts-trt", description="Qwen3-TTS streaming runtime")
    sub = ap.add_subparsers(dest="command", required=True)
    say = sub.add_parser("say", help="synthesize text to a WAV file, streaming")
    say.add_argument("text")
    say.add_argument("-o", "--output", default="out.wav")
    _common(say)
    say.set_defaults(func=_say)
    bench = sub.add_parser("bench", help="time to first chunk, ms per frame, xRT, host overhead")
    bench.add_argument("--runs", type=int, default=6)
    bench.add_argument("--json", help="write the report here")
    _common(bench)
    bench.set_defaults(func=_bench)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Qwen3TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
