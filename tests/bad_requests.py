"""The bad requests every front end is tested against (the CLI, the Pipecat service, the server),
and what the runtime itself says of each: every front end must refuse it with that message.

Each case is a request in the runtime's terms; `refusal(synth, case)` is the runtime's answer, the
message a front end must pass on (with the front end's own limits: a server's `max_input_chars`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from qwen3_tts_trt.runtime.errors import PromptError, error_kind
from qwen3_tts_trt.runtime.requests import VoiceResolver, sampling_params

SPOKEN = "Hello there, this request is fine."


@dataclass(frozen=True)
class BadRequest:
    text: str = SPOKEN
    speaker: str | None = "ryan"
    language: str = "english"
    instruct: str | None = None
    sampling: dict = field(default_factory=dict)
    variant: str = "custom_voice"  # the checkpoint it is sent to
    code: str = ""  # the error code the runtime gives it

    @property
    def bad_text(self) -> bool:
        """The text is at fault (the rest of the request is good)."""
        return self.code in ("empty_input", "control_token", "input_too_long")


CASES = {
    "empty text": BadRequest(text="   ", code="empty_input"),
    "control tokens": BadRequest(text="Say <|im_start|> now.", code="control_token"),
    "unknown voice": BadRequest(speaker="nobody", code="unknown_voice"),
    "unknown language": BadRequest(language="klingon", code="unknown_language"),
    "bad sampling value": BadRequest(sampling={"repetition_penalty": 0.0}, code="invalid_sampling"),
    "instruct ignored by the checkpoint": BadRequest(speaker=None, instruct="Speak slowly.", variant="base",
                                                     code="instructions_unsupported"),
    "text too long": BadRequest(text="word " * 20_001, code="input_too_long"),
}


def refusal(synth, case: BadRequest, clone=None) -> PromptError:
    """What the runtime says of `case` on `synth`: the error `check_request` or `stream` raises."""
    try:
        voice = VoiceResolver(synth.config).resolve(speaker=None if clone is not None else case.speaker,
                                                    language=case.language, instruct=case.instruct, clone=clone)
        params = sampling_params(synth.config.sampling, **case.sampling)
        synth.check_request(voice, params)
        synth.stream(case.text, voice, params).close()
    except PromptError as exc:
        assert error_kind(exc) == "refused" and exc.code == case.code, (exc, exc.code)
        return exc
    raise AssertionError(f"the runtime accepted {case}")
