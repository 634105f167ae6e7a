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
from contextlib import contextmanager

from .config import ASSISTANT_TEMPLATE
from .errors import PromptError
from .prompt import ASSISTANT_SUFFIX_LEN, ROLE_LEN
from .text import TextTokenizer
from .text_cuts import CLAUSE_CUT, SENTENCE_CUT, WORD_CUT

_ROLE_PREFIX, _ = ASSISTANT_TEMPLATE.split("{text}")


class IncrementalTokenizer:
    def __init__(self, tokenizer: TextTokenizer):
        self.tok = tokenizer
        self._pre = tokenizer.pre_tokenizer
        self.text = ""
        self.ids: list[int] = []  # released: final
        self.frontier = 0  # characters of `text` that the released ids may cover (a piece boundary)
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
        if n:
            self.frontier = settled
        return self._release(stable[:n])

    def close(self, at: int | None = None) -> list[int]:
        """No more text (or none past character `at`, which must not be before `frontier`): the
        remaining ids, exactly as the one-shot prompt tokenizes the whole text."""
        if at is not None:
            if at < self.frontier:
                raise ValueError(f"cannot end the text at {at}: ids up to {self.frontier} are released")
            self.text = self.text[:at]
        self.closed = True
        ids = self.tok.encode(ASSISTANT_TEMPLATE.format(text=self.text))[ROLE_LEN:-ASSISTANT_SUFFIX_LEN]
        return self._release(ids)

    def count(self, text: str) -> int:
        """Text ids of `text` as the one-shot prompt tokenizes it."""
        return len(self.tok.encode(ASSISTANT_TEMPLATE.format(text=text))) - ROLE_LEN - ASSISTANT_SUFFIX_LEN

    def _body(self, text: str) -> list[int]:
        return self.tok.encode(_ROLE_PREFIX + text)[ROLE_LEN:]

    def _release(self, ids: list[int]) -> list[int]:
        if ids[:len(self.ids)] != self.ids:  # cannot happen if the piece rule holds; never feed a wrong id
            raise PromptError("incremental tokenization diverged from the whole text's; please report this text")
        new = ids[len(self.ids):]
        self.tok.check_text("", ids=new)  # control tokens are refused as in whole text, never fed
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


class Segment:
    """One context's worth of the arriving text: its own tokenizer and feed, as `stream()` would
    make one piece's prompt."""

    def __init__(self, tokenizer: TextTokenizer, start: int):
        self.tok = IncrementalTokenizer(tokenizer)
        self.feed = TextFeed()
        self.start = start  # where its text begins in the whole text
        self.role_ids: list[int] | None = None  # the role's ids as the text's first piece leaves them

    @property
    def text(self) -> str:
        return self.tok.text

    def take(self, text: str) -> None:
        ids = self.tok.feed(text)
        self._note_role()  # before the ids: the frame loop reads the role as soon as they arrive
        self.feed.extend(ids)

    def end(self, at: int | None = None) -> None:
        ids = self.tok.close(at)
        self._note_role()
        self.feed.close(ids)

    def _note_role(self) -> None:
        if self.role_ids is None and self.tok.ids:
            self.role_ids = self.tok.tok.encode(_ROLE_PREFIX + self.tok.text)[:ROLE_LEN]


class TextInput:
    """The push side of a text stream: `push(fragment)` as text arrives, `close()` at its end.
    Thread-safe; one per utterance (`Synthesizer.stream_text` makes one).

    Text longer than one context is cut into segments, each spoken as `stream()` speaks one piece
    of a long text (its own prompt, one codec stream throughout). With `limit(max_ids, window)` set,
    once a segment's text reaches `max_ids - window` ids it ends after the last whole sentence that
    fits and has not yet been passed to the frame loop (as text arrives token by token: the first
    sentence that ends); if the text reaches `max_ids` before a sentence ends, at the last clause,
    else word, boundary that fits. A cut never falls before ids already released to the frame loop.
    """

    def __init__(self, tokenizer: TextTokenizer):
        self._tokenizer = tokenizer
        self._lock = threading.Lock()
        self._grew = threading.Condition(self._lock)
        self._text = ""
        self.segments: list[Segment] = [Segment(tokenizer, 0)]
        self._max_ids: int | None = None
        self._window = 0
        self.error: Exception | None = None
        self.cancelled = False

    # -- the writer's side ----------------------------------------------------------------------
    def push(self, fragment: str) -> None:
        with self._lock:
            if self._done:
                return
            if not isinstance(fragment, str):
                self._fail(PromptError(f"text fragments must be str, not {type(fragment).__name__}"))
                return
            try:
                self._tokenizer.check_text(fragment, ids=[])  # valid Unicode: the tokenizer cannot take a lone surrogate
            except PromptError as exc:
                self._fail(exc)
                return
            self._text += fragment
            self._advance(final=False)

    def close(self) -> None:
        with self._lock:
            if not self._done:
                self._advance(final=True)

    def cancel(self) -> None:
        """Stop taking text and wake a frame loop that waits for it."""
        with self._lock:
            self.cancelled = True
            for seg in self.segments:
                seg.feed.cancel()
            self._grew.notify_all()

    def limit(self, max_ids: int, window: int) -> None:
        """Segments hold at most `max_ids` text ids (what fits one context with this voice)."""
        with self._lock:
            self._max_ids, self._window = max_ids, window
            if not self._done:
                self._advance(final=False)

    # -- the frame loop's side ------------------------------------------------------------------
    @property
    def feed(self) -> TextFeed:
        """The feed of the segment that takes text now."""
        return self.segments[-1].feed

    @property
    def text(self) -> str:
        return self._text

    @property
    def stall_seconds(self) -> float:
        return sum(seg.feed.stall_seconds for seg in self.segments)

    def segment(self, index: int) -> Segment | None:
        """Segment `index` once it exists; None when the text ended (or was cancelled) before it."""
        with self._lock:
            while index >= len(self.segments) and not (self.segments[-1].feed.closed or self.cancelled):
                self._grew.wait()
            return self.segments[index] if index < len(self.segments) else None

    # -- cutting --------------------------------------------------------------------------------
    @property
    def _done(self) -> bool:
        return self.cancelled or self.segments[-1].feed.closed

    def source_failed(self, exc: Exception) -> None:
        """What the text came from raised `exc`: the frame loop ends the utterance with it."""
        with self._lock:
            self._fail(PromptError(f"the text source raised {type(exc).__name__}: {exc}"))

    def _fail(self, exc: Exception) -> None:
        self.error = exc
        self.cancelled = True
        for seg in self.segments:
            seg.feed.cancel()
        self._grew.notify_all()

    def _advance(self, final: bool) -> None:
        try:
            while True:
                seg = self.segments[-1]
                pending = self._text[seg.start:]
                cut = self._cut(seg, pending, final)
                if cut is None:
                    seg.take(pending[len(seg.text):])
                    if final:
                        seg.end()
                    return
                seg.take(pending[len(seg.text):cut])
                seg.end(cut)
                rest = pending[cut:]
                start = seg.start + cut + len(rest) - len(rest.lstrip())
                if not self._text[start:].strip() and final:
                    self._grew.notify_all()
                    return  # only spaces were left
                self.segments.append(Segment(self._tokenizer, start))
                self._grew.notify_all()
        except PromptError as exc:
            self._fail(exc)

    def _cut(self, seg: Segment, pending: str, final: bool) -> int | None:
        """Where the segment must end within `pending` (its text so far), or None: not here yet."""
        if self._max_ids is None:
            return None
        n = seg.tok.count(pending)
        if n <= self._max_ids - self._window or (final and n <= self._max_ids):
            return None
        lo = max(seg.tok.frontier, 1)

        def last_fitting(pattern) -> int | None:
            """The last boundary `pattern` finds that may end the segment: tokenized from the end
            back, since the ids before a boundary only grow with it."""
            cuts = [m.end() for m in pattern.finditer(pending) if m.end() >= lo and pending[:m.end()].strip()]
            return next((c for c in reversed(cuts) if seg.tok.count(pending[:c]) <= self._max_ids), None)

        sentence = last_fitting(SENTENCE_CUT)
        if sentence is not None:  # near or past the limit: end after the last whole sentence that fits
            return sentence
        if n <= self._max_ids:
            return None  # near it: wait for a sentence to end
        for pattern in (CLAUSE_CUT, WORD_CUT):
            if (cut := last_fitting(pattern)) is not None:
                return cut
        # one unbroken run longer than the limit: the longest prefix that fits
        good, bad = lo, len(pending)
        while bad - good > 1:
            mid = (good + bad) // 2
            good, bad = (mid, bad) if seg.tok.count(pending[:mid]) <= self._max_ids else (good, mid)
        return good


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


@contextmanager
def _reading_into(live: TextInput):
    """The text source's end closes the input (a no-op once it is cancelled); its failure ends the
    utterance with its error."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001  (the text source failed: end the utterance with its error)
        live.source_failed(exc)
        return
    live.close()


def pump_text(fragments, live: TextInput) -> None:
    """Read an iterable of text fragments into `live` (a thread of its own: reading may block)."""
    with _reading_into(live):
        for fragment in fragments:
            if live.cancelled:
                break
            live.push(fragment)


async def apump_text(fragments, live: TextInput) -> None:
    """`pump_text` for an async iterable, on the event loop."""
    with _reading_into(live):
        async for fragment in fragments:
            if live.cancelled:
                break
            live.push(fragment)
