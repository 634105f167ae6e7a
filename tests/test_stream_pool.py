"""The pool's waiting room and its shutdown: a request waits for a slot while the wait it can expect
stays within `wait_s`, is refused at once (with that wait as its retry time) when it would not, and
`end_all` ends every open stream at a frame. Real streams on the tiny build (ONNX Runtime)."""

import asyncio

import pytest

from qwen3_tts_trt.runtime.errors import PoolBusy
from qwen3_tts_trt.runtime.stream_pool import StreamPool
from qwen3_tts_trt.runtime.voice import Voice

LONG = "This sentence keeps a slot busy for a while, frame after frame. " * 8
VOICE = Voice(speaker="ryan")


@pytest.fixture
def pool_of(onnx_synth):
    pools = []

    def make(capacity=1, **waiting):
        pools.append(StreamPool(onnx_synth, capacity=capacity, **waiting))
        return pools[-1]

    return make


async def _holder(pool):
    """A stream that holds its slot until closed (its first chunk read, the rest left unread)."""
    stream = await pool.open(LONG, VOICE, pool.synth.greedy_params(max_new_tokens=400))
    await stream.__anext__()
    return stream


async def test_a_request_waits_while_its_expected_wait_is_within_wait_s(pool_of):
    pool = pool_of(capacity=1, wait_s=30)
    holder = await _holder(pool)
    pool.hold_s = 2.0  # streams have held the slot 2 s on average: one waiter expects 2 s
    assert pool.expected_wait_s() == 2.0
    waiter = asyncio.ensure_future(pool.open("Hello.", VOICE, pool.synth.greedy_params(max_new_tokens=10)))
    await asyncio.sleep(0.2)
    assert pool.waiting == 1 and not waiter.done()
    assert pool.expected_wait_s() == 4.0  # a second waiter would queue behind the first
    await holder.aclose()
    stream = await asyncio.wait_for(waiter, 30)
    assert len([c async for c in stream]) > 0
    assert pool.live == 0 and pool.waiting == 0


async def test_a_request_whose_expected_wait_passes_wait_s_is_refused_at_once(pool_of):
    pool = pool_of(capacity=2, wait_s=5)
    holders = [await _holder(pool), await _holder(pool)]
    pool.hold_s = 12.0  # one waiter, two slots turning: 6 s expected, past the 5 s deadline
    with pytest.raises(PoolBusy, match="expected in 6 s, past the 5 s") as refused:
        await pool.open("Hello.", VOICE, pool.synth.greedy_params(max_new_tokens=10))
    assert refused.value.retry_after_s == 6.0 and pool.waiting == 0
    for holder in holders:
        await holder.aclose()


async def test_a_wait_that_runs_out_and_a_full_waiting_room_are_refused(pool_of):
    pool = pool_of(capacity=1, wait_s=0.3, max_waiting=1)
    holder = await _holder(pool)
    waiter = asyncio.ensure_future(pool.open("Hello.", VOICE, pool.synth.greedy_params(max_new_tokens=10)))
    await asyncio.sleep(0.05)
    with pytest.raises(PoolBusy, match="1 request\\(s\\) already wait"):
        await pool.open("Hello.", VOICE, pool.synth.greedy_params(max_new_tokens=10))
    with pytest.raises(PoolBusy, match="stayed busy for 0.3 s"):
        await waiter
    await holder.aclose()


async def test_hold_time_is_learnt_from_the_streams_that_end(pool_of):
    pool = pool_of(capacity=1)
    assert pool.hold_s is None and pool.expected_wait_s() == 0.0
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    stream = await pool.open("Hello there.", VOICE, pool.synth.greedy_params(max_new_tokens=10))
    async for _ in stream:
        pass
    held = loop.time() - t0
    assert 0 < pool.hold_s <= held
    first = pool.hold_s
    stream = await pool.open("Hello there.", VOICE, pool.synth.greedy_params(max_new_tokens=10))
    await stream.aclose()
    assert pool.hold_s != first  # a moving average of every stream that ended


async def test_end_all_ends_every_open_stream_at_a_frame(pool_of):
    pool = pool_of(capacity=2)
    streams = [await _holder(pool), await _holder(pool)]
    assert pool.live == 2
    await pool.end_all()
    assert pool.live == 0
    for stream in streams:
        rest = [chunk async for chunk in stream]  # what was made before the end, whole chunks, then the end
        assert all(len(chunk.samples) % 1920 == 0 for chunk in rest)
        assert not stream.finished and stream.metrics.end_reason == "cancelled"
