"""What `say` and `bench` share: their synthesis options, and what those become (the synthesizer,
the voice, the sampling parameters); and argparse types that refuse a bad value before anything runs.

Both stream through the `Synthesizer` on the backend you name (`--backend auto` runs the build's
TensorRT engines, or its ONNX graphs on a build without engines, or PyTorch when there is no
build; a build that cannot run here is an error unless `--fallback` is given). The build folder
defaults to builds/<this GPU or cpu>/<model folder name> when it exists; the runtime checks that
it was built from this very checkpoint.
"""

from __future__ import annotations

import argparse

from .errors import UsageError


# -- argument types: one line each, found by argparse before anything runs -----------------------
def int_at_least(low: int, what: str = ""):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{what}, got {value}")
        return value

    return parse


# -- the options say and bench share, and what they become -----------------------------------------
def add_synthesis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="checkpoint directory or hub id")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                   help="auto: the build's TensorRT engines, else its ONNX graphs; PyTorch without a build")
    p.add_argument("--fallback", action="store_true",
                   help="if the build cannot run here, run the next backend (said on stderr) instead of failing")
    p.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    p.add_argument("--speaker", help="CustomVoice speaker name (--list-voices shows them)")
    p.add_argument("--language", default="auto", help="language name, or auto (--list-voices shows them)")
    p.add_argument("--instruct", help="voice description (VoiceDesign, 1.7B CustomVoice)")
    p.add_argument("--greedy", action="store_true",
                   help="argmax decoding (with the checkpoint's repetition penalty) instead of sampling")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="random seed for sampling")
    p.add_argument("--max-new-tokens", type=int_at_least(2, " (one frame needs two)"), default=2048,
                   help="codebook-0 samples per text piece, as the official max_new_tokens (frames = this - 1)")
    sampling = p.add_argument_group("sampling (official names; default: the checkpoint's generation_config)")
    sampling.add_argument("--temperature", type=float, help="codebook 0")
    sampling.add_argument("--top-k", type=int, help="codebook 0 (0: off)")
    sampling.add_argument("--top-p", type=float, help="codebook 0")
    sampling.add_argument("--repetition-penalty", type=float, help="codebook 0")
    sampling.add_argument("--subtalker-temperature", type=float, help="codebooks 1-15")
    sampling.add_argument("--subtalker-top-k", type=int, help="codebooks 1-15")
    sampling.add_argument("--subtalker-top-p", type=float, help="codebooks 1-15")
    p.add_argument("--chunk-ramp", type=int_at_least(1), nargs="+", default=[1, 2, 4, 8, 10],
                   help="frames per audio chunk, in order; the last size repeats")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--non-streaming-text", action="store_true",
                        help="feed the whole text in the prefill (official non_streaming_mode=True)")
    layout.add_argument("--official-layout", action="store_true",
                        help="the official generate_* default: whole text in the prefill for CustomVoice and "
                             "VoiceDesign, streaming text for clones (default here: streaming text, lower latency)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up run after loading")


def open_synthesizer(args):
    from qwen3_tts_trt.runtime.manifest import default_build_dir
    from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer

    build_dir = args.build_dir or default_build_dir(args.model)
    options = StreamOptions(chunk_ramp=tuple(args.chunk_ramp))
    synth = Synthesizer.open(args.model, build_dir, args.backend, options=options, fallback=args.fallback)
    if not args.no_warmup:
        synth.warmup()
    return synth


def voice_of(args, synth):
    from qwen3_tts_trt.runtime.requests import VoiceResolver

    non_streaming = args.non_streaming_text
    if args.official_layout:  # what the official generate_* calls default to
        non_streaming = synth.config.variant != "base"
    clone = getattr(args, "voice", None)
    if clone and (args.speaker or args.instruct):
        raise UsageError("--voice clones a voice; it cannot be combined with --speaker or --instruct")
    return VoiceResolver(synth.config).resolve(speaker=args.speaker, language=args.language, instruct=args.instruct,
                                               clone=clone, non_streaming_text=non_streaming)


def params_of(synth, args, seed=None):
    from qwen3_tts_trt.runtime.requests import SAMPLING_FIELDS, sampling_params

    fields = {name: getattr(args, name) for name in SAMPLING_FIELDS}
    fields["seed"] = args.seed if seed is None else seed
    return sampling_params(synth.config.sampling, greedy=args.greedy, **fields)
