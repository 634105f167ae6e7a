"""Which text the talker has taken, frame by frame, and the words that follows for.

After its prompt the talker takes one text-track entry per frame (80 ms of audio): in the streaming
text layout, text id i of a piece enters with the piece's frame i (id 0 is in the prefill, which
makes frame 0); an ICL clone's reference transcript goes first, so the text enters later; in the
non-streaming layout the whole text is in the prefill, so every id enters with frame 0
(`PromptShape.text_frame`).

`TextFed` records that: the text id that covers characters [start, end) of the request's text
entered the talker with frame `frame` of the utterance. Each `AudioChunk` carries the ones that
entered with its frames (`AudioChunk.text_fed`). That is when the model first sees the text, not
when it is heard: the audio of a word follows its text by a lag that depends on the model and
only real weights can measure. So a word's time from these is a lower bound of when it is heard.

`WordTimeline` turns them into words (runs of non-space characters), each timed by the frame its
first id entered with.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Iterable


_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class TextFed:
    """A text id that entered the talker: it covers characters [start, end) of the request's text
    (for `stream_text`: of all the text pushed), and entered with frame `frame` of the utterance
    (counted from the stream's first frame; its audio starts at frame * 80 ms)."""

    frame: int
    start: int
    end: int


class WordTimeline:
    """The words of a text (runs of non-space characters) in order, each timed by the frame with
    which its first text id entered the talker.

    `text` may grow while the words are taken (text still being written): a word is given out once
    the frame of its first id is known and so is its end (a space follows it, or `final`). A word
    whose ids never entered (the generation ended first) is never given out."""

    def __init__(self, text: str = ""):
        self.text = text
        self._next = 0  # characters whose words were given out
        self._fed: deque[TextFed] = deque()

    def feed(self, fed: Iterable[TextFed]) -> None:
        """Ids that entered the talker, in the order they entered (`AudioChunk.text_fed`)."""
        self._fed.extend(fed)

    def take(self, final: bool = False) -> list[tuple[str, int]]:
        """(word, frame of its first id) for each word newly complete and timed, in text order.
        `final`: the text is complete (its last word ends with it)."""
        out: list[tuple[str, int]] = []
        while (m := _WORD.search(self.text, self._next)) is not None:
            if m.end() == len(self.text) and not final:
                break  # the word may still grow
            while self._fed and self._fed[0].end <= m.start():
                self._fed.popleft()  # ids of earlier words (and of the spaces before this one)
            if not self._fed:
                break  # its first id has not entered the talker yet
            out.append((m.group(), self._fed[0].frame))
            self._next = m.end()
        return out
