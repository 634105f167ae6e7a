"""A full voice agent: microphone -> STT -> LLM -> Qwen3-TTS -> speaker, over Pipecat's small
WebRTC transport, started by Pipecat's development runner (open http://localhost:7860/client).

    pip install -e ".[onnx,agent]"
    export OPENAI_API_KEY=...            # or point both services at local OpenAI-compatible servers:
    export OPENAI_BASE_URL=http://localhost:8000/v1
    QWEN3_TTS_MODEL=checkpoints/Qwen3-TTS-12Hz-0.6B-CustomVoice \
    QWEN3_TTS_BUILD=builds/<gpu>/Qwen3-TTS-12Hz-0.6B-CustomVoice \
        python examples/pipecat_voice_agent.py

The STT and the LLM are ordinary OpenAI-compatible Pipecat services, so a local Whisper or vLLM
server works as well as the hosted API. The TTS engines load and warm up once, when the process
starts, and every conversation shares them: they speak one at a time until the runtime batches
streams (the service logs when a conversation waits).

Not run in CI (it needs a browser, a microphone and an LLM); a test imports it and builds its
pipeline, so it cannot rot.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from pipecat.audio.vad.silero import SileroVADAnalyzer  # noqa: E402
from pipecat.frames.frames import LLMRunFrame  # noqa: E402
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.aggregators.llm_context import LLMContext  # noqa: E402
from pipecat.processors.aggregators.llm_response_universal import (  # noqa: E402
    LLMContextAggregatorPair, LLMUserAggregatorParams,
)
from pipecat.runner.types import RunnerArguments  # noqa: E402
from pipecat.runner.utils import create_transport  # noqa: E402
from pipecat.services.openai.llm import OpenAILLMService  # noqa: E402
from pipecat.services.openai.stt import OpenAISTTService  # noqa: E402
from pipecat.transports.base_transport import BaseTransport, TransportParams  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings  # noqa: E402
from qwen3_tts_trt.runtime.stream import Synthesizer  # noqa: E402

SYSTEM_PROMPT = ("You are a friendly voice assistant. Answer in one or two short spoken sentences, "
                 "without lists, markdown or emoji.")

_synthesizer: Synthesizer | None = None


def shared_synthesizer() -> Synthesizer:
    """The engines, opened and warmed once per process and shared by every conversation."""
    global _synthesizer
    if _synthesizer is None:
        _synthesizer = Synthesizer.open(os.environ.get("QWEN3_TTS_MODEL", "checkpoints/tiny-custom-voice"),
                                        os.environ.get("QWEN3_TTS_BUILD"), os.environ.get("QWEN3_TTS_BACKEND", "auto"))
        _synthesizer.warmup()
    return _synthesizer


def build_pipeline(transport: BaseTransport, synthesizer: Synthesizer) -> tuple[Pipeline, LLMContext]:
    stt = OpenAISTTService(api_key=os.environ.get("OPENAI_API_KEY", "none"), base_url=os.environ.get("OPENAI_BASE_URL"))
    llm = OpenAILLMService(api_key=os.environ.get("OPENAI_API_KEY", "none"), base_url=os.environ.get("OPENAI_BASE_URL"))
    tts = Qwen3TTSService(synthesizer=synthesizer, settings=Qwen3TTSSettings(
        voice=os.environ.get("QWEN3_TTS_SPEAKER", "ryan"), language=os.environ.get("QWEN3_TTS_LANGUAGE", "english")))
    context = LLMContext([{"role": "system", "content": SYSTEM_PROMPT}])
    aggregators = LLMContextAggregatorPair(context, user_params=LLMUserAggregatorParams(vad_analyzer=SileroVADAnalyzer()))
    pipeline = Pipeline([transport.input(), stt, aggregators.user(), llm, tts, transport.output(),
                         aggregators.assistant()])
    return pipeline, context


async def bot(runner_args: RunnerArguments):
    """The entry point Pipecat's runner calls for each new conversation."""
    transport = await create_transport(runner_args, {
        "webrtc": lambda: TransportParams(audio_in_enabled=True, audio_out_enabled=True),
    })
    pipeline, context = build_pipeline(transport, shared_synthesizer())
    worker = PipelineWorker(pipeline, params=PipelineParams(enable_metrics=True, enable_usage_metrics=True))

    @transport.event_handler("on_client_connected")
    async def on_client_connected(transport, client):
        context.add_message({"role": "user", "content": "Say hello and ask how you can help."})
        await worker.queue_frames([LLMRunFrame()])

    @transport.event_handler("on_client_disconnected")
    async def on_client_disconnected(transport, client):
        await worker.cancel()

    runner = WorkerRunner(handle_sigint=runner_args.handle_sigint)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    from pipecat.runner.run import main

    shared_synthesizer()  # load before the first caller connects, not during their first turn
    main()
