"""The one interface every backend implements; the frame loop and the streamer see only this.

Tensors cross it as torch tensors on the backend's `device`: embeddings [1, S, H], codebook-0
logits [1, V] float32, hidden [1, H], codes int64. The backend owns the KV slots and the codec
state of the stream it serves. KV slots need no reset between prompts (a prefill overwrites
positions 0..S-1 and masks the rest by position); `reset` starts a new audio stream.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from contextlib import contextmanager

import torch

from ..config import ModelConfig
from ..contract import EngineLimits


class KVSlots:
    """A stream's K/V slots: per layer, K and V of shape [1, L, H_kv, D] (torch tensors or numpy
    arrays alike), listed in the contract's interleaved order (key_0, value_0, key_1, ...)."""

    def __init__(self, make, num_layers: int):
        self.tensors = [make() for _ in range(2 * num_layers)]

    @property
    def dtype(self):
        return self.tensors[0].dtype

    def views(self, start: int, stop: int) -> list:
        """Positions start..stop-1 of every slot: contiguous views, no copy (batch 1)."""
        return [t[:, start:stop] for t in self.tensors]

    def store(self, kv, start: int) -> None:
        """Write new entries (contract order) at position `start`."""
        for slot, new in zip(self.views(start, start + kv[0].shape[1]), kv):
            slot[...] = new


class Backend(ABC):
    name: str = "abstract"
    device: torch.device = torch.device("cpu")
    fallback: str | None = None  # why `auto` chose this backend over a better one (None: it was the first choice)

    def __init__(self, config: ModelConfig, limits: EngineLimits):
        self.config = config
        self.limits = limits
        self.engine_seconds = 0.0  # time inside engine execution only (not this class's glue)

    @contextmanager
    def engine_time(self):
        """Wrap exactly the engine run (and, on a GPU, the wait for it) to count engine time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.engine_seconds += time.perf_counter() - t0

    @abstractmethod
    def reset(self) -> None:
        """Start a new audio stream: the codec state goes back to silence."""

    @abstractmethod
    def prefill(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the talker over positions 0..S-1 and keep their K/V; -> (logits [1, V], hidden [1, H])."""

    @abstractmethod
    def decode(self, embeds: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One talker position; its K/V goes to slot `position`; -> (logits [1, V], hidden [1, H])."""

    @abstractmethod
    def predict_frame(self, hidden: torch.Tensor, code0: torch.Tensor, noise: torch.Tensor,
                      temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebooks 1..15 of a frame -> (codes [1, 15], next talker codec input [1, H])."""

    @abstractmethod
    def codec_step(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [1, 16, T] -> PCM [1, T * samples_per_frame] float32, continuing the stream."""

    def close(self) -> None:  # noqa: B027  (optional hook: most backends free by refcount)
        """Release engines and buffers."""
