"""Where text is cut (runtime/text_cuts.py, runtime/text_split.py): pure logic, no model, no build.
`fits` here counts characters, standing in for the planner's token budget."""

from __future__ import annotations

import pytest

from qwen3_tts_trt.runtime.text_cuts import CLAUSE_CUT, SENTENCE_CUT, WORD_CUT
from qwen3_tts_trt.runtime.text_split import split_text


def ends(pattern, text: str) -> list[str]:
    return [text[:m.end()] for m in pattern.finditer(text)]


def test_sentences_end_at_punctuation_followed_by_space_or_at_a_line_break():
    assert ends(SENTENCE_CUT, "One. Two! Three?") == ["One.", "One. Two!"]  # the last: no space after it yet
    assert ends(SENTENCE_CUT, 'He said "go." Then left') == ['He said "go."']  # closing quotes stay with it
    assert ends(SENTENCE_CUT, "Pi is 3.14 and e.g. two") == ["Pi is 3.14 and e.g."]  # "3.14" is no end
    assert ends(SENTENCE_CUT, "A list\nB list") == ["A list\n"]  # a line break ends a sentence
    assert ends(SENTENCE_CUT, "你好。世界") == ["你好。"]  # CJK punctuation ends it at once


def test_clauses_and_words():
    assert ends(CLAUSE_CUT, "First, second: third，fourth") == ["First,", "First, second:", "First, second: third，"]
    assert ends(WORD_CUT, "one two  three") == ["one", "one two"]


def fits_in(n: int):
    return lambda piece: len(piece.strip()) <= n


@pytest.mark.parametrize("text, budget, pieces", [
    ("Short.", 50, ["Short."]),
    ("One sentence here. Another one there. A third.", 40, ["One sentence here. Another one there.", "A third."]),
    ("Line one\nLine two\nLine three", 20, ["Line one\nLine two", "Line three"]),
    ("A long clause, then another long clause, and more", 25,
     ["A long clause,", "then another long clause,", "and more"]),
    ("supercalifragilistic", 8, ["supercal", "ifragili", "stic"]),
])
def test_split_keeps_the_coarsest_cuts_that_fit(text, budget, pieces):
    got = split_text(text, fits_in(budget))
    assert got == pieces
    assert all(fits_in(budget)(p) for p in got)
    assert "".join(got).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
