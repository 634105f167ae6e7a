"""The front door of a request: what the CLI, the Pipecat service and the server each turn their
inputs into, so that the same request means the same thing, and fails the same way, everywhere.

- `SAMPLING_FIELDS` and `sampling_params(...)`: the sampling settings a request may set, by their
  official `qwen-tts` names, and the one way to make `SamplingParams` from them (`greedy` is the
  official `do_sample=False`).
- `VoiceResolver.resolve(...)`: who speaks. A CustomVoice request without a speaker gets the
  checkpoint's first; a cloned voice (a `Voice`, or a `.voice` file) speaks its own language unless
  the request names one; `instruct` on a checkpoint that ignores it is refused (the official
  wrapper drops it silently, which leaves a user wondering why the voice ignores the description).
- The request itself (text, voice, settings) is then checked by `Synthesizer.check_request` and
  `stream()` against the engines' limits (`request_plan.RequestPlanner`), and every error is
  classified by `errors.error_kind`: refused, busy, or a failure.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from .config import ModelConfig, SamplingDefaults
from .errors import PromptError
from .sampling import SamplingParams
from .voice import VOICE_SUFFIX, Voice, VoiceLibrary, check_voice_fits

SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "repetition_penalty",
                   "subtalker_temperature", "subtalker_top_k", "subtalker_top_p", "seed", "max_new_tokens")


def sampling_params(defaults: SamplingDefaults, *, greedy: bool = False, **fields) -> SamplingParams:
    """`SamplingParams` from the checkpoint's defaults and the settings a request gives (None: the
    default). Values are checked where the request is (`Synthesizer.check_request`)."""
    unknown = sorted(set(fields) - set(SAMPLING_FIELDS))
    if unknown:
        raise PromptError(f"unknown sampling setting(s) {', '.join(unknown)}; the settings are: "
                          f"{', '.join(SAMPLING_FIELDS)}", field=unknown[0], code="unknown_setting")
    given = {k: v for k, v in fields.items() if v is not None}
    return SamplingParams.greedy(defaults, **given) if greedy else SamplingParams.from_defaults(defaults, **given)


def instruct_refused(config: ModelConfig) -> PromptError:
    return PromptError(f"this {config.size} {config.variant} checkpoint does not follow instructions "
                       "(VoiceDesign and 1.7B CustomVoice do): leave the instruct out",
                       field="instruct", code="instructions_unsupported")


class VoiceResolver:
    """Request fields -> `Voice`, by one set of rules for every front end. `library` reads `.voice`
    files once and checks that each was made for this model."""

    def __init__(self, config: ModelConfig, library: VoiceLibrary | None = None):
        self.config, self.library = config, library

    def resolve(self, *, speaker: str | None = None, language: str | None = None, instruct: str | None = None,
                clone: Voice | str | os.PathLike | None = None, non_streaming_text: bool = False) -> Voice:
        language = (language or "auto").strip().lower() or "auto"
        instruct = instruct.strip() if isinstance(instruct, str) and instruct.strip() else None
        if instruct is not None and not self.config.supports_instruct:
            raise instruct_refused(self.config)
        if clone is None and isinstance(speaker, (str, os.PathLike)) and str(speaker).endswith(VOICE_SUFFIX):
            clone, speaker = speaker, None
        if clone is not None:
            voice = self._clone(clone)
            return replace(voice, language=voice.language if language == "auto" else language,
                           non_streaming_text=non_streaming_text)
        if not speaker and self.config.variant == "custom_voice":
            speaker = next(iter(self.config.speakers))
        return Voice(speaker=speaker.strip() if isinstance(speaker, str) else speaker, language=language,
                     instruct=instruct, non_streaming_text=non_streaming_text)

    def _clone(self, clone) -> Voice:
        if isinstance(clone, Voice):
            check_voice_fits(clone, self.config)
            return clone
        if self.library is not None:
            return self.library.get(clone)
        return Voice.load(Path(clone).expanduser(), self.config)
