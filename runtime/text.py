"""The checkpoint's text tokenizer, loaded the way the official wrapper loads it.

transformers is used for this and nothing else. The official wrapper passes
`fix_mistral_regex=True` ([W] L118), which under transformers 4.57.3 changes how some words split
for local checkpoints; passing the same flag keeps the ids identical to the reference.
"""

from __future__ import annotations

from pathlib import Path

from .errors import CheckpointError


class TextTokenizer:
    def __init__(self, model_dir: str | Path):
        from transformers import AutoTokenizer

        try:
            try:
                self._tok = AutoTokenizer.from_pretrained(str(model_dir), fix_mistral_regex=True)
            except TypeError:  # a transformers release without the flag
                self._tok = AutoTokenizer.from_pretrained(str(model_dir))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the text tokenizer from {model_dir}: {exc}") from exc

    def encode(self, text: str) -> list[int]:
        return list(self._tok(text)["input_ids"])  # as the official processor calls it
