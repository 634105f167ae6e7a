"""What a stream asks the step loop for, as values: one engine call of the frame loop, and the record
that carries it from the stream to the step that runs it (runtime/scheduler.py).

Each call names its engine in the contract's vocabulary (runtime/contract.py): the talker's prefill,
a talker step, a predictor frame. Calls to `BATCHED_ENGINES` from several streams merge into one
engine call; a prefill runs alone (prompts differ in length).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Hashable, Union

from .contract import BATCHED_ENGINES, PREDICTOR, TALKER_DECODE, TALKER_PREFILL

if TYPE_CHECKING:  # the calls only carry tensors: the step loop's policy runs without torch
    import torch


# eq=False: calls carry tensors, which compare element-wise; a call is itself, not its values.
@dataclass(frozen=True, eq=False)
class Prefill:
    """The talker over a prompt's positions 0..S-1, into the stream's KV row."""

    engine: ClassVar[str] = TALKER_PREFILL
    embeds: torch.Tensor  # [1, S, H]


@dataclass(frozen=True, eq=False)
class TalkerDecode:
    """One talker position of the stream, its K/V written at `position` of its KV row."""

    engine: ClassVar[str] = TALKER_DECODE
    embeds: torch.Tensor  # [1, 1, H]
    position: int


@dataclass(frozen=True, eq=False)
class PredictFrame:
    """Codebooks 1..15 of the stream's next frame (the predictor samples them from `noise`)."""

    engine: ClassVar[str] = PREDICTOR
    hidden: torch.Tensor
    code0: torch.Tensor
    noise: torch.Tensor
    temperature: torch.Tensor
    top_k: torch.Tensor
    top_p: torch.Tensor

    @property
    def args(self) -> tuple:
        """The inputs in `Backend.predict_frame`'s order."""
        return (self.hidden, self.code0, self.noise, self.temperature, self.top_k, self.top_p)


Call = Union[Prefill, TalkerDecode, PredictFrame]


@dataclass(eq=False)
class StepRequest:
    """One stream's call, from when it was asked until a step has served it."""

    client: Hashable  # the stream asking (a StepClient)
    call: Call
    asked: float = field(default_factory=time.perf_counter)
    result: tuple | None = None  # the engine's outputs for this stream alone: (logits, hidden) or (codes, embeds)
    error: BaseException | None = None
    engine_s: float = 0.0  # engine time of the call that served it (shared by the call's streams)
    done: bool = False

    @property
    def batched(self) -> bool:
        """Whether this call merges with other streams' calls of its engine into one step."""
        return self.call.engine in BATCHED_ENGINES
