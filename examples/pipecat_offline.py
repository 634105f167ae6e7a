"""A real Pipecat pipeline with no network service: an LLM-like turn of text frames goes into
`Qwen3TTSService`, and a small frame processor writes the audio it receives to a WAV.

Runs offline on the tiny checkpoint that the README's first command makes:

    python examples/pipecat_offline.py -m checkpoints/tiny-custom-voice -o out/pipecat.wav

It prints, per turn, Pipecat's TTFB (text handed to the service -> first audio frame out of it),
the synthesizer's own time to first chunk, and the real-time factor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import soundfile as sf  # noqa: E402
from pipecat.frames.frames import (  # noqa: E402
    EndFrame, Frame, LLMFullResponseEndFrame, LLMFullResponseStartFrame, MetricsFrame, TextFrame, TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings  # noqa: E402
from qwen3_tts_trt.runtime.manifest import default_build_dir  # noqa: E402

TURNS = [
    "Hello! Thanks for calling. How can I help you today?",
    "Your order has shipped. It should arrive on Thursday, between nine and noon.",
]


class WavWriter(FrameProcessor):
    """Writes every TTS audio frame it sees to one mono PCM16 WAV (through soundfile), and tells
    the driver when a turn's audio has ended and what Pipecat measured for it."""

    def __init__(self, path: Path, sample_rate: int):
        super().__init__()
        self.path = path
        self.partial = path.with_name(f".{path.stem}.partial.wav")
        self.wav = sf.SoundFile(self.partial, "w", samplerate=sample_rate, channels=1, format="WAV", subtype="PCM_16")
        self.samples = 0
        self.ttfb_s: list[float] = []
        self.turn_done = asyncio.Event()

    async def process_frame(self, frame: Frame, direction: FrameDirection):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            self.wav.buffer_write(frame.audio, dtype="int16")
            self.samples += len(frame.audio) // 2
        elif isinstance(frame, MetricsFrame):
            self.ttfb_s += [d.value for d in frame.data if isinstance(d, TTFBMetricsData) and d.value > 0]
        elif isinstance(frame, TTSStoppedFrame):
            self.turn_done.set()
        await self.push_frame(frame, direction)

    def close(self, keep: bool) -> None:
        """Move the WAV into place only once it is whole: a failed run leaves the old file."""
        self.wav.close()
        if keep:
            self.partial.replace(self.path)
        else:
            self.partial.unlink()


async def speak(args) -> dict:
    settings = Qwen3TTSSettings(voice=args.speaker, language=args.language, seed=args.seed,
                                greedy=args.greedy, max_new_tokens=args.max_new_tokens)
    tts = Qwen3TTSService.from_pretrained(args.model, args.build_dir or default_build_dir(args.model),
                                          backend=args.backend, settings=settings)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    writer = WavWriter(args.output, args.sample_rate)
    worker = PipelineWorker(Pipeline([tts, writer]), cancel_on_idle_timeout=False,
                            params=PipelineParams(audio_out_sample_rate=args.sample_rate, enable_metrics=True))
    started = asyncio.Event()
    turns = []

    errors: list[str] = []

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):
        started.set()

    @worker.event_handler("on_pipeline_error")
    async def on_error(worker, frame):
        errors.append(frame.error)
        writer.turn_done.set()

    async def drive():
        await asyncio.wait_for(started.wait(), timeout=600)  # engines load and warm up in start()
        for text in TURNS * args.runs:
            writer.turn_done.clear()
            before, t0 = writer.samples, time.perf_counter()
            await worker.queue_frames([LLMFullResponseStartFrame(), TextFrame(text), LLMFullResponseEndFrame()])
            await writer.turn_done.wait()
            if not tts.is_usable:
                break  # the service reported why (an ErrorFrame); nothing more can be spoken
            wall = time.perf_counter() - t0
            audio_s = (writer.samples - before) / args.sample_rate
            m = tts.last_metrics
            turns.append(dict(text=text, ttfb_ms=1000 * writer.ttfb_s[-1] if writer.ttfb_s else None,
                              synth_ttfc_ms=m.ttfc_ms if m else None, audio_s=audio_s, wall_s=wall,
                              xrt=audio_s / wall, frames=m.frames if m else None))
            t = turns[-1]
            print(f"turn {len(turns)}: TTFB {t['ttfb_ms']:.1f} ms (synthesizer first chunk {t['synth_ttfc_ms']:.1f} ms), "
                  f"{audio_s:.2f} s of audio, xRT {t['xrt']:.2f}")
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), drive())
    writer.close(keep=bool(turns) and tts.is_usable)
    if not tts.is_usable or not turns:
        raise SystemExit(f"error: {errors[0] if errors else 'no turn was spoken'}")
    return dict(backend=tts.synthesizer.backend_name, model=str(args.model), sample_rate=args.sample_rate,
                turns=turns)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default="checkpoints/tiny-custom-voice", help="checkpoint directory")
    ap.add_argument("--build-dir", help="build.sh output (default: builds/<gpu or cpu>/<model name>)")
    ap.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"])
    ap.add_argument("--speaker", default="ryan")
    ap.add_argument("--language", default="english")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--greedy", action="store_true")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="cap per sentence (default: the checkpoint's)")
    ap.add_argument("--sample-rate", type=int, default=24000, help="the pipeline's audio_out_sample_rate")
    ap.add_argument("--runs", type=int, default=1, help="repeat the two turns this many times")
    ap.add_argument("-o", "--output", type=Path, default=Path("out/pipecat.wav"))
    ap.add_argument("--json", type=Path, help="write the per-turn figures here")
    args = ap.parse_args()
    report = asyncio.run(speak(args))
    print(f"wrote {args.output}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
