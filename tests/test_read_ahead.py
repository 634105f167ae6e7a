"""Frames made in a thread of their own while the reader runs the codec (runtime/read_ahead.py).

The maker stays a bounded number of frames ahead of a reader that stops pulling, its errors reach
the reader, and it ends (closing its source where it runs) when the reader goes; in the
synthesizer the codec's calls come from the reader's thread, beside the frame loop's."""

from __future__ import annotations

import threading
import time
from contextlib import closing

import pytest

from qwen3_tts_trt.runtime.read_ahead import ReadAhead
from qwen3_tts_trt.runtime.voice import Voice


def _wait_until(condition, timeout=10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class _Source:
    """A generator that counts what it made and records the thread that closed it."""

    def __init__(self, n=1000, fail_at=None):
        self.made, self.closed_in = 0, None
        self.gen = self._run(n, fail_at)

    def _run(self, n, fail_at):
        try:
            for i in range(n):
                if i == fail_at:
                    raise ValueError("the source broke")
                self.made += 1
                yield i
        finally:
            self.closed_in = threading.current_thread().name


@pytest.mark.parametrize("depth", [1, 4])
def test_the_maker_stays_at_most_depth_items_ahead(depth):
    source = _Source()
    ahead = ReadAhead(source.gen, depth, name="maker")
    items = iter(ahead)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    # read 3; `depth` wait in the queue; one more is made and held until there is room
    assert _wait_until(lambda: source.made == 3 + depth + 1)
    time.sleep(0.2)
    assert source.made == 3 + depth + 1
    assert next(items) == 3
    ahead.close()
    assert source.closed_in == "maker"


def test_a_source_error_is_raised_in_the_reader():
    source = _Source(fail_at=5)
    ahead = ReadAhead(source.gen, 2, name="maker")
    got = []
    with pytest.raises(ValueError, match="the source broke"):
        for item in ahead:
            got.append(item)
    assert got == [0, 1, 2, 3, 4]
    ahead.close()
    assert source.closed_in == "maker"


def test_close_ends_the_maker_and_its_source():
    source = _Source()
    ahead = ReadAhead(source.gen, 2, name="maker")
    assert next(iter(ahead)) == 0
    ahead.close()
    made = source.made
    assert source.closed_in == "maker" and made <= 1 + 2 + 1
    time.sleep(0.1)
    assert source.made == made


def test_the_source_runs_to_its_end():
    source = _Source(n=7)
    assert list(ReadAhead(source.gen, 3, name="maker")) == list(range(7))


def test_the_codec_runs_in_the_readers_thread_beside_the_frames(onnx_synth):
    """The frame loop's calls come from the maker's thread, the codec's from the reader's."""
    engine = onnx_synth.steps.backend
    threads: dict[str, set[str]] = {"predict_frame": set(), "codec_run": set()}
    originals = {name: getattr(engine, name) for name in threads}

    def spy(name):
        def call(*args, **kwargs):
            threads[name].add(threading.current_thread().name)
            return originals[name](*args, **kwargs)
        return call

    for name in threads:
        setattr(engine, name, spy(name))
    try:
        chunks = list(onnx_synth.stream("One more time, with feeling.", Voice(speaker="ryan"),
                                        onnx_synth.greedy_params(max_new_tokens=12)))
    finally:
        for name in threads:
            delattr(engine, name)
    assert chunks
    assert threads["codec_run"] == {threading.current_thread().name}
    assert threads["predict_frame"] == {"qwen3-tts-frames"}


def test_a_reader_that_stops_pulling_holds_the_frames_to_one_chunk_ahead(onnx_synth):
    """A client that plays audio in real time pulls slowly: frames are not made far ahead of it
    (the ramp's largest chunk, plus the one in progress)."""
    ramp = (1, 2, 4)
    params = onnx_synth.greedy_params(max_new_tokens=60, min_new_tokens=60)
    with closing(onnx_synth.stream("Counting slowly: one, two, three, four, five, six, seven.", Voice(speaker="ryan"),
                                   params, chunk_ramp=ramp)) as chunks:
        first = next(chunks)
        assert first.frames == 1
        bound = 1 + max(ramp) + 1
        _wait_until(lambda: onnx_synth._control.frames_made >= bound, timeout=3.0)
        time.sleep(0.3)
        assert onnx_synth._control.frames_made <= bound
        rest = list(chunks)
    m = onnx_synth.last_metrics
    assert m.end_reason == "max_new_tokens" and 1 + sum(c.frames for c in rest) == m.frames > bound
