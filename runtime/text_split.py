"""Split text that does not fit one talker context into pieces at sentence boundaries.

Sentences are kept whole where they fit; a sentence that alone is too long is cut at clause
punctuation, then at spaces, then anywhere (the cut points: `text_cuts`). `fits(piece)` is the
caller's budget test (it knows the tokenizer and the engines' context).
"""

from __future__ import annotations

import re
from typing import Callable

from .text_cuts import CLAUSE_CUT, SENTENCE_CUT, WORD_CUT


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
    """Join consecutive parts greedily into the longest pieces that fit (a part that alone does not
    fit stays alone, for the caller to cut finer).

    The longest fitting run from each start is found by doubling, then bisecting, so `fits` runs
    O(log run) times per piece on pieces no longer than about twice the budget: the work stays
    linear in the text length however the text is made (one unbroken 5,000-character word, or
    5,000 one-letter words), where testing each part in turn re-tokenized one prompt per part.
    `fits` is assumed monotone (a prefix of a fitting piece fits), which holds for token counts."""
    out: list[str] = []
    i = 0
    while i < len(parts):
        good, step = i + 1, 1  # parts[i:good] is the longest run known to fit (or the lone part)
        bad = None
        while good < len(parts):
            probe = min(good + step, len(parts))
            if fits("".join(parts[i:probe])):
                good, step = probe, step * 2
            else:
                bad = probe
                break
        while bad is not None and bad - good > 1:
            mid = (good + bad) // 2
            if fits("".join(parts[i:mid])):
                good = mid
            else:
                bad = mid
        out.append("".join(parts[i:good]))
        i = good
    return out


def split_text(text: str, fits: Callable[[str], bool]) -> list[str]:
    """Pieces of `text`, in order, each passing `fits`; their concatenation is `text` (stripped)."""
    text = text.strip()
    if fits(text):
        return [text]
    result: list[str] = []
    for sentence in _pack(_pieces(text, SENTENCE_CUT), fits):
        if fits(sentence):
            result.append(sentence)
            continue
        for clause in _pack(_pieces(sentence, CLAUSE_CUT), fits):
            if fits(clause):
                result.append(clause)
                continue
            for word_group in _pack(_pieces(clause, WORD_CUT), fits):
                if fits(word_group):
                    result.append(word_group)
                    continue
                # one unbroken run longer than the budget: cut anywhere
                result.extend(_pack(list(word_group), fits))
    return [p.strip() for p in result if p.strip()]
