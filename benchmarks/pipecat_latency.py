"""Latency of Qwen3TTSService in a real Pipecat pipeline (prints figures, writes JSON).

1. The service's added latency: Pipecat's TTFB for a `TTSSpeakFrame` next to the `Synthesizer`'s own
   time to first chunk for the same utterance.
2. Speech while the LLM writes: a simulated LLM streams a reply at a fixed token rate; the time from
   its first token to the first audio frame out of the service, sentence mode vs text streaming.

    python benchmarks/pipecat_latency.py -m checkpoints/tiny-custom-voice --build-dir builds/cpu/tiny-custom-voice
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipecat.frames.frames import (  # noqa: E402
    EndFrame, LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame, MetricsFrame, TTSAudioRawFrame,
    TTSSpeakFrame, TTSStoppedFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings  # noqa: E402
from qwen3_tts_trt.runtime.stream import Synthesizer  # noqa: E402

REPLY = ("Sure, I can help with that. Your order shipped this morning and should arrive on Thursday. "
         "Is there anything else you would like to know?")
SPEAK = "Thanks for calling. How can I help you today?"


class Probe(FrameProcessor):
    """Notes when the first audio frame of a turn passes, Pipecat's TTFB figures, and turn ends."""

    def __init__(self):
        super().__init__()
        self.first_audio_at: float | None = None
        self.ttfb_s: list[float] = []
        self.turn_done = asyncio.Event()

    async def process_frame(self, frame, direction):
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame) and self.first_audio_at is None:
            self.first_audio_at = time.perf_counter()
        elif isinstance(frame, MetricsFrame):
            self.ttfb_s += [d.value for d in frame.data if isinstance(d, TTFBMetricsData) and d.value > 0]
        elif isinstance(frame, TTSStoppedFrame):
            self.turn_done.set()
        await self.push_frame(frame, direction)


async def run_turns(tts: Qwen3TTSService, turn, runs: int) -> list[dict]:
    probe = Probe()
    worker = PipelineWorker(Pipeline([tts, probe]), cancel_on_idle_timeout=False,
                            params=PipelineParams(enable_metrics=True))
    started = asyncio.Event()
    results = []

    @worker.event_handler("on_pipeline_started")
    async def _started(worker, frame):
        started.set()

    async def drive():
        await started.wait()
        for _ in range(runs):
            probe.first_audio_at, probe.ttfb_s = None, []
            probe.turn_done.clear()
            t0 = await turn(worker)
            await probe.turn_done.wait()
            m = tts.last_metrics
            results.append(dict(first_audio_ms=1000 * (probe.first_audio_at - t0),
                                pipecat_ttfb_ms=1000 * probe.ttfb_s[0] if probe.ttfb_s else None,
                                synth_ttfc_ms=m.ttfc_ms, text_stall_ms=m.text_stall_ms, frames=m.frames))
            await asyncio.sleep(0.2)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.gather(runner.run(), drive())
    return results


def speak_turn(text):
    async def turn(worker):
        t0 = time.perf_counter()
        await worker.queue_frame(TTSSpeakFrame(text))
        return t0
    return turn


def llm_turn(tokens: list[str], rate: float):
    """A reply streamed at `rate` tokens/s in the background; returns when its first token is queued."""
    async def turn(worker):
        await worker.queue_frame(LLMFullResponseStartFrame())
        t0 = time.perf_counter()

        async def write():
            for i, token in enumerate(tokens):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.perf_counter()))
                await worker.queue_frame(LLMTextFrame(token))
            await worker.queue_frame(LLMFullResponseEndFrame())

        asyncio.get_running_loop().create_task(write())
        return t0
    return turn


def word_tokens(text: str) -> list[str]:
    """LLM-like tokens: words with their leading space, punctuation on its own."""
    import re

    return re.findall(r" ?[A-Za-z']+| ?[^A-Za-z' ]", text)


def summary(rows, key):
    values = [r[key] for r in rows if r[key] is not None]
    return dict(p50=statistics.median(values), min=min(values), max=max(values)) if values else None


async def main_async(args) -> dict:
    synth = Synthesizer.open(args.model, args.build_dir, args.backend)
    synth.warmup()
    settings = Qwen3TTSSettings(voice=args.speaker, language="english", greedy=True)
    report = dict(backend=synth.backend_name, model=str(args.model), runs=args.runs, llm_tokens_per_s=args.rate)
    speak = await run_turns(Qwen3TTSService(synthesizer=synth, settings=settings), speak_turn(SPEAK), args.runs)
    report["speak"] = dict(pipecat_ttfb_ms=summary(speak, "pipecat_ttfb_ms"), synth_ttfc_ms=summary(speak, "synth_ttfc_ms"),
                           first_audio_ms=summary(speak, "first_audio_ms"), per_run=speak)
    tokens = word_tokens(REPLY)
    for mode, streaming in (("sentence", False), ("text_streaming", True)):
        tts = Qwen3TTSService(synthesizer=synth, settings=settings, text_streaming=streaming)
        rows = await run_turns(tts, llm_turn(tokens, args.rate), args.runs)
        report[mode] = dict(first_token_to_first_audio_ms=summary(rows, "first_audio_ms"), per_run=rows)
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", default="checkpoints/tiny-custom-voice")
    ap.add_argument("--build-dir", default="builds/cpu/tiny-custom-voice")
    ap.add_argument("--backend", default="onnx")
    ap.add_argument("--speaker", default="ryan")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rate", type=float, default=30.0, help="simulated LLM tokens per second")
    ap.add_argument("--json", type=Path, default=Path("out/pipecat-latency.json"))
    args = ap.parse_args()
    report = asyncio.run(main_async(args))
    s = report["speak"]
    print(f"backend {report['backend']}, {args.runs} runs (p50, min-max)")
    print(f"  TTSSpeakFrame: Pipecat TTFB {s['pipecat_ttfb_ms']['p50']:.1f} ms, synthesizer first chunk "
          f"{s['synth_ttfc_ms']['p50']:.1f} ms: the service adds {s['pipecat_ttfb_ms']['p50'] - s['synth_ttfc_ms']['p50']:.1f} ms")
    for mode in ("sentence", "text_streaming"):
        f = report[mode]["first_token_to_first_audio_ms"]
        print(f"  LLM at {args.rate:.0f} tokens/s, {mode}: first token -> first audio {f['p50']:.1f} ms "
              f"({f['min']:.1f}-{f['max']:.1f})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
