"""qwen3-tts-trt: Qwen3-TTS-12Hz compiled into engines and streamed into voice agents.

    from qwen3_tts_trt import Synthesizer, Voice

The parts live in subpackages, each a folder at the repository's top level: `runtime` (prompt,
frame loop, codec, backends; imports no front end), `export` (the build toolchain), `serve` (Ray
Serve), `pipecat_service` (Pipecat), `commands` (the `qwen3-tts-trt` command line). The names below are imported on first use, so that a
command's `--help` does not load torch.
"""

from __future__ import annotations

import importlib

_PUBLIC = {
    "Synthesizer": "qwen3_tts_trt.runtime.stream",
    "StreamOptions": "qwen3_tts_trt.runtime.stream",
    "AudioChunk": "qwen3_tts_trt.runtime.stream",
    "UtteranceMetrics": "qwen3_tts_trt.runtime.stream",
    "Voice": "qwen3_tts_trt.runtime.voice",
    "VoiceMaker": "qwen3_tts_trt.runtime.voice",
    "SamplingParams": "qwen3_tts_trt.runtime.sampling",
    "TextInput": "qwen3_tts_trt.runtime.text_stream",
    "EngineLimits": "qwen3_tts_trt.runtime.contract",
    "Qwen3TTSError": "qwen3_tts_trt.runtime.errors",
    "PromptError": "qwen3_tts_trt.runtime.errors",
    "VoiceError": "qwen3_tts_trt.runtime.errors",
    "CheckpointError": "qwen3_tts_trt.runtime.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'qwen3_tts_trt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC))
