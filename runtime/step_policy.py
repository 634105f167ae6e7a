"""Which requests the step loop's next step runs, and how long its leader may still wait for more.

A pure decision over values: the pending requests, the streams that took part in the previous
step, and the clock. No locks, no engines: the step loop (runtime/scheduler.py) holds the
requests, asks this policy, and runs what it picks.

- A prefill runs at once, alone, whoever's it is (prompts differ in length: no batch of them).
- A batched step waits until every stream of the previous step has asked again (their host work
  between calls is short), or until `gather_s` has passed since the engine fell idle with a
  request pending. A stream that is waiting for text, or whose consumer is slow, so misses one
  step's gathering and is not waited for again until it asks.
- The step runs the engine that most pending streams ask for. A stream that joined between a
  predictor and a talker call of the others waits one step, and from then on is in step with
  them: one call per engine, not two half ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, Hashable, Sequence

from .contract import BATCHED_ENGINES
from .step_calls import StepRequest


@dataclass(frozen=True)
class StepChoice:
    run: tuple[StepRequest, ...]  # the next step's requests, in the order they were asked; empty: wait
    wait_s: float = 0.0  # with nothing to run: how long the leader may still wait before asking again


@dataclass(frozen=True)
class StepPolicy:
    gather_s: float = 0.005  # the longest a step waits for the previous step's streams

    def choose(self, pending: Sequence[StepRequest], previous: AbstractSet[Hashable], idle_since: float,
               now: float) -> StepChoice:
        """The next step over `pending` (`previous`: the streams of the last batched step that are
        still live; `idle_since`: when the engine's last call ended)."""
        alone = next((r for r in pending if not r.batched), None)
        if alone is not None:
            return StepChoice((alone,))
        left = self.gather_left(pending, idle_since, now)
        asked = {r.client for r in pending}
        if asked and (previous <= asked or left <= 0):
            return StepChoice(self._most_asked(pending))
        return StepChoice((), left)

    def gather_left(self, pending: Sequence[StepRequest], idle_since: float, now: float) -> float:
        """`gather_s` from when the engine fell idle with a request pending, less the time gone."""
        oldest = min((r.asked for r in pending), default=now)
        return self.gather_s - (now - max(oldest, idle_since))

    @staticmethod
    def _most_asked(pending: Sequence[StepRequest]) -> tuple[StepRequest, ...]:
        """Every request for the engine most of them want (a tie: the one asked for first)."""
        engines = [r.call.engine for r in pending]
        engine = max(BATCHED_ENGINES, key=lambda e: (engines.count(e), -engines.index(e) if e in engines else 0))
        return tuple(r for r in pending if r.call.engine == engine)
