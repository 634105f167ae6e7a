"""Split text that does not fit one talker context into pieces at sentence boundaries.

Sentences are kept whole where they fit; a sentence that alone is too long is cut at clause
punctuation, then at spaces, then anywhere. `fits(piece)` is the caller's budget test (it knows
the tokenizer and the engines' context), so this module only knows punctuation.
"""

from __future__ import annotations

import re
from typing import Callable

SENTENCE_END = re.compile(r"(?<=[.!?;。！？；…])[\"'”’」』)]*\s*|\n+")
CLAUSE_END = re.compile(r"(?<=[,:，、：])\s*")


def _pieces(text: str, pattern: re.Pattern) -> list[str]:
    out, start = [], 0
    for m in pattern.finditer(text):
        if m.end() > start:
            out.append(text[start:m.end()])
            start = m.end()
    if start < len(text):
        out.append(text[start:])
    return [p for p in out if p.strip()]


def _pack(parts: list[str], fits: Callable[[str], bool]) -> list[str]:
    """Greedily join consecutive parts while the joined piece fits."""
    out: list[str] = []
    for part in parts:
        if out and fits(out[-1] + part):
            out[-1] += part
        else:
            out.append(part)
    return out


def split_text(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Pieces of `text`, in order, each passing `fits`; their concatenation is `text` (stripped)."""
    text = text.strip()
    if fits(text):
        return [text]
    result: list[str] = []
    for sentence in _pack(_pieces(text, SENTENCE_END), fits):
        if fits(sentence):
            result.append(sentence)
            continue
        for clause in _pack(_pieces(sentence, CLAUSE_END), fits):
            if fits(clause):
                result.append(clause)
                continue
            for word_group in _pack(re.findall(r"\S+\s*", clause), fits):
                if fits(word_group):
                    result.append(word_group)
                    continue
                chunk = ""
                for ch in word_group:  # one unbroken run longer than the budget: cut anywhere
                    if chunk and not fits(chunk + ch):
                        result.append(chunk)
                        chunk = ""
                    chunk += ch
                if chunk:
                    result.append(chunk)
    return [p.strip() for p in result if p.strip()]
