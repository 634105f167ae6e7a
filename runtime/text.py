"""The checkpoint's text tokenizer, loaded the way the official wrapper loads it.

transformers is used for this and nothing else. The official wrapper passes
`fix_mistral_regex=True` ([W] L118), which under transformers 4.57.3 changes how some words split
for local checkpoints; passing the same flag keeps the ids identical to the reference.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError, PromptError

_FIELDS = {"the instruct": "instruct", "the reference transcript": "ref_text"}  # request fields by what they hold


class TextTokenizer:
    def __init__(self, model_dir: str | Path):
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        # transformers' advisory notes on loading (5.x: "model of type qwen3_tts ... type ``", as it
        # reads config.json for a tokenizer class) say nothing a user can act on: not on every run
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            try:
                self._tok = AutoTokenizer.from_pretrained(str(model_dir), fix_mistral_regex=True)
            except TypeError:  # a transformers release without the flag
                self._tok = AutoTokenizer.from_pretrained(str(model_dir))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the text tokenizer from {model_dir}: {exc}") from exc
        finally:
            hf_logging.set_verbosity(level)

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text)["input_ids"])  # as the official processor calls it

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """`encode(text)` and, for each id, the characters [start, end) of `text` it covers (the fast
        tokenizer's offsets; ids that hold part of one character each cover that character)."""
        enc = self._tok(text, return_offsets_mapping=True)
        return list(enc["input_ids"]), [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    @property
    def pre_tokenizer(self):
        """The fast tokenizer's pre-tokenizer: BPE merges never cross the pieces it cuts (text_stream.py)."""
        return self._tok.backend_tokenizer.pre_tokenizer

    @property
    def control_ids(self) -> frozenset[int]:
        """Ids of the tokenizer's added tokens (<|im_start|>, <tts_pad>, <think>, ...): a match in
        the text becomes one of these instead of ordinary text tokens."""
        if not hasattr(self, "_control"):
            self._control = frozenset(self._tok.added_tokens_decoder)
        return self._control

    def check_text(self, text: str, what: str = "text", ids: list[int] | None = None) -> None:
        """Refuse text that is not valid Unicode or that holds the model's control tokens.

        The official wrapper passes such text on, so `<|im_end|>` typed by a user (or leaked by an
        LLM) ends or restructures the prompt; here it is refused, never turned into control ids."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise PromptError(f"{what} holds a lone surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}: "
                              "it is not valid Unicode; decode the input with errors='replace'",
                              field=_FIELDS.get(what, what), code="invalid_text") from None
        found = [i for i in (ids if ids is not None else self.encode(text)) if i in self.control_ids]
        if found:
            names = ", ".join(dict.fromkeys(self._tok.convert_ids_to_tokens(found[:8])))
            raise PromptError(f"{what} holds the model's control token(s) {names}: they are never spoken or obeyed "
                              "here; remove them from the text", field=_FIELDS.get(what, what), code="control_token")
