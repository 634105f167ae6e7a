"""An utterance's frames as typed events, for whole text and for text still arriving.

Events, in the order the audio streamer reads them:
- `SegmentsAdded(count)`: the utterance has `count` more segments (pieces of text, one context each);
- a frame: `torch.Tensor` [16] int64 codes;
- `TEXT_STALL`: the frame loop waits for text (the audio made so far should play meanwhile);
- `SegmentEnd(reason)`: a segment ended ("eos", "frame_cap", "max_new_tokens", "context", "cancelled");
- `TextEntered(spans)`: right before a frame, the text ids that enter the talker with it, as the
  characters of the request's text each covers (runtime/text_timing.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Generator, Iterator

import torch

from .decode_loop import TEXT_STALL, FrameLoop, Frames, TextStall
from .embed import Embedder
from .errors import PromptError
from .prompt import PromptBuilder, PromptShape, text_spans
from .request_plan import RequestPlanner
from .sampling import SamplingParams
from .text_stream import LivePrompt, Segment, TextFeed, TextInput
from .voice import Voice


@dataclass(frozen=True)
class SegmentsAdded:
    count: int


@dataclass(frozen=True)
class SegmentEnd:
    reason: str


@dataclass(frozen=True)
class TextEntered:
    """The text ids that enter the talker with the next frame: for each, the characters [start, end)
    of the request's text it covers."""

    spans: tuple[tuple[int, int], ...]


Event = torch.Tensor | TextStall | SegmentsAdded | SegmentEnd | TextEntered
Events = Iterator[Event]


class FrameSource:
    def __init__(self, prompts: PromptBuilder, loop: FrameLoop, planner: RequestPlanner, embedder: Embedder):
        self.prompts, self.loop, self.planner, self.embedder = prompts, loop, planner, embedder

    def whole_text(self, pieces: list[str], voice: Voice, params: SamplingParams, text: str | None = None) -> Events:
        """Frames of every piece in turn, each piece's prompt built when the stream reaches it.
        `text`: the request's text the pieces were cut from (`TextEntered` counts characters in it;
        None: in the pieces joined)."""
        yield SegmentsAdded(len(pieces))
        yield from self._pieces(pieces, voice, params, "".join(pieces) if text is None else text)

    def _pieces(self, pieces: list[str], voice: Voice, params: SamplingParams, text: str, base: int = 0):
        """`text`: what the pieces were cut from, which starts at character `base` of the request's text."""
        shape, at = self.prompts.shape(voice), 0
        for piece in pieces:
            prompt = self.prompts.build(piece, voice)
            cap = self.planner.frame_cap(len(prompt.text_ids))
            spans, start = [], text.find(piece, at)  # pieces are cut in order and stripped
            if start >= 0:
                spans = [(base + start + a, base + start + b) for a, b in prompt.text_spans]
                at = start + len(piece)
            frames = self.loop.frames(prompt, replace(params, max_new_tokens=min(params.max_new_tokens, cap + 1)))
            result = yield from _entering(frames, shape, spans.__getitem__, spans.__len__)
            reason = result.end_reason
            if reason == "max_new_tokens" and cap + 1 < params.max_new_tokens:
                reason = "frame_cap"  # the EOS guard ended a runaway generation
            yield SegmentEnd(reason)

    def arriving_text(self, live: TextInput, voice: Voice, params: SamplingParams,
                      layout: tuple[list[int], int]) -> Events:
        """Frames of text that is still arriving, segment after segment (one context each).
        `layout`: the voice's `PromptBuilder.streaming_layout`."""
        before, taken = layout
        segments, index, cancelled = 0, 0, False
        while (seg := live.segment(index)) is not None:
            index += 1
            if live.error is not None:
                raise live.error
            if seg.feed.closed and not seg.text.strip():
                continue  # only spaces after the last cut
            segments += 1
            yield SegmentsAdded(1)
            cancelled = (yield from self._arriving_segment(live, seg, voice, params, before, taken)) == "cancelled"
            if cancelled or not seg.feed.closed:
                break  # (an end before the segment's text was complete ends the utterance, as in stream())
        if live.error is not None:
            raise live.error
        if segments == 0 and not cancelled:
            raise PromptError("text is empty: nothing to say", field="text", code="empty_input")

    def _arriving_segment(self, live: TextInput, seg, voice: Voice, params: SamplingParams,
                          before: list[int], taken: int) -> Generator[Event, None, str | None]:
        """Frames of one segment, or of `whole_text`'s pieces when its text was complete before the
        prefill could start; returns how it ended."""
        feed, need = seg.feed, max(taken - len(before), 1)  # the prefill needs its text entries
        if not feed.ready(need):
            yield TEXT_STALL  # the last segment's audio plays while this one's text arrives
        if not feed.wait(need):
            if live.error is not None:
                raise live.error
            yield SegmentEnd("cancelled")
            return "cancelled"
        if feed.closed:
            pieces = self.planner.plan(seg.text, voice, params)
            yield SegmentsAdded(len(pieces) - 1)
            yield from self._pieces(pieces, voice, params, seg.text, seg.start)
            return None
        start = self.prompts.build_ids(seg.role_ids, list(feed.ids), voice)
        eos = self.embedder.text([self.prompts.cfg.ids.tts_eos])
        prompt = LivePrompt(start, feed, before, taken, self.embedder, eos)
        frames = _watch_live(self.loop.frames(prompt, params), live, feed,
                             lambda: self.planner.frame_cap(len(prompt.text_ids)))
        reason = yield from _entering(frames, self.prompts.shape(voice), _LiveSpans(self.prompts.tok, seg),
                                      lambda: len(feed.ids))
        yield SegmentEnd(reason)
        return reason


def _watch_live(frames: Frames, live: TextInput, feed: TextFeed, cap: Callable[[], int]) -> Generator[Event, None, str]:
    """Pass a live segment's frames on; end them at the EOS guard once its text is complete, when
    the text is withdrawn (an interruption: what follows would be made up) or its source failed.
    Returns how the segment ended."""
    made = 0
    try:
        while True:
            try:
                frame = next(frames)
            except StopIteration as done:
                return done.value.end_reason
            if isinstance(frame, torch.Tensor):
                made += 1
                if feed.closed and made > cap():
                    return "frame_cap"  # the EOS guard, as for whole text
            yield frame
            if live.error is not None:
                raise live.error
            if live.cancelled:
                return "cancelled"
    finally:
        frames.close()


def _entering(frames: Frames, shape: PromptShape, span: Callable[[int], tuple[int, int] | None],
              count: Callable[[], int]) -> Generator[Event, None, object]:
    """Pass a segment's frames on, each preceded by `TextEntered` for the text ids that enter the
    talker with it (`shape.text_frame`); `span(i)`: the characters id i covers (None: unknown),
    `count()`: the ids known so far. Returns what `frames` returns."""
    made, i = 0, 0
    try:
        while True:
            try:
                event = next(frames)
            except StopIteration as done:
                return done.value
            if isinstance(event, torch.Tensor):
                entered = []
                while i < count() and shape.text_frame(i) <= made:
                    if (s := span(i)) is not None:
                        entered.append(s)
                    i += 1
                if entered:
                    yield TextEntered(tuple(entered))
                made += 1
            yield event
    finally:
        frames.close()


class _LiveSpans:
    """The characters each released id of a live segment covers, in the whole text: tokenized
    again from the segment's text when an id past the known ones is asked for (the released ids
    are the first ids of their text's tokenization whatever follows them, text_stream.py)."""

    def __init__(self, tok, seg: Segment):
        self.tok, self.seg = tok, seg
        self.spans: list[tuple[int, int]] = []

    def __call__(self, i: int) -> tuple[int, int] | None:
        if i >= len(self.spans):
            released = list(self.seg.feed.ids)
            ids, spans = text_spans(self.tok, self.seg.text)
            n = 0
            while n < min(len(ids), len(released)) and ids[n] == released[n]:
                n += 1
            base = self.seg.start
            self.spans = [(base + a, base + b) for a, b in spans[:n]]
        return self.spans[i] if i < len(self.spans) else None
