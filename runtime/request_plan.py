"""A request, checked and planned before any engine runs: its settings, its voice, its text split
into pieces that each fit one talker context, and each piece's frame cap (the EOS guard).

Whole text and arriving text share one fit rule: a piece fits when its prompt fits the prefill
engine and its text positions plus the frames the EOS guard allows fit one context.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import ASSISTANT_TEMPLATE
from .contract import EngineLimits
from .errors import PromptError
from .prompt import ASSISTANT_SUFFIX_LEN, ROLE_LEN, PromptBuilder, PromptShape
from .sampling import SamplingParams
from .text_split import split_text
from .voice import Voice


@dataclass(frozen=True)
class StreamOptions:
    chunk_ramp: tuple[int, ...] = (1, 2, 4, 8, 10)  # frames per chunk; the last size repeats
    base_frames: int = 50  # EOS guard: 4 s of audio ...
    frames_per_token: float = 10.0  # ... plus 0.8 s per text token (speech runs at ~3-5 frames a token)
    max_frames: int = 4096  # absolute cap per segment (5.5 minutes)
    max_text_chars: int = 100_000  # longer requests are refused (about two hours of speech): bounded memory


def text_too_long(chars: int, limit: int) -> PromptError:
    return PromptError(f"text has {chars:,} characters; one request takes at most {limit:,}: send it in parts",
                       field="text", code="input_too_long")


class RequestPlanner:
    def __init__(self, prompts: PromptBuilder, limits: EngineLimits, options: StreamOptions):
        self.prompts, self.limits, self.options = prompts, limits, options

    def frame_cap(self, text_ids: int) -> int:
        """The EOS guard: the most frames a piece of `text_ids` text ids may make."""
        o = self.options
        return max(2, min(o.max_frames, int(o.base_frames + o.frames_per_token * text_ids)))

    def chunk_ramp(self, ramp: tuple[int, ...] | None) -> tuple[int, ...]:
        """The chunk ramp a request will use (None: the options' one), or a PromptError."""
        ramp = self.options.chunk_ramp if ramp is None else tuple(ramp)
        if not ramp or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ramp):
            raise PromptError(f"chunk_ramp must be whole frame counts of at least 1, got {ramp!r}")
        return ramp

    def check(self, voice: Voice, params: SamplingParams) -> PromptShape:
        """Refuse bad params or a bad voice before any text; returns the positions the voice's
        prompts take (no prompt is built)."""
        if not isinstance(params, SamplingParams):
            raise PromptError(f"params must be SamplingParams, not {type(params).__name__}")
        params.validate(self.limits.top_k_max)
        if not isinstance(voice, Voice):
            raise PromptError(f"voice must be a Voice, not {type(voice).__name__}")
        return self.prompts.shape(voice)

    def check_text(self, text) -> None:
        if not isinstance(text, str):
            raise PromptError(f"text must be a str, not {type(text).__name__}", field="text", code="invalid_text")
        if not text.strip():
            raise PromptError("text is empty: nothing to say", field="text", code="empty_input")
        if len(text) > self.options.max_text_chars:
            raise text_too_long(len(text), self.options.max_text_chars)
        self.prompts.tok.check_text(text)  # the whole text once: a later piece cannot fail mid-stream

    def fits(self, shape: PromptShape, text_ids: int, params: SamplingParams) -> bool:
        """The one fit rule: the prompt fits the prefill engine, and the text's positions plus the
        frames the EOS guard allows fit one context."""
        frames = min(self.frame_cap(text_ids), params.max_new_tokens - 1)
        return (shape.length(text_ids) <= self.limits.max_prompt
                and shape.text_positions(text_ids) + frames < self.limits.max_context)

    def plan(self, text: str, voice: Voice, params: SamplingParams) -> list[str]:
        """Validate everything about the request and split its text into pieces that each fit one
        context. Only strings are kept: prompts are built one at a time as the stream reaches
        them, so memory stays bounded whatever the text. Splitting tokenizes; it builds nothing."""
        shape = self.check(voice, params)
        self.check_text(text)
        limits = self.limits

        def text_ids(piece: str) -> int:
            return len(self.prompts.tok.encode(ASSISTANT_TEMPLATE.format(text=piece))) - ROLE_LEN - ASSISTANT_SUFFIX_LEN

        def fits(piece: str) -> bool:
            n = text_ids(piece)
            return n < limits.max_context and self.fits(shape, n, params)

        pieces = split_text(text, fits)
        for piece in pieces:
            n = text_ids(piece)
            if shape.length(n) > limits.max_prompt or shape.text_positions(n) >= limits.max_context:
                raise PromptError(f"the voice prompt alone needs {shape.length(n)} positions; the engines hold "
                                  f"{limits.max_prompt}: shorten the instruct or reference, or rebuild with more")
        return pieces

    def arriving_text_limit(self, shape: PromptShape, params: SamplingParams) -> int:
        """The most text ids one context holds with a voice of this `shape` (from `check`), for text
        still arriving: the largest count that passes the fit rule `plan` applies to each piece of a
        long text."""
        for n in range(self.limits.max_context, 0, -1):
            if self.fits(shape, n, params):
                return n
        raise PromptError(f"the voice prompt alone needs {shape.length(1)} positions; the engines hold "
                          f"{self.limits.max_context}: shorten the instruct or reference, or rebuild with more")
