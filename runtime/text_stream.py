"""Text that arrives in pieces (LLM tokens, words) -> the talker's text ids, as soon as they are final.

`IncrementalTokenizer` re-tokenizes the text received so far exactly as the one-shot prompt does
(the assistant template, the checkpoint's tokenizer) and releases only the ids that no later text
can change. Ids can change only inside the last pre-tokenizer piece: BPE merges never cross a
piece boundary, and a later character can extend or reshape only the piece it joins (a word
growing, "e" + a combining accent composed into "é", digits, CJK runs, emoji sequences). So the
ids of every earlier piece are released, and only while the full tokenization of the text so far
agrees with them. When the input closes, the rest follow. The ids fed therefore equal those of
tokenizing the whole final text in one go (tests/test_text_stream.py checks this over random cuts).

`TextFeed` hands those ids to the frame loop, which runs in another thread: it blocks while the
model has consumed every released id and the input is still open (feeding `tts_pad` there would tell
the model the text had ended), and it counts that wait.
"""

from __future__ import annotations

import threading
import time

from .config import ASSISTANT_TEMPLATE
from .errors import PromptError
from .prompt import ASSISTANT_SUFFIX_LEN, ROLE_LEN
from .text import TextTokenizer

_ROLE_PREFIX, _ = ASSISTANT_TEMPLATE.split("{text}")


class IncrementalTokenizer:
    def __init__(self, tokenizer: TextTokenizer):
        self.tok = tokenizer
        self._pre = tokenizer.pre_tokenizer
        self.text = ""
        self.ids: list[int] = []  # released: final
        self.closed = False

    def feed(self, fragment: str) -> list[int]:
        """Add text; return the ids that became final."""
        if self.closed:
            raise PromptError("text was added after the input was closed")
        if not isinstance(fragment, str):
            raise PromptError(f"text fragments must be str, not {type(fragment).__name__}")
        self.text += fragment
        pieces = self._pre.pre_tokenize_str(_ROLE_PREFIX + self.text)
        if len(pieces) < 2:
            return []
        settled = pieces[-1][1][0] - len(_ROLE_PREFIX)  # characters before the last piece
        if settled <= 0:
            return []
        stable = self._body(self.text[:settled])
        now = self._body(self.text)
        n = 0
        while n < len(stable) and n < len(now) and stable[n] == now[n]:
            n += 1
        return self._release(stable[:n])

    def close(self) -> list[int]:
        """No more text: the remaining ids, exactly as the one-shot prompt tokenizes the whole text."""
        self.closed = True
        ids = self.tok.encode(ASSISTANT_TEMPLATE.format(text=self.text))[ROLE_LEN:-ASSISTANT_SUFFIX_LEN]
        return self._release(ids)

    def _body(self, text: str) -> list[int]:
        return self.tok.encode(_ROLE_PREFIX + text)[ROLE_LEN:]

    def _release(self, ids: list[int]) -> list[int]:
        if ids[:len(self.ids)] != self.ids:  # cannot happen if the piece rule holds; never feed a wrong id
            raise PromptError("incremental tokenization diverged from the whole text's; please report this text")
        new = ids[len(self.ids):]
        self.ids.extend(new)
        return new


class TextFeed:
    """Final text ids, shared between the thread that receives text and the frame loop."""

    def __init__(self):
        self._cond = threading.Condition()
        self.ids: list[int] = []
        self.closed = False
        self.cancelled = False
        self.stall_seconds = 0.0

    def extend(self, ids: list[int]) -> None:
        with self._cond:
            self.ids.extend(ids)
            self._cond.notify_all()

    def close(self, ids: list[int] = ()) -> None:
        with self._cond:
            self.ids.extend(ids)
            self.closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Wake a waiting frame loop so that it sees its stop flag."""
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()

    def ready(self, count: int) -> bool:
        """Are `count` ids known, or is the text complete?"""
        with self._cond:
            return self.closed or len(self.ids) >= count

    def wait(self, count: int) -> bool:
        """Block until `count` ids are known or the text is complete; False if cancelled."""
        with self._cond:
            if self.closed or len(self.ids) >= count:
                return not self.cancelled
            t0 = time.perf_counter()
            while not (self.closed or self.cancelled or len(self.ids) >= count):
                self._cond.wait()
            self.stall_seconds += time.perf_counter() - t0
            return not self.cancelled


class TextInput:
    """The push side of a text stream: `push(fragment)` as text arrives, `close()` at its end.
    Thread-safe; one per utterance (`Synthesizer.stream_text` makes one)."""

    def __init__(self, tokenizer: TextTokenizer):
        self._tok = IncrementalTokenizer(tokenizer)
        self._lock = threading.Lock()
        self.feed = TextFeed()
        self.role_ids: list[int] | None = None  # the role's ids as the text's first piece leaves them
        self.error: Exception | None = None

    def push(self, fragment: str) -> None:
        with self._lock:
            if self.feed.closed or self.feed.cancelled:
                return
            try:
                ids = self._tok.feed(fragment)
            except PromptError as exc:  # reported to the frame loop, which ends the utterance with it
                self.error = exc
                self.feed.cancel()
                return
            self._note_role()
            self.feed.extend(ids)

    def close(self) -> None:
        with self._lock:
            if self.feed.closed or self.feed.cancelled:
                return
            ids = self._tok.close()
            self._note_role()
            self.feed.close(ids)

    @property
    def text(self) -> str:
        return self._tok.text

    def _note_role(self) -> None:
        if self.role_ids is None and self._tok.ids:
            self.role_ids = self._tok.tok.encode(_ROLE_PREFIX + self._tok.text)[:ROLE_LEN]


class LivePrompt:
    """A `Prompt` whose text track comes from a `TextFeed` while the frame loop runs.

    Decode step i takes text entry `taken + i`: from `before` (an ICL reference transcript), then the
    text's ids as they arrive, then `tts_eos` once the input is closed, then `tts_pad`. The frame
    loop asks `text_ready(step)` first, so the streamer can flush the audio it holds before the loop
    blocks in `text_input` waiting for text."""

    def __init__(self, start, feed: TextFeed, before: list[int], taken: int, embedder, eos):
        self.embeds, self.pad, self._eos = start.embeds, start.pad, eos
        self.feed, self.before, self.taken = feed, before, taken
        self._emb = embedder

    @property
    def length(self) -> int:
        return self.embeds.shape[1]

    @property
    def text_ids(self) -> list[int]:
        return self.feed.ids

    @property
    def text_positions(self) -> int:
        """Positions known so far (grows with the text)."""
        return self.length + max(len(self.before) + len(self.feed.ids) + 1 - self.taken, 0)

    def frame_budget(self, max_new_tokens: int, max_context: int) -> tuple[int, str]:
        budget = min(max_new_tokens, max_context - self.length + 1)
        return budget, "max_new_tokens" if budget == max_new_tokens else "context"

    def _needed(self, step: int) -> int:
        return self.taken + step + 1 - len(self.before)  # text ids that step's entry needs

    def text_ready(self, step: int) -> bool:
        return self.feed.ready(self._needed(step))

    def text_input(self, step: int):
        self.feed.wait(self._needed(step))
        j = self.taken + step
        if j < len(self.before):
            return self._emb.text([self.before[j]])
        k = j - len(self.before)
        ids = self.feed.ids
        if k < len(ids):
            return self._emb.text([ids[k]])
        return self._eos if (k == len(ids) and self.feed.closed) else self.pad
