"""How long `Synthesizer.stream()` takes to validate and split pathological text before its first
frame, and how much the process grows: one unbroken 5,000-character word, 2,500 one-letter
words, 300 sentences, 4,500 CJK characters. Prints a table and writes JSON.

    python benchmarks/text_planning.py -m CHECKPOINT --build-dir BUILD [--json out/text-planning.json]

Only the call to stream() is timed (validation and splitting happen there; no frame is made).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TEXTS = {
    "one 5,000-char word": "x" * 5000,
    "2,500 one-letter words": "a " * 2500,
    "300 sentences (18,900 chars)": "This is a long sentence that keeps the model busy for a while. " * 300,
    "4,500 CJK chars": "日本語" * 1500,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--speaker", default="ryan")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    from qwen3_tts_trt.runtime.stream import Synthesizer
    from qwen3_tts_trt.runtime.voice import Voice

    synth = Synthesizer.open(args.model, args.build_dir, "onnx")
    voice = Voice(speaker=args.speaker, language="english")
    rows = []
    for name, text in TEXTS.items():
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        stream = synth.stream(text, voice)
        seconds = time.perf_counter() - t0
        stream.close()
        rows.append(dict(text=name, chars=len(text), seconds=round(seconds, 3),
                         max_rss_growth_mb=round((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024, 1)))
        print(f"{name:<32}{seconds:8.2f} s   max RSS +{rows[-1]['max_rss_growth_mb']} MB", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(dict(limits=synth.backend.limits.to_dict(), rows=rows), indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
