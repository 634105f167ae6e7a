"""Text + voice settings -> talker prefill embeddings and the trailing-text queue (facts §4).

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

ROLE_LEN = 3  # <|im_start|> assistant \n
ASSISTANT_SUFFIX_LEN = 5  # <|im_end|> \n <|im_start|> assistant \n
REF_SUFFIX_LEN = 2  # <|im_end|> \n


@dataclass(frozen=True)
class VoiceOrigin:
    """The model a cloned voice was made for (x-vectors mean something only to their own model)."""

    model: str
    variant: str
    size: str
    config_hash: str
    hidden_size: int

    def to_dict(self) -> dict:
        return dict(model=self.model, variant=self.variant, size=self.size, config_hash=self.config_hash,
                    hidden_size=self.hidden_size)


@dataclass(frozen=True)
class Voice:
    """Who speaks, and how. Which fields apply depends on the checkpoint variant.

    Cloned voices (Base): `Voice.from_audio(...)` encodes a recording once; `voice.save(path)` and
    `Voice.load(path)` keep it in a .voice file (runtime/voice.py).
    """

    speaker: str | None = None  # CustomVoice
    language: str = "auto"
    instruct: str | None = None  # VoiceDesign, 1.7B CustomVoice
    xvector: torch.Tensor | None = None  # Base clone: speaker embedding [H]
    ref_codes: torch.Tensor | None = None  # Base ICL clone: reference codes [F, 16]
    ref_text: str | None = None  # Base ICL clone: transcript of the reference
    non_streaming_text: bool = False  # feed the whole text in the prefill (official non_streaming_mode)
    made_for: VoiceOrigin | None = None  # cloned voices: the model that encoded them (checked at use)

    @classmethod
    def from_audio(cls, audio, ref_text: str | None = None, *, model=None, encoders=None,
                   sample_rate: int | None = None, x_vector_only: bool = False, language: str = "auto",
                   build_dir=None, backend: str = "auto") -> "Voice":
        """Encode reference audio (a WAV/FLAC/OGG path, or an array with `sample_rate`) into a voice.
        Give `model` (checkpoint; with `build_dir` to run its engines) or ready `encoders`."""
        from .voice import VoiceMaker, make_voice

        if encoders is None:
            if model is None:
                raise PromptError("Voice.from_audio needs the Base checkpoint: model=...")
            encoders = VoiceMaker.open(model, build_dir, backend).encoders
        return make_voice(encoders, audio, ref_text, sample_rate=sample_rate, x_vector_only=x_vector_only,
                          language=language)

    @classmethod
    def load(cls, path, model=None) -> "Voice":
        """Read a .voice file; with `model` (a checkpoint or its ModelConfig), refuse a voice made for another."""
        from .config import ModelConfig, load_model_config
        from .voice import load_voice

        config = model if isinstance(model, ModelConfig) or model is None else None
        if model is not None and config is None:
            from .checkpoint import resolve_checkpoint

            config = load_model_config(resolve_checkpoint(model))
        return load_voice(path, config)

    def save(self, path):
        """Write this cloned voice to a .voice file (atomically); returns the path."""
        from .voice import save_voice

        return save_voice(self, path)


@dataclass
class Prompt:
    embeds: torch.Tensor  # [1, S, H] prefill inputs
    trailing: torch.Tensor  # [1, N, H] text-track inputs for decode steps 0..N-1
    pad: torch.Tensor  # [1, 1, H] tts_pad, added at every step after the queue
    text_ids: list[int]

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
            raise PromptError(f"unknown language {voice.language!r}; supported: {', '.join(self.cfg.public_languages)}")
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
                raise PromptError("Base checkpoints clone a voice: pass an x-vector (and reference codes for ICL)")
            if voice.made_for is not None:
                from .voice import check_voice_fits

                check_voice_fits(voice, self.cfg)
            x = torch.as_tensor(voice.xvector, dtype=torch.float32).reshape(-1)
            if x.numel() != hidden:
                raise PromptError(f"x-vector has {x.numel()} values; this checkpoint needs {hidden}")
            return x.to(self.emb.device, self.emb.talker.codec_head.weight.dtype).view(1, 1, hidden)
        if voice.xvector is not None or voice.ref_codes is not None:
            raise PromptError(f"voice cloning needs a Base checkpoint; this one is {self.cfg.variant}")
        if not voice.speaker:
            if self.cfg.variant == "custom_voice":
                raise PromptError(f"CustomVoice checkpoints need a speaker; choose one of: {', '.join(self.cfg.speakers)}")
            return None
        name = voice.speaker.lower()
        if name not in self.cfg.speakers:
            known = ", ".join(self.cfg.speakers) or "none (this checkpoint has no named speakers)"
            raise PromptError(f"unknown speaker {voice.speaker!r}; supported: {known}")
        return self.emb.codec([self.cfg.speakers[name]])

    def _tokenize_text(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise PromptError(f"text must be a str, not {type(text).__name__}")
        if not text.strip():
            raise PromptError("text is empty: nothing to say")
        self.tok.check_text(text, ids=[])  # valid Unicode first: the tokenizer cannot take a lone surrogate
        ids = self.tok.encode(ASSISTANT_TEMPLATE.format(text=text))
        if len(ids) <= ROLE_LEN + ASSISTANT_SUFFIX_LEN:
            raise PromptError("text is empty after tokenization: nothing to say")
        self.tok.check_text(text, ids=ids[ROLE_LEN:-ASSISTANT_SUFFIX_LEN])
        return ids

    # -- layout -------------------------------------------------------------------------------
    def build(self, text: str, voice: Voice = Voice()) -> Prompt:
        input_ids = self._tokenize_text(text)
        return self.build_ids(input_ids[:ROLE_LEN], input_ids[ROLE_LEN:-ASSISTANT_SUFFIX_LEN], voice)

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
        ref_ids = self.tok.encode(REF_TEMPLATE.format(text=voice.ref_text))[ROLE_LEN:-REF_SUFFIX_LEN]
        return ref_ids, 1 + torch.as_tensor(voice.ref_codes).shape[0]  # codec_bos + the reference frames

    def build_ids(self, role_ids: list[int], body: list[int], voice: Voice = Voice()) -> Prompt:
        """The prompt for text already tokenized: the role's ids and the text's (the template's slices)."""
        ids = self.cfg.ids
        lang_id = self._language_id(voice)
        spk = self._speaker_vector(voice)
        icl = voice.ref_codes is not None
        if icl and not voice.ref_text:
            raise PromptError("an ICL clone prompt needs the reference transcript (ref_text)")
        if icl:
            self.tok.check_text(voice.ref_text, "the reference transcript")

        emb = self.emb
        tb, te, tp = self._text_of_fixed_ids([ids.tts_bos, ids.tts_eos, ids.tts_pad]).split(1, dim=1)
        parts = []
        if voice.instruct:
            self.tok.check_text(voice.instruct, "the instruct")
            if self.cfg.supports_instruct:
                parts.append(emb.text(self.tok.encode(INSTRUCT_TEMPLATE.format(text=voice.instruct))))
            else:  # the official wrapper drops it too ([W] L799-800)
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
            ref_ids = self.tok.encode(REF_TEMPLATE.format(text=voice.ref_text))[ROLE_LEN:-REF_SUFFIX_LEN]
            prefix, trailing = self._icl(body, ref_ids, voice.ref_codes, bos, tp, te, voice.non_streaming_text)
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

    def _icl(self, body, ref_ids, ref_codes, bos, tp, te, non_streaming):
        codes = torch.as_tensor(ref_codes, dtype=torch.long)
        groups = self.cfg.talker.num_code_groups
        if codes.dim() != 2 or codes.shape[1] != groups or codes.shape[0] == 0:
            raise PromptError(f"reference codes must have shape [frames, {groups}]; got {tuple(codes.shape)}")
        if int(codes.min()) < 0 or int(codes.max()) >= self.cfg.ids.num_audio_codes:
            raise PromptError(f"reference codes must lie in 0..{self.cfg.ids.num_audio_codes - 1}")
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
