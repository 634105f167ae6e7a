"""Command line: `qwen3-tts-trt say "text" -o out.wav` (PyTorch reference backend for now)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .errors import Qwen3TTSError


def _say(args) -> int:
    import numpy as np
    import soundfile as sf
    from .prompt import Voice
    from .reference import Reference
    from .sampling import SamplingParams

    t0 = time.perf_counter()
    ref = Reference.load(args.model, max_context=args.max_context)
    t_load = time.perf_counter() - t0
    overrides = dict(max_new_tokens=args.max_new_tokens, seed=args.seed)
    params = SamplingParams.greedy(**overrides) if args.greedy else \
        SamplingParams.from_defaults(ref.config.sampling, **overrides)
    voice = Voice(speaker=args.speaker, language=args.language, instruct=args.instruct,
                  non_streaming_text=args.non_streaming_text)
    t1 = time.perf_counter()
    result = ref.generate(args.text, voice, params)
    pcm = ref.decode(result.codes).numpy()
    t_gen = time.perf_counter() - t1
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sf.write(args.output, (np.clip(pcm, -1, 1) * 32767).astype(np.int16), ref.config.codec.sample_rate,
             subtype="PCM_16")
    seconds = len(pcm) / ref.config.codec.sample_rate
    print(f"wrote {args.output}: {result.codes.shape[0]} frames, {seconds:.2f} s of audio, end: {result.end_reason}; "
          f"load {t_load:.1f} s, synthesis {t_gen:.2f} s (xRT {seconds / max(t_gen, 1e-9):.2f})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="qwen3-tts-trt", description="Qwen3-TTS streaming runtime")
    sub = ap.add_subparsers(dest="command", required=True)
    say = sub.add_parser("say", help="synthesize text to a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--output", default="out.wav")
    say.add_argument("-m", "--model", required=True, help="checkpoint directory or hub id")
    say.add_argument("--speaker", help="CustomVoice speaker name")
    say.add_argument("--language", default="auto")
    say.add_argument("--instruct", help="voice description (VoiceDesign, 1.7B CustomVoice)")
    say.add_argument("--greedy", action="store_true", help="argmax decoding instead of sampling")
    say.add_argument("--seed", type=int, default=None)
    say.add_argument("--max-new-tokens", type=int, default=2048)
    say.add_argument("--max-context", type=int, default=4096)
    say.add_argument("--non-streaming-text", action="store_true", help="feed the whole text in the prefill")
    say.set_defaults(func=_say)
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
