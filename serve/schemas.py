"""Request bodies: OpenAI's `POST /v1/audio/speech` plus the vLLM-Omni / SGLang-Omni extension
fields, and the WebSocket session's first message. Unknown fields are refused, so that a typo
(`instruction`, `ref_audio_b64`) is an error rather than a silently different voice."""

from __future__ import annotations

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

FORMATS = ("pcm", "wav")  # what the body can be while it streams; mp3/opus/aac/flac would need an encoder


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
    # sampling (the checkpoint's generation_config unless given)
    greedy: bool = False
    seed: int | None = Field(default=None, ge=0)
    max_new_tokens: int | None = Field(default=None, ge=2)
    temperature: float | None = Field(default=None, gt=0)
    top_k: int | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, gt=0, le=1)

    def sampling(self) -> dict:
        fields = ("seed", "max_new_tokens", "temperature", "top_k", "top_p")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}


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
