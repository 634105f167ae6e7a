"""`qwen3-tts-trt voice create`: a reference recording encoded once into a reusable .voice file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .errors import UsageError


def add_parser(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    voice = sub.add_parser("voice", help="clone a voice from a recording (Base checkpoints)", formatter_class=fmt)
    actions = voice.add_subparsers(dest="voice_command", required=True, metavar="{create}")
    create = actions.add_parser(
        "create", formatter_class=fmt, help="encode a reference recording once into a reusable .voice file",
        description="Encode a 1 to 30 s recording (WAV, FLAC or OGG; any rate from 8 to 192 kHz, mixed to mono) "
                    "into NAME.voice: the x-vector, and for ICL the reference codes and transcript. "
                    "Speak with it: qwen3-tts-trt say --voice NAME.voice ...")
    create.add_argument("audio", help="the reference recording")
    create.add_argument("--ref-text", help="transcript of the recording (needed for ICL, the default mode)")
    create.add_argument("--x-vector-only", action="store_true",
                        help="clone from the speaker embedding alone (no transcript; weaker likeness)")
    create.add_argument("-o", "--output", required=True, help="the voice file to write (NAME.voice)")
    create.add_argument("-m", "--model", required=True, help="Base checkpoint directory or hub id")
    create.add_argument("--language", default="auto", help="language the voice speaks by default")
    create.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                        help="auto: the build's engines, else its ONNX graphs; PyTorch without a build")
    create.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    create.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    create.set_defaults(func=run)


def run(args) -> int:
    from qwen3_tts_trt.runtime.voice import VoiceMaker, save_voice

    output = Path(args.output).expanduser()
    if output.suffix != ".voice":
        raise UsageError(f"the voice file name must end in .voice (got {output.name}); e.g. -o {output.stem}.voice")
    if output.parent and not output.parent.is_dir():
        raise UsageError(f"folder {output.parent} does not exist; create it or choose another -o")
    if not args.x_vector_only and not (args.ref_text and args.ref_text.strip()):
        raise UsageError("ICL cloning needs the transcript of the reference: --ref-text \"...\" "
                         "(or --x-vector-only to clone from the speaker embedding alone)")
    from qwen3_tts_trt.runtime.voice import reference_audio

    reference_audio(args.audio)  # a bad recording fails here, before the model loads
    t0 = time.perf_counter()
    from qwen3_tts_trt.runtime.manifest import default_build_dir

    build_dir = args.build_dir or default_build_dir(args.model)
    maker = VoiceMaker.open(args.model, build_dir, args.backend)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    voice = maker.make(args.audio, args.ref_text, x_vector_only=args.x_vector_only, language=args.language)
    t_encode = time.perf_counter() - t0
    save_voice(voice, output)
    if not args.quiet:
        mode = "x-vector only" if voice.ref_codes is None else f"ICL, {voice.ref_codes.shape[0]} reference frames"
        print(f"wrote {output}: {mode}, for {voice.made_for.model} ({voice.made_for.variant} {voice.made_for.size}); "
              f"backend {maker.encoders.name}, load {t_load:.1f} s, encode {t_encode * 1000:.0f} ms")
    return 0
