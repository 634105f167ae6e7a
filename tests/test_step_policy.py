"""The step loop's policy alone: which requests the next step runs and how long its leader waits.

Plain values only (no build, no model, no threads): streams are names, calls carry no tensors,
and the clock is whatever the test says it is.
"""

from __future__ import annotations

import pytest

from qwen3_tts_trt.runtime.step_calls import PredictFrame, Prefill, StepRequest, TalkerDecode
from qwen3_tts_trt.runtime.step_policy import StepPolicy

GATHER = 0.005
POLICY = StepPolicy(GATHER)
T0 = 100.0  # when the engine fell idle


def prefill(stream: str, asked: float = T0) -> StepRequest:
    return StepRequest(stream, Prefill(embeds=None), asked=asked)


def decode(stream: str, asked: float = T0) -> StepRequest:
    return StepRequest(stream, TalkerDecode(embeds=None, position=7), asked=asked)


def predict(stream: str, asked: float = T0) -> StepRequest:
    return StepRequest(stream, PredictFrame(*[None] * 6), asked=asked)


def choose(pending, previous=(), now: float = T0, idle_since: float = T0):
    return POLICY.choose(pending, frozenset(previous), idle_since, now)


@pytest.mark.parametrize("call", [decode, predict])
def test_batched_calls_of_every_stream_merge_into_one_step(call):
    pending = [call("a"), call("b"), call("c")]
    choice = choose(pending, previous={"a", "b", "c"})
    assert choice.run == tuple(pending)  # in the order asked: the rows of one engine call
    assert len(pending) == 3  # the policy only decides: the step loop takes the requests


def test_prefills_run_one_per_call_before_any_step():
    a, b, c = prefill("a"), prefill("b"), decode("c")
    assert choose([c, a, b], previous={"c"}).run == (a,)
    assert choose([c, b], previous={"c"}).run == (b,)
    assert choose([c], previous={"c"}).run == (c,)


def test_the_call_most_streams_ask_for_runs_and_a_joiner_of_another_waits_one_step():
    a, b, joiner = decode("a"), decode("b"), predict("d")
    assert choose([joiner, a, b], previous={"a", "b"}).run == (a, b)
    # the next step: the others ask for their predictor frames, the joiner is in step with them
    a2, b2 = predict("a"), predict("b")
    assert choose([joiner, a2, b2], previous={"a", "b"}).run == (joiner, a2, b2)


def test_a_tie_runs_the_call_asked_for_first():
    a, b = predict("a"), decode("b")
    assert choose([a, b], previous={"a", "b"}).run == (a,)
    assert choose([b, a], previous={"a", "b"}).run == (b,)


def test_the_leader_waits_for_the_previous_steps_streams_up_to_the_gather_time():
    a = decode("a", asked=T0 + 0.001)
    early = choose([a], previous={"a", "b"}, now=T0 + 0.002)
    assert early.run == () and early.wait_s == pytest.approx(GATHER - 0.001)  # from when a asked
    b = decode("b", asked=T0 + 0.003)
    assert choose([a, b], previous={"a", "b"}, now=T0 + 0.003).run == (a, b)  # all asked: no more waiting


def test_the_leader_waits_no_longer_than_the_gather_time():
    a = decode("a", asked=T0 + 0.001)
    assert choose([a], previous={"a", "b"}, now=T0 + 0.001 + GATHER - 1e-6).run == ()
    assert choose([a], previous={"a", "b"}, now=T0 + 0.001 + GATHER + 1e-6).run == (a,)  # b is late: a goes on
    assert choose([a], previous={"a", "b"}, now=T0 + 1.0).run == (a,)


def test_the_gather_time_counts_from_when_the_engine_fell_idle():
    a = decode("a", asked=T0 - 1.0)  # asked while the previous step ran
    choice = choose([a], previous={"a", "b"}, now=T0 + 0.002, idle_since=T0)
    assert choice.run == () and choice.wait_s == pytest.approx(GATHER - 0.002)


@pytest.mark.parametrize("previous", [set(), {"a"}])
@pytest.mark.parametrize("call", [prefill, decode, predict])
def test_a_lone_stream_is_never_delayed(call, previous):
    a = call("a")
    assert choose([a], previous=previous).run == (a,)


def test_a_stream_that_left_the_previous_step_is_not_waited_for():
    # the loop drops a stream from `previous` when it ends its utterance or waits for text
    a, b = decode("a"), decode("b")
    assert choose([a, b], previous={"a", "b"}).run == (a, b)
    assert choose([a], previous={"a"}).run == (a,)


def test_nothing_pending_runs_nothing():
    choice = choose([], previous={"a"})
    assert choice.run == () and choice.wait_s == pytest.approx(GATHER)
