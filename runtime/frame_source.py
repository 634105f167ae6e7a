"""An utterance's frames as typed events, for whole text and for text still arriving.

Events, in the order the audio streamer reads them:
- `SegmentsAdded(count)`: the utterance has `count` more segments (pieces of text, one context each);
- a frame: `torch.Tensor` [16] int64 codes;
- `TEXT_STALL`: the frame loop waits for text (the audio made so far should play meanwhile);
- `SegmentEnd(reason)`: a segment ended ("eos", "frame_cap", "max_new_tokens", "context", "cancelled").
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Generator, Iterator

import torch

from .decode_loop import TEXT_STALL, FrameLoop, Frames, TextStall
from .embed import Embedder
from .errors import PromptError
from .prompt import PromptBuilder
from .request_plan import RequestPlanner
from .sampling import SamplingParams
from .text_stream import LivePrompt, TextFeed, TextInput
from .voice import Voice


@dataclass(frozen=True)
class SegmentsAdded:
    count: int


@dataclass(frozen=True)
class SegmentEnd:
    reason: str


Event = torch.Tensor | TextStall | SegmentsAdded | SegmentEnd
Events = Iterator[Event]


class FrameSource:
    def __init__(self, prompts: PromptBuilder, loop: FrameLoop, planner: RequestPlanner, embedder: Embedder):
        self.prompts, self.loop, self.planner, self.embedder = prompts, loop, planner, embedder

    def whole_text(self, pieces: list[str], voice: Voice, params: SamplingParams) -> Events:
        """Frames of every piece in turn, each piece's prompt built when the stream reaches it."""
        yield SegmentsAdded(len(pieces))
        yield from self._pieces(pieces, voice, params)

    def _pieces(self, pieces: list[str], voice: Voice, params: SamplingParams):
        for piece in pieces:
            prompt = self.prompts.build(piece, voice)
            cap = self.planner.frame_cap(len(prompt.text_ids))
            result = yield from self.loop.frames(prompt, replace(params, max_new_tokens=min(params.max_new_tokens, cap + 1)))
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
            yield from self._pieces(pieces, voice, params)
            return None
        start = self.prompts.build_ids(seg.role_ids, list(feed.ids), voice)
        eos = self.embedder.text([self.prompts.cfg.ids.tts_eos])
        prompt = LivePrompt(start, feed, before, taken, self.embedder, eos)
        reason = yield from _watch_live(self.loop.frames(prompt, params), live, feed,
                                        lambda: self.planner.frame_cap(len(prompt.text_ids)))
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
