"""The step loop (continuous batching): many streams on one engine, each equal to itself alone.

Tiny checkpoint, a build with 16 KV rows (tests' LIMITS). Streams run in threads, as a server's
streams do; "solo" is the same request spoken by one synthesizer with nothing else running.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing

import numpy as np
import pytest
import torch

from qwen3_tts_trt.runtime.backends.base import KVSlots
from qwen3_tts_trt.runtime.errors import BackendUnavailableError
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.voice import Voice
from support import LIMITS

SPEAKERS = ("ryan", "vivian", "serena")
TEXTS = [f"Stream {i} speaks: {'the quick brown fox jumps. ' * (1 + i % 3)}Done." for i in range(16)]


def _request(synth: Synthesizer, i: int):
    """Request i: mixed speakers, greedy and sampled (own seed), and lengths (streams leave at
    different frames)."""
    voice = Voice(speaker=SPEAKERS[i % len(SPEAKERS)], language="english")
    frames = 12 + 4 * (i % 5)
    params = (synth.greedy_params(max_new_tokens=frames) if i % 2 == 0
              else synth.default_params(max_new_tokens=frames, seed=100 + i))
    return TEXTS[i], voice, params


def _chunks(synth: Synthesizer, i: int, stop_after: int | None = None) -> list:
    """Request i's chunks; with `stop_after`, the stream is closed (cancelled) after that many."""
    text, voice, params = _request(synth, i)
    out = []
    with closing(synth.stream(text, voice, params)) as chunks:
        for chunk in chunks:
            out.append(chunk)
            if stop_after is not None and len(out) == stop_after:
                break  # closing the stream cancels it
    return out


def _codes(synth: Synthesizer, i: int, stop_after: int | None = None) -> torch.Tensor:
    return torch.cat([c.codes for c in _chunks(synth, i, stop_after)])


def _audio(synth: Synthesizer, i: int, stop_after: int | None = None) -> np.ndarray:
    return np.concatenate([c.samples for c in _chunks(synth, i, stop_after)])


def _concurrently(synths: list[Synthesizer], work, late: set[int] = frozenset()) -> list:
    """work(synth, i) for every synthesizer in a thread of its own; the `late` ones join once the
    others have begun (a stream arriving while a batch runs)."""
    results: list = [None] * len(synths)
    errors: list = []
    started = threading.Event()

    def run(i):
        try:
            if i in late:
                started.wait(30)
            results[i] = work(synths[i], i)
        except BaseException as exc:  # noqa: BLE001  (reported by the test thread)
            errors.append(exc)

    stats = synths[0].steps.stats
    base = stats.steps

    def first_chunks(synth):  # the early streams signal once frames flow
        while not started.is_set() and stats.steps < base + 6:
            time.sleep(0.001)
        started.set()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(synths))]
    watcher = threading.Thread(target=first_chunks, args=(synths[0],))
    for t in (watcher, *threads):
        t.start()
    for t in threads:
        t.join(300)
    started.set()
    watcher.join()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads), "a stream hung"
    return results


@pytest.fixture(scope="module")
def pool(tiny_build, tiny_custom_voice):
    """16 synthesizers on one ONNX Runtime engine (its step loop), and each request's solo codes."""
    out, _ = tiny_build
    first = Synthesizer.open(tiny_custom_voice, out, "onnx")
    synths = [first] + [first.sibling() for _ in range(LIMITS.max_batch - 1)]
    solo = [_codes(first, i) for i in range(len(synths))]
    return synths, solo


def test_sixteen_concurrent_streams_each_equal_its_solo_codes(pool):
    synths, solo = pool
    loop = synths[0].steps
    before = loop.stats.decode_calls, loop.stats.decode_rows
    together = _concurrently(synths, _codes, late=set(range(8, 16)))
    for i, (alone, shared) in enumerate(zip(solo, together)):
        assert torch.equal(alone, shared), f"stream {i} differs from its solo run"
    calls, rows = loop.stats.decode_calls - before[0], loop.stats.decode_rows - before[1]
    assert loop.stats.max_rows >= 4 and rows > 1.5 * calls, (calls, rows)  # the talker steps were shared
    assert all(not s.backend.live for s in synths)  # every stream left the loop


def test_a_stream_cancelled_mid_way_leaves_the_others_whole(pool):
    synths, solo = pool
    four = synths[:4]

    def work(synth, i):
        return _codes(synth, i, stop_after=2 if i == 1 else None)

    got = _concurrently(four, work)
    for i in (0, 2, 3):
        assert torch.equal(got[i], solo[i])
    assert torch.equal(got[1], solo[1][:len(got[1])])
    assert synths[1].last_metrics.end_reason == "cancelled"
    assert torch.equal(_codes(synths[1], 5), solo[5])  # its row serves the next request whole


def test_a_stream_waiting_for_text_does_not_hold_the_others(pool):
    """One stream speaks text that arrives in two parts (an LLM that pauses); its second part comes
    only once the three other streams have finished, which they can only do if the loop goes on
    without the waiting stream. All four equal their solo runs (arriving text speaks as the whole
    text does)."""
    synths, solo = pool
    four = synths[:4]
    text0, voice0, params0 = _request(synths[0], 0)
    words = text0.split(" ")
    others_done = threading.Event()
    finished = []

    def work(synth, i):
        if i:
            codes = _codes(synth, i)
            finished.append(i)
            if len(finished) == 3:
                others_done.set()
            return codes
        live = synth.text_input()
        held = []

        def typist():
            live.push(" ".join(words[:4]) + " ")
            held.append(others_done.wait(120))  # the rest of the text waits for the other streams
            live.push(" ".join(words[4:]))
            live.close()

        threading.Thread(target=typist).start()
        codes = torch.cat([c.codes for c in synth.stream_text(live, voice0, params0)])
        assert held == [True], "the other streams did not finish while this one waited for text"
        return codes

    got = _concurrently(four, work)
    for i in range(4):
        assert torch.equal(got[i], solo[i]), i


def test_the_torch_backend_batches_rows_the_same_way(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    first = Synthesizer.open(tiny_custom_voice, out, "torch")
    synths = [first] + [first.sibling() for _ in range(3)]
    solo = [_codes(first, i) for i in range(4)]
    together = _concurrently(synths, _codes)
    for alone, shared in zip(solo, together):
        assert torch.equal(alone, shared)
    assert first.steps.stats.max_rows >= 2


def _batched_codec_equals_solo(synths: list[Synthesizer], monkeypatch, atol: float = 0.0, delay: float = 0.02) -> None:
    """Streams joining at different frames, greedy and sampled, one cancelled after two chunks:
    each one's audio is its solo audio (to `atol`), while chunks shared codec calls."""
    n = len(synths)
    solo = [_audio(synths[0], i) for i in range(n)]
    stats = synths[0].steps.codecs.stats
    calls, rows = stats.calls, stats.rows
    backend = synths[0].steps.backend
    inner = backend.codec_run

    def slow_codec(codes, state):  # a codec call slower than a frame: the chunks behind it queue
        time.sleep(delay)
        return inner(codes, state)

    monkeypatch.setattr(backend, "codec_run", slow_codec)
    together = _concurrently(synths, lambda synth, i: _audio(synth, i, stop_after=2 if i == 1 else None),
                             late=set(range(n // 2, n)))
    monkeypatch.undo()
    for i, (alone, shared) in enumerate(zip(solo, together)):
        expected = alone[:len(shared)] if i == 1 else alone
        np.testing.assert_allclose(shared, expected, rtol=0, atol=atol,
                                   err_msg=f"stream {i}'s audio differs from its solo audio")
    assert len(together[1]) < len(solo[1])
    assert stats.max_rows >= 2 and stats.rows - rows > stats.calls - calls, "no codec call was shared"


def test_streams_share_codec_calls_and_each_gets_its_solo_audio(pool, monkeypatch):
    synths, _ = pool
    _batched_codec_equals_solo(synths[:8], monkeypatch)  # ONNX Runtime: sample for sample


def test_the_torch_backend_batches_codec_chunks_the_same_way(tiny_build, tiny_custom_voice, monkeypatch):
    out, _ = tiny_build
    first = Synthesizer.open(tiny_custom_voice, out, "torch")
    # PyTorch's CPU convolutions sum in another order for a batch of rows: float32 rounding (4e-7
    # measured), a thousandth of one PCM16 step
    _batched_codec_equals_solo([first] + [first.sibling() for _ in range(3)], monkeypatch, atol=2e-6)


@pytest.mark.slow  # the 0.6B build (conftest's real_build, ~4 min if the slow step has not made it yet)
@pytest.mark.timeout(2400)
def test_real_shapes_streams_share_codec_calls_and_each_gets_its_solo_audio(real_build, real_custom_voice, monkeypatch):
    """At the real 0.6B shapes (the codec's 8 transformer layers, its upsampling to 24 kHz): a
    greedy stream, then a sampled and a greedy one that join later together (their chunks ramp
    alike, so they share codec calls), the sampled one cancelled after two chunks, on one ONNX
    Runtime engine: each one's audio is its solo audio, sample for sample."""
    out, _ = real_build
    first = Synthesizer.open(real_custom_voice, out, "onnx")
    # a frame takes ~0.4 s at fp32 here: a codec call of 1 s lets the next streams' chunks queue behind it
    _batched_codec_equals_solo([first, first.sibling(), first.sibling()], monkeypatch, delay=1.0)


def test_streams_beyond_the_builds_rows_are_refused_clearly(pool, tiny_custom_voice):
    synths, _ = pool
    with pytest.raises(BackendUnavailableError, match="--max-batch"):
        synths[0].sibling()  # all 16 rows are taken
    synths[-1].close()
    again = synths[0].sibling()  # a closed synthesizer's row serves another
    assert again.backend.row == synths[-1].backend.row
    synths[-1] = again


def test_kv_rows_grow_by_blocks_keep_their_entries_and_write_each_row_at_its_position():
    kv = KVSlots(lambda shape: np.zeros(shape, np.float32), num_layers=1, max_len=200, heads=2, head_dim=3, rows=3)
    assert kv.length == KVSlots.BLOCK and kv.rows_prefix(2)[0].flags.c_contiguous
    first = [np.full((1, 5, 2, 3), v, np.float32) for v in (1.0, 2.0)]
    kv.store(first, 0, row=1)
    new = [np.arange(3 * 6, dtype=np.float32).reshape(3, 1, 2, 3) + 100 * v for v in (1, 2)]
    kv.store_rows(new, rows=[0, 1], positions=[70, 5])  # row 0 past the first block: rows grow
    assert kv.length == 128
    k = kv.tensors[0]
    assert (k[1, :5] == 1.0).all() and (k[1, 5] == new[0][1, 0]).all() and (k[0, 70] == new[0][0, 0]).all()
    assert (k[2] == 0).all()  # a row that took no part is untouched
    kv.resize(6)  # the long stream ended: rows shrink to a block, the short one's entries stay
    assert kv.length == KVSlots.BLOCK and (kv.tensors[1][1, :5] == 2.0).all()
    with pytest.raises(ValueError, match="context"):
        kv.ensure(201)
