"""Time to make a voice from a recording: this runtime (ONNX Runtime and PyTorch, CPU) against
the official qwen-tts `create_voice_clone_prompt`, on the same machine, checkpoint and audio.

    python -m qwen3_tts_trt.export.bench_voice --checkpoint checkpoints/0.6b-base --json out/bench-voice.json

A voice here is what the official prompt item holds: the x-vector and the ICL reference codes of
a WAV file (read, mixed to mono, resampled to 24 kHz, both encoders). The recordings are made by
this script (speech-like tones and noise at 44.1 kHz stereo), 3 s and 10 s. Each figure is the
median of --runs timed calls after one untimed warm-up call; the graphs are exported from the
checkpoint first (the voice encoders only) unless --graphs names a folder that holds them.
Needs the test extra and qwen-tts (see README) for the official side.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REF_TEXT = "This is the reference recording of the speaker."


def speech_like(seconds: float, rate: int = 44100, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    phase = 2 * np.pi * np.cumsum(140 + 25 * np.sin(2 * np.pi * 0.7 * t)) / rate
    voiced = (0.35 * np.sin(phase) + 0.15 * np.sin(3 * phase)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2)
    return np.stack([voiced + 0.03 * rng.standard_normal(t.shape), 0.7 * voiced], axis=1).astype(np.float32)


def timed(fn, runs: int) -> dict:
    fn()  # warm-up: first-call allocations and kernel selection are not what a user waits for each time
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return dict(median_ms=round(1000 * statistics.median(times), 1), min_ms=round(1000 * min(times), 1), runs=runs)


def export_voice_graphs(checkpoint: Path, out: Path) -> dict[str, Path]:
    from qwen3_tts_trt.runtime.config import load_model_config
    from qwen3_tts_trt.runtime.contract import VOICE_ENGINES, EngineLimits, engine_specs

    from . import onnx_graphs

    specs = engine_specs(load_model_config(checkpoint), EngineLimits())
    modules = onnx_graphs.voice_encoder_modules(checkpoint)
    paths = {}
    for name in VOICE_ENGINES:
        paths[name] = out / f"{name}.onnx"
        if not paths[name].exists():
            onnx_graphs.export_engine(name, modules[name], specs[name], EngineLimits(), paths[name])
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="a Base checkpoint (e.g. the 0.6b random one)")
    ap.add_argument("--graphs", help="folder for the exported voice graphs (default: a temporary one)")
    ap.add_argument("--seconds", type=float, nargs="+", default=[3.0, 10.0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-official", action="store_true", help="skip the official side")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    import soundfile as sf
    import torch

    from qwen3_tts_trt.runtime.backends.encoders import OnnxVoiceEncoders, TorchVoiceEncoders
    from qwen3_tts_trt.runtime.voice import make_voice

    checkpoint = Path(args.checkpoint)
    work = Path(tempfile.mkdtemp(prefix="bench-voice-"))
    graphs = export_voice_graphs(checkpoint, Path(args.graphs) if args.graphs else work)
    torch_enc = TorchVoiceEncoders(checkpoint, "cpu")
    onnx_enc = OnnxVoiceEncoders(torch_enc.config, torch_enc.model_name, graphs)
    official = None
    if not args.no_official:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from official import load_official

        official = load_official(str(checkpoint))

    results = []
    for seconds in args.seconds:
        wav = work / f"ref-{seconds:g}s.wav"
        sf.write(str(wav), speech_like(seconds), 44100)
        row = dict(seconds=seconds, file="44.1 kHz stereo WAV")
        row["onnxruntime"] = timed(lambda: make_voice(onnx_enc, wav, REF_TEXT), args.runs)
        row["torch"] = timed(lambda: make_voice(torch_enc, wav, REF_TEXT), args.runs)
        if official is not None:
            row["official"] = timed(lambda: official.create_voice_clone_prompt(str(wav), REF_TEXT), args.runs)
            row["speedup_onnxruntime_vs_official"] = round(row["official"]["median_ms"]
                                                           / row["onnxruntime"]["median_ms"], 2)
        results.append(row)
        print(f"{seconds:g} s: ONNX Runtime {row['onnxruntime']['median_ms']} ms, PyTorch {row['torch']['median_ms']} ms"
              + (f", official {row['official']['median_ms']} ms (x{row['speedup_onnxruntime_vs_official']})"
                 if official is not None else ""))

    report = dict(
        what="time to make an ICL voice (x-vector + reference codes) from a WAV file, median of runs",
        checkpoint=str(checkpoint), config=torch_enc.config.speaker_encoder.__dict__ | {"size": torch_enc.config.size},
        results=results, date=time.strftime("%Y-%m-%d", time.gmtime()), commit=_commit(),
        machine=dict(cpu=platform.processor() or platform.machine(), cores=_cores(), python=platform.python_version(),
                     torch=torch.__version__, onnxruntime=_version("onnxruntime"), torch_threads=torch.get_num_threads()),
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except OSError:
        return None


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
