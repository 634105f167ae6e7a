"""Request bodies: OpenAI's `POST /v1/audio/speech` plus the vLLM-Omni / SGLang-Omni extension
fields, and the WebSocket session's first message. Unknown fields are refused, so that a typo
(`instruction`, `ref_audio_b64`) is an error rather than a silently different voice."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from qwen3_tts_trt.runtime.requests import SAMPLING_FIELDS


class VoiceFields(BaseModel):
    """Who speaks, and the sampling settings: shared by both endpoints."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str | None = None
    voice: str | None = Field(default=None, validation_alias=AliasChoices("voice", "speaker"))  # SGLang-Omni's alias
    language: str | None = None
    instructions: str | None = None
    task_type: str | None = None
    ref_audio: str | None = None
    ref_text: str | None = None
    x_vector_only_mode: bool = False
    # sampling, by the official names (runtime.requests.SAMPLING_FIELDS): the checkpoint's
    # generation_config unless given; values are checked by the runtime, as for every front end
    greedy: bool = False
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float | None = None
    subtalker_temperature: float | None = None
    subtalker_top_k: int | None = None
    subtalker_top_p: float | None = None
    seed: int | None = None
    max_new_tokens: int | None = None

    def sampling(self) -> dict:
        return {k: getattr(self, k) for k in SAMPLING_FIELDS if getattr(self, k) is not None}


class SpeechRequest(VoiceFields):
    input: str
    response_format: str = "wav"
    speed: float | None = None
    stream_format: str | None = None  # OpenAI: "audio" (raw body) or "sse"; only "audio" is served
    stream: bool | None = None  # vLLM-Omni's flag; the body always streams here


class SessionConfig(VoiceFields):
    """The WebSocket's first message: {"type": "session.config", "voice": ..., ...}."""

    type: str = "session.config"
    response_format: str = "pcm"
    api_key: str | None = Field(default=None, repr=False)  # for browsers, which cannot set Authorization
