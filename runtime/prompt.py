"""Text + voice settings -> talker prefill embeddings and the trailing-text queue.

Layout, with P = text track (projected), C = codec track, tp/tb/te = P(tts_pad/bos/eos):

    [P(instruct)]  P(<|im_start|>) P(assistant) P(\\n)
    tp+C(nothink|think) tp+C(think_bos) [tp+C(lang)] tp+C(think_eos) [tp+speaker] tb+C(pad)
    then, streaming text:      P(t0)+C(bos)            queue = P(t1..) te
          non-streaming text:  P(t_i)+C(pad).. te+C(pad) tp+C(bos)   queue = tp
          ICL clone:           reference text + codes, as the official generate_icl_prompt

Token ids are sliced from the tokenized template exactly as the official code slices them, never
re-tokenized in parts (a leading newline merges with the role's newline there, and here too).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .config import ASSISTANT_TEMPLATE, INSTRUCT_TEMPLATE, REF_TEMPLATE, ModelConfig
from .embed import Embedder
from .errors import PromptError
from .text import TextTokenizer
from .voice import Voice, check_voice_fits

ROLE_LEN = 3  # <|im_start|> assistant \n
ASSISTANT_SUFFIX_LEN = 5  # <|im_end|> \n <|im_start|> assistant \n
REF_SUFFIX_LEN = 2  # <|im_end|> \n
_TEXT_START = len(ASSISTANT_TEMPLATE.split("{text}")[0])  # characters of the template before the text


def text_spans(tok: TextTokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The text ids of `text`'s prompt (the template's slice, as `PromptBuilder.build` takes them)
    and, for each, the characters of `text` it covers. Text still being written tokenizes to the
    ids released so far followed by ids that may still change: the caller keeps the released ones."""
    ids, offsets = tok.encode_with_offsets(ASSISTANT_TEMPLATE.format(text=text))
    return ids[ROLE_LEN:-ASSISTANT_SUFFIX_LEN], _text_offsets(offsets)


def _text_offsets(offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The template's offsets of the text ids, as characters of the text itself."""
    return [(max(a - _TEXT_START, 0), max(b - _TEXT_START, 0)) for a, b in offsets[ROLE_LEN:-ASSISTANT_SUFFIX_LEN]]


@dataclass(frozen=True)
class PromptShape:
    """The positions a prompt takes with one voice, as a function of its text's id count `n`: the
    layout `PromptBuilder.build_ids` makes, counted without building it (requests are planned on it)."""

    before_text: int  # instruct, role and codec rows ahead of the text
    non_streaming: bool = False
    icl_text: int = 0  # ICL clone: the reference transcript's ids
    icl_codec: int = 0  # ICL clone: codec_bos and the reference frames (0: not an ICL clone)

    def _rows(self, n: int) -> tuple[int, int]:
        """(prefill rows from the text on, queued text inputs)."""
        if self.icl_codec:
            n_text = self.icl_text + n + 1  # the reference transcript, the text, tts_eos
            if self.non_streaming:
                return n_text + self.icl_codec, 1
            return self.icl_codec, max(n_text - self.icl_codec, 1)
        if self.non_streaming:
            return n + 2, 1  # the text and tts_eos over codec_pad, then tts_pad + codec_bos
        return 1, n  # the first text id opens with codec_bos; the rest and tts_eos are queued

    def length(self, n: int) -> int:
        return self.before_text + self._rows(n)[0]

    def text_positions(self, n: int) -> int:
        return self.before_text + sum(self._rows(n))

    def text_frame(self, i: int) -> int:
        """The frame (of this prompt's generation, from 0) with which text id `i` enters the talker:
        the prefill makes frame 0, and decode step k, which makes frame k + 1, takes one more text
        entry. Streaming text: id i enters with frame i (id 0 is in the prefill). An ICL clone's
        reference transcript comes first and its codes take prefill rows, so ids enter later, or
        all with frame 0 when the reference is long. Non-streaming text: the whole text is in the
        prefill, so every id enters with frame 0."""
        if self.non_streaming:
            return 0
        if self.icl_codec:  # entries: the reference transcript, the text; the first icl_codec in the prefill
            return max(0, self.icl_text + i - self.icl_codec + 1)
        return i


@dataclass(frozen=True)
class _CheckedVoice:
    lang_id: int | None
    spk: torch.Tensor | None
    instruct_ids: list[int] | None  # None: no instruct, or one this checkpoint ignores
    ref_ids: list[int] | None  # ICL clone: the reference transcript's ids
    codes: torch.Tensor | None  # ICL clone: the reference codes [F, 16]


@dataclass
class Prompt:
    embeds: torch.Tensor  # [1, S, H] prefill inputs
    trailing: torch.Tensor  # [1, N, H] text-track inputs for decode steps 0..N-1
    pad: torch.Tensor  # [1, 1, H] tts_pad, added at every step after the queue
    text_ids: list[int]
    # for each text id, the characters [start, end) of the text it covers (set by `build`; None for
    # a prompt built from ids)
    text_spans: list[tuple[int, int]] | None = None

    @property
    def length(self) -> int:
        return self.embeds.shape[1]

    @property
    def text_positions(self) -> int:
        """Positions the prompt and its queued text inputs take (one decode step per queued input)."""
        return self.length + self.trailing.shape[1]

    def frame_budget(self, max_new_tokens: int, max_context: int) -> tuple[int, str]:
        """(codebook-0 samples this prompt may draw, what caps them: "max_new_tokens" or "context").

        Official counting: max_new_tokens counts samples, so at most max_new_tokens - 1 frames;
        each frame's input takes one more cache position, so the context may cut first.
        """
        if max_new_tokens < 2:
            raise ValueError("max_new_tokens must be at least 2")
        if self.text_positions >= max_context:
            raise PromptError(f"text needs {self.text_positions} positions before audio can follow; the context "
                              f"holds {max_context}: split it or raise the context")
        budget = min(max_new_tokens, max_context - self.length + 1)
        return budget, "max_new_tokens" if budget == max_new_tokens else "context"

    def text_ready(self, step: int) -> bool:
        """Whole text: every step's text input is known (see text_stream.LivePrompt)."""
        return True

    def text_input(self, step: int) -> torch.Tensor:
        """[1, 1, H] text-track vector for decode step `step`."""
        return self.trailing[:, step:step + 1] if step < self.trailing.shape[1] else self.pad


class PromptBuilder:
    def __init__(self, cfg: ModelConfig, tokenizer: TextTokenizer, embedder: Embedder):
        self.cfg, self.tok, self.emb = cfg, tokenizer, embedder
        self._fixed_text: dict[tuple[int, ...], torch.Tensor] = {}

    def _text_of_fixed_ids(self, ids: list[int]) -> torch.Tensor:
        """`emb.text(ids)` for ids every prompt has (the tts control ids, the assistant role), made
        once: each text projection reads its ~25 MB of weights (0.6B), ~1 ms before the first audio.
        The same call on the same ids, so the vectors are the ones a fresh call gives."""
        key = tuple(ids)
        if key not in self._fixed_text:
            if len(self._fixed_text) >= 8:  # only a handful of fixed lists exist; never grow with text
                self._fixed_text.clear()
            self._fixed_text[key] = self.emb.text(ids)
        return self._fixed_text[key]

    # -- validation ---------------------------------------------------------------------------
    def _language_id(self, voice: Voice) -> int | None:
        lang = (voice.language or "auto").lower()
        if lang == "auto":
            lang_id = None
        elif lang in self.cfg.languages and "dialect" not in lang:
            lang_id = self.cfg.languages[lang]
        else:
            raise PromptError(f"unknown language {voice.language!r}; supported: {', '.join(self.cfg.public_languages)}",
                              field="language", code="unknown_language")
        speaker = voice.speaker.lower() if voice.speaker else None
        dialect = self.cfg.speaker_dialects.get(speaker) if speaker else None
        if dialect and lang in ("chinese", "auto"):
            lang_id = self.cfg.languages[dialect]  # a dialect speaker speaks its dialect for Chinese/auto
        return lang_id

    def _speaker_vector(self, voice: Voice) -> torch.Tensor | None:
        hidden = self.cfg.talker.hidden_size
        if self.cfg.variant == "base":
            if voice.speaker:
                raise PromptError("Base checkpoints have no named speakers; pass a clone prompt (xvector)")
            if voice.xvector is None:
                raise PromptError("Base checkpoints clone a voice: pass an x-vector (and reference codes for ICL)",
                                  field="voice", code="voice_required")
            if voice.made_for is not None:
                check_voice_fits(voice, self.cfg)
            x = torch.as_tensor(voice.xvector, dtype=torch.float32).reshape(-1)
            if x.numel() != hidden:
                raise PromptError(f"x-vector has {x.numel()} values; this checkpoint needs {hidden}")
            return x.to(self.emb.device, self.emb.talker.codec_head.weight.dtype).view(1, 1, hidden)
        if voice.xvector is not None or voice.ref_codes is not None:
            raise PromptError(f"voice cloning needs a Base checkpoint; this one is {self.cfg.variant}",
                              field="voice", code="clone_unsupported")
        if not voice.speaker:
            if self.cfg.variant == "custom_voice":
                raise PromptError(f"CustomVoice checkpoints need a speaker; choose one of: {', '.join(self.cfg.speakers)}",
                                  field="voice", code="voice_required")
            return None
        name = voice.speaker.lower()
        if name not in self.cfg.speakers:
            known = ", ".join(self.cfg.speakers) or "none (this checkpoint has no named speakers)"
            raise PromptError(f"unknown speaker {voice.speaker!r}; supported: {known}", field="voice", code="unknown_voice")
        return self.emb.codec([self.cfg.speakers[name]])

    def _tokenize_text(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """The prompt's ids for `text` (the whole template) and the characters each text id covers."""
        if not isinstance(text, str):
            raise PromptError(f"text must be a str, not {type(text).__name__}", field="text", code="invalid_text")
        if not text.strip():
            raise PromptError("text is empty: nothing to say", field="text", code="empty_input")
        self.tok.check_text(text, ids=[])  # valid Unicode first: the tokenizer cannot take a lone surrogate
        ids, offsets = self.tok.encode_with_offsets(ASSISTANT_TEMPLATE.format(text=text))
        if len(ids) <= ROLE_LEN + ASSISTANT_SUFFIX_LEN:
            raise PromptError("text is empty after tokenization: nothing to say", field="text", code="empty_input")
        self.tok.check_text(text, ids=ids[ROLE_LEN:-ASSISTANT_SUFFIX_LEN])
        return ids, _text_offsets(offsets)

    # -- layout -------------------------------------------------------------------------------
    def build(self, text: str, voice: Voice = Voice()) -> Prompt:
        input_ids, spans = self._tokenize_text(text)
        prompt = self.build_ids(input_ids[:ROLE_LEN], input_ids[ROLE_LEN:-ASSISTANT_SUFFIX_LEN], voice)
        prompt.text_spans = spans
        return prompt

    def streaming_layout(self, voice: Voice) -> tuple[list[int], int]:
        """For text that arrives while speech is made: (text ids that come before the text, such as an
        ICL clone's reference transcript; how many text-track entries the prefill takes). The prefill
        can run once that many entries are known; decode step i takes entry `taken + i`."""
        if voice.non_streaming_text:
            raise PromptError("the non-streaming text layout feeds the whole text in the prefill, so it cannot "
                              "take text as it arrives: use Voice(non_streaming_text=False), or stream() the whole text")
        if voice.ref_codes is None:
            return [], 1
        if not voice.ref_text:
            raise PromptError("an ICL clone prompt needs the reference transcript (ref_text)")
        return self._ref_ids(voice.ref_text), 1 + torch.as_tensor(voice.ref_codes).shape[0]  # codec_bos + the frames

    def _ref_ids(self, ref_text: str) -> list[int]:
        """An ICL clone's reference transcript as text ids (the template's slice, as the official code)."""
        return self.tok.encode(REF_TEMPLATE.format(text=ref_text))[ROLE_LEN:-REF_SUFFIX_LEN]

    def _checked(self, voice: Voice) -> _CheckedVoice:
        """Every check `build_ids` makes of a voice, in its order, and the ids the voice adds."""
        lang_id = self._language_id(voice)
        spk = self._speaker_vector(voice)
        icl = voice.ref_codes is not None
        if icl and not voice.ref_text:
            raise PromptError("an ICL clone prompt needs the reference transcript (ref_text)")
        if icl:
            self.tok.check_text(voice.ref_text, "the reference transcript")
        instruct_ids = None
        if voice.instruct:
            self.tok.check_text(voice.instruct, "the instruct")
            if self.cfg.supports_instruct:
                instruct_ids = self.tok.encode(INSTRUCT_TEMPLATE.format(text=voice.instruct))
        ref_ids = codes = None
        if icl:
            codes = torch.as_tensor(voice.ref_codes, dtype=torch.long)
            groups = self.cfg.talker.num_code_groups
            if codes.dim() != 2 or codes.shape[1] != groups or codes.shape[0] == 0:
                raise PromptError(f"reference codes must have shape [frames, {groups}]; got {tuple(codes.shape)}")
            if int(codes.min()) < 0 or int(codes.max()) >= self.cfg.ids.num_audio_codes:
                raise PromptError(f"reference codes must lie in 0..{self.cfg.ids.num_audio_codes - 1}")
            ref_ids = self._ref_ids(voice.ref_text)
        return _CheckedVoice(lang_id, spk, instruct_ids, ref_ids, codes)

    def shape(self, voice: Voice) -> PromptShape:
        """Check `voice` as `build` does and count the positions its prompts take, building none."""
        v = self._checked(voice)
        codec_rows = (3 if v.lang_id is None else 4) + (v.spk is not None) + 2  # think..., [speaker], pad, bos
        before = len(v.instruct_ids or ()) + ROLE_LEN + codec_rows - 1  # codec_bos opens the text
        if v.codes is None:
            return PromptShape(before, voice.non_streaming_text)
        return PromptShape(before, voice.non_streaming_text, icl_text=len(v.ref_ids), icl_codec=1 + v.codes.shape[0])

    def build_ids(self, role_ids: list[int], body: list[int], voice: Voice = Voice()) -> Prompt:
        """The prompt for text already tokenized: the role's ids and the text's (the template's slices)."""
        ids = self.cfg.ids
        v = self._checked(voice)
        lang_id, spk, icl = v.lang_id, v.spk, v.codes is not None

        emb = self.emb
        tb, te, tp = self._text_of_fixed_ids([ids.tts_bos, ids.tts_eos, ids.tts_pad]).split(1, dim=1)
        parts = []
        if v.instruct_ids is not None:
            parts.append(emb.text(v.instruct_ids))
        elif voice.instruct:  # the official wrapper drops it too ([W] L799-800)
            warnings.warn(f"this {self.cfg.size} {self.cfg.variant} checkpoint ignores instruct text", stacklevel=2)
        parts.append(self._text_of_fixed_ids(role_ids))

        think = [ids.codec_nothink, ids.codec_think_bos, ids.codec_think_eos] if lang_id is None else \
            [ids.codec_think, ids.codec_think_bos, lang_id, ids.codec_think_eos]
        codec = [emb.codec(think)] + ([spk] if spk is not None else []) + [emb.codec([ids.codec_pad, ids.codec_bos])]
        codec = torch.cat(codec, dim=1)  # [1, L, H]; its last row (codec_bos) opens the text below
        text_track = torch.cat([tp.expand(-1, codec.shape[1] - 2, -1), tb], dim=1)
        parts.append(text_track + codec[:, :-1])
        bos = codec[:, -1:]

        if icl:
            prefix, trailing = self._icl(body, v.ref_ids, v.codes, bos, tp, te, voice.non_streaming_text)
            parts.append(prefix)
        elif voice.non_streaming_text:
            pads = emb.codec([ids.codec_pad] * (len(body) + 1))
            parts.append(torch.cat([emb.text(body), te], dim=1) + pads)
            parts.append(tp + bos)
            trailing = tp
        else:
            parts.append(emb.text(body[:1]) + bos)
            trailing = torch.cat([emb.text(body[1:]), te], dim=1) if len(body) > 1 else te
        return Prompt(embeds=torch.cat(parts, dim=1), trailing=trailing, pad=tp, text_ids=body)

    def _icl(self, body, ref_ids, codes, bos, tp, te, non_streaming):
        text = torch.cat([self.emb.text(list(ref_ids) + list(body)), te], dim=1)
        codec = torch.cat([bos, self.emb.frames(codes[None])], dim=1)
        n_text, n_codec = text.shape[1], codec.shape[1]
        if non_streaming:
            pads = self.emb.codec([self.cfg.ids.codec_pad] * n_text)
            return torch.cat([text + pads, codec + tp], dim=1), tp
        if n_text > n_codec:
            return text[:, :n_codec] + codec, text[:, n_codec:]
        padded = torch.cat([text, tp.expand(-1, n_codec - n_text, -1)], dim=1)
        return padded + codec, tp
