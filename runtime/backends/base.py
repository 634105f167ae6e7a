"""The one interface every backend implements, and the narrower one the frame loop runs on.

Tensors cross it as torch tensors on the backend's `device`: embeddings [1, S, H], codebook-0
logits [1, V] float32, hidden [1, H], codes int64. The backend owns the KV slots: one row per
stream it can serve at once (`limits.max_batch`; `decode` serves one row, `decode_rows` several).
KV slots need no reset between prompts (a prefill overwrites positions 0..S-1 and masks the rest
by position). A codec state is a value the caller keeps per stream: `new_codec_state()` at the
start of an audio stream, then `codec_run(codes, state) -> (pcm, next state)` per chunk.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch

from ..config import ModelConfig
from ..contract import EngineLimits


class KVSlots:
    """The K/V of up to `rows` streams: per layer, K and V of shape [rows, L, H_kv, D] (torch
    tensors or numpy arrays alike, made by `make(shape)`), listed in the contract's interleaved
    order (key_0, value_0, key_1, ...). Row r is one stream's slot; slot index == position.

    With one row, L is the whole context from the start and a stream reads its live prefix as a
    contiguous view. With several rows a decode step reads rows 0..n-1 whole (`rows_prefix`: the
    only contiguous block that holds every row's prefix; the graph masks each row by its own
    position), so L grows in blocks with the longest live stream instead of being the context:
    the step then reads at most a block more than the longest stream needs.
    """

    BLOCK = 64  # positions added per growth (a copy of every row, once per BLOCK steps at most)

    def __init__(self, make, num_layers: int, max_len: int, heads: int, head_dim: int, rows: int = 1):
        self.make, self.max_len = make, max_len
        self.generation = 0  # bumped when the tensors are replaced (a binding to them is then stale)
        self.length = max_len if rows == 1 else min(self.BLOCK, max_len)
        self.tensors = [make((rows, self.length, heads, head_dim)) for _ in range(2 * num_layers)]

    @property
    def dtype(self):
        return self.tensors[0].dtype

    def views(self, start: int, stop: int, row: int = 0) -> list:
        """Positions start..stop-1 of one row's slots: contiguous views (one row), no copy."""
        return [t[row:row + 1, start:stop] for t in self.tensors]

    def store(self, kv, start: int, row: int = 0) -> None:
        """Write new entries [1, n, H, D] (contract order) at positions start..start+n-1 of `row`."""
        self.ensure(start + kv[0].shape[1])
        for slot, new in zip(self.views(start, start + kv[0].shape[1], row), kv):
            slot[...] = new

    def rows_prefix(self, n: int) -> list:
        """Rows 0..n-1, every position held: contiguous [n, L, H, D] views, no copy."""
        return [t[:n] for t in self.tensors]

    def store_rows(self, new, rows: list[int], positions: list[int]) -> None:
        """Write the new entry of batch row `rows[i]` ([n, 1, H, D] per tensor) at its own position."""
        self.ensure(max(positions) + 1)
        for slot, entry in zip(self.tensors, new):
            slot[rows, positions] = entry[rows, 0]

    def ensure(self, length: int) -> None:
        """Hold at least `length` positions per row (growing by whole blocks, up to the context)."""
        if length > self.length:
            self.resize(length)

    def resize(self, length: int) -> None:
        """Re-lay every row with room for `length` positions (rounded up to a block); the positions
        both layouts hold are copied. Shrinking is for when the longest stream has ended."""
        if length > self.max_len:
            raise ValueError(f"position {length - 1} is past the context of {self.max_len}")
        length = min(-(-length // self.BLOCK) * self.BLOCK, self.max_len)
        if length == self.length:
            return
        keep = min(length, self.length)
        fresh = []
        for old in self.tensors:
            t = self.make((old.shape[0], length, *old.shape[2:]))
            t[:, :keep] = old[:, :keep]
            fresh.append(t)
        self.tensors, self.length = fresh, length
        self.generation += 1


@runtime_checkable
class FrameEngine(Protocol):
    """What the frame loop (runtime/decode_loop.py) calls: a `Backend` (one stream, KV row 0) or a
    step loop's `StepClient` (its stream's own row, its calls batched with other streams')."""

    config: ModelConfig
    limits: EngineLimits

    def prefill(self, embeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def decode(self, embeds: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def predict_frame(self, hidden: torch.Tensor, code0: torch.Tensor, noise: torch.Tensor,
                      temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]: ...


class Backend(ABC):
    name: str = "abstract"
    device: torch.device = torch.device("cpu")
    fallback: str | None = None  # why `auto` chose this backend over a better one (None: it was the first choice)

    def __init__(self, config: ModelConfig, limits: EngineLimits):
        self.config = config
        self.limits = limits
        self.engine_seconds = 0.0  # time inside engine execution only (not this class's glue)
        self._engine_lock = threading.Lock()
        self._engine_local = threading.local()

    @contextmanager
    def engine_time(self):
        """Wrap exactly the engine run (and, on a GPU, the wait for it) to count engine time."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - t0
            with self._engine_lock:  # a stream's codec runs beside the talker and predictor steps
                self.engine_seconds += spent
            self._engine_local.seconds = self.thread_engine_seconds() + spent

    def thread_engine_seconds(self) -> float:
        """Engine time of the calls the calling thread made: what one call cost, while calls from
        other threads (another stream's codec chunk) run at the same time."""
        return getattr(self._engine_local, "seconds", 0.0)

    @abstractmethod
    def new_codec_state(self):
        """The codec state at the start of an audio stream (silence); one per stream."""

    @abstractmethod
    def prefill(self, embeds: torch.Tensor, row: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the talker over positions 0..S-1 and keep their K/V in KV row `row`;
        -> (logits [1, V], hidden [1, H])."""

    @abstractmethod
    def decode(self, embeds: torch.Tensor, position: int, row: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """One talker position of the stream in KV row `row`, reading exactly its live prefix; its
        K/V goes to slot `position`; -> (logits [1, V], hidden [1, H])."""

    @abstractmethod
    def _decode_padded(self, embeds: torch.Tensor, positions: list[int]) -> tuple:
        """One talker position for each of KV rows 0..n-1 (embeds [n, 1, H], one position per row),
        reading every row whole (each masked by its own position); -> (logits [n, V], hidden [n, H],
        new K/V [n, 1, H_kv, D] per tensor in contract order), nothing stored."""

    def decode_rows(self, embeds: torch.Tensor, positions: list[int], rows: list[int]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One talker position for several streams at once (continuous batching): stream i sits in
        KV row rows[i] at positions[i]; -> (logits [len(rows), V], hidden [len(rows), H]).

        The batch is rows 0..max(rows): rows that take no part (idle, or waiting for text) run on a
        zero input at position 0 and their slots are not written. A lone stream takes `decode`,
        reading exactly its prefix as a solo stream does."""
        if len(rows) == 1:
            return self.decode(embeds, positions[0], rows[0])
        n = max(rows) + 1
        self.kv.ensure(max(positions) + 1)
        x = torch.zeros((n, *embeds.shape[1:]), dtype=embeds.dtype)
        x[rows] = embeds
        at = [0] * n
        for row, position in zip(rows, positions):
            at[row] = position
        logits, hidden, *new = self._decode_padded(x, at)
        self.kv.store_rows(new, rows, positions)
        return logits[rows], hidden[rows]

    @abstractmethod
    def predict_frame(self, hidden: torch.Tensor, code0: torch.Tensor, noise: torch.Tensor,
                      temperature: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """Codebooks 1..15 of a frame for each row (B streams at once) -> (codes [B, 15], next talker
        codec input [B, H])."""

    @abstractmethod
    def codec_run(self, codes: torch.Tensor, state) -> tuple[torch.Tensor, object]:
        """codes [B, 16, T] + codec states stacked by row -> (PCM [B, T * samples_per_frame] float32,
        their next states)."""

    def codec_run_rows(self, chunks: list[tuple[torch.Tensor, list]]) -> list[tuple[torch.Tensor, list]]:
        """Chunks of one length from several streams in one call: [(codes [1, 16, T], state)] ->
        [(PCM [1, N], next state)], each row what its stream alone gets (the codec computes rows
        independently; tests/test_scheduler.py holds it)."""
        if len(chunks) == 1:
            return [self.codec_run(*chunks[0])]
        codes = torch.cat([c for c, _ in chunks])
        state = [_stack_rows([s[k] for _, s in chunks]) for k in range(len(chunks[0][1]))]
        pcm, after = self.codec_run(codes, state)
        return [(pcm[i:i + 1], [t[i:i + 1] for t in after]) for i in range(len(chunks))]

    def end_stream(self) -> None:  # noqa: B027  (a hook: the step loop's clients leave the loop here)
        """An utterance on this backend ended."""

    def close(self) -> None:  # noqa: B027  (optional hook: most backends free by refcount)
        """Release engines and buffers."""


def _stack_rows(tensors: list):
    """One state tensor of several streams, row after row (numpy for ONNX Runtime, torch otherwise)."""
    if isinstance(tensors[0], torch.Tensor):
        return torch.cat(tensors)
    import numpy as np

    return np.concatenate(tensors)
