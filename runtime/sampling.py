"""The official sampling rules, written out (HF 4.57 processor order).

Codebook 0 (talker): repetition penalty over previously generated codebook-0 ids, EOS held off
for the first `min_new_tokens` frames, control ids suppressed, then temperature, top-k, top-p and
a multinomial draw (or argmax when greedy). Codebooks 1..15 (predictor): temperature, top-k,
top-p, draw. Draws use torch.multinomial so that, under the same seed, they consume random
numbers exactly as the official generate loop does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from .config import SamplingDefaults, TokenIds

# Temperatures and the repetition penalty divide the logits: finite, and within a range where
# float32 scores neither overflow nor vanish (the official code takes any positive number).
SCALE_RANGE = (1e-6, 1e6)


@dataclass(frozen=True)
class SamplingParams(SamplingDefaults):
    """A request's sampling settings: the checkpoint's defaults (same fields) plus a seed."""

    seed: int | None = None

    @classmethod
    def from_defaults(cls, d: SamplingDefaults, **overrides) -> "SamplingParams":
        return replace(cls(**asdict(d)), **overrides)

    @classmethod
    def greedy(cls, defaults: SamplingDefaults | None = None, **overrides) -> "SamplingParams":
        """Argmax decoding. Pass the checkpoint's defaults (`config.sampling`, or use
        `Synthesizer.greedy_params()`) to decode like the official `do_sample=False`, which keeps
        the checkpoint's repetition penalty; without them the class defaults apply (penalty 1.05,
        the released checkpoints' value)."""
        base = cls(**asdict(defaults)) if defaults is not None else cls()
        return replace(base, do_sample=False, subtalker_do_sample=False, **overrides)

    def validate(self, top_k_max: int | None = None) -> "SamplingParams":
        """Raise PromptError naming the first setting no generation can run with; return self."""
        from .errors import PromptError

        def need(ok: bool, what: str) -> None:
            if not ok:
                raise PromptError(f"invalid sampling setting: {what}", field=what.split()[0], code="invalid_sampling")

        def integer(v) -> bool:
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        def scale(v) -> bool:
            # A divisor of the logits: outside this range float32 scores overflow to inf / NaN.
            return isinstance(v, (int, float, np.number)) and SCALE_RANGE[0] <= v <= SCALE_RANGE[1]

        lo, hi = SCALE_RANGE

        need(integer(self.max_new_tokens) and self.max_new_tokens >= 2,
             f"max_new_tokens must be an integer >= 2 (one frame needs two samples), got {self.max_new_tokens!r}")
        need(integer(self.min_new_tokens) and self.min_new_tokens >= 0, f"min_new_tokens must be >= 0, got {self.min_new_tokens!r}")
        need(self.seed is None or (integer(self.seed) and 0 <= self.seed < 2 ** 63),
             f"seed must be None or an integer in 0..2**63-1, got {self.seed!r}")
        need(scale(self.repetition_penalty), f"repetition_penalty must be in {lo:g}..{hi:g}, got {self.repetition_penalty!r}")
        if self.do_sample:
            need(scale(self.temperature),
                 f"temperature must be in {lo:g}..{hi:g} when sampling (use greedy for argmax), got {self.temperature!r}")
            need(integer(self.top_k) and self.top_k >= 0, f"top_k must be an integer >= 0 (0: off), got {self.top_k!r}")
            need(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        if self.subtalker_do_sample:
            need(scale(self.subtalker_temperature),
                 f"subtalker_temperature must be in {lo:g}..{hi:g}, got {self.subtalker_temperature!r}")
            need(0 < self.subtalker_top_p <= 1, f"subtalker_top_p must be in (0, 1], got {self.subtalker_top_p!r}")
            if top_k_max is not None:
                need(integer(self.subtalker_top_k) and 0 < self.subtalker_top_k <= top_k_max,
                     f"subtalker_top_k must be in 1..{top_k_max} (the engines' top-k width), got {self.subtalker_top_k!r}")
        return self


def _warp(scores: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    scores = scores / temperature
    if top_k and top_k > 0:
        k = min(top_k, scores.shape[-1])
        kth = torch.topk(scores, k)[0][..., -1, None]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False)
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -1:] = False  # always keep the best token
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        scores = scores.masked_fill(remove, float("-inf"))
    return scores


def _draw(scores: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]


class CodeSampler:
    """Picks codebook-0 ids for the talker and codebook 1..15 ids for the predictor."""

    def __init__(self, params: SamplingParams, ids: TokenIds, codec_vocab: int, device=None):
        self.p = params
        self.eos = ids.codec_eos
        # The official rule: the top 1024 ids (the control ids) are suppressed, EOS excepted.
        self.suppress = torch.zeros(codec_vocab, dtype=torch.bool, device=device)
        self.suppress[codec_vocab - 1024:] = True
        self.suppress[self.eos] = False
        self.generator = None
        if params.seed is not None:
            self.generator = torch.Generator(device=device or "cpu").manual_seed(params.seed)

    def talker(self, logits: torch.Tensor, history: torch.Tensor, step: int) -> torch.Tensor:
        """logits [B, V] for frame `step` (0-based); history [B, step] earlier codebook-0 ids."""
        scores = logits.float().clone()  # the caller's logits stay untouched
        if self.p.repetition_penalty != 1.0 and history.numel():
            seen = torch.gather(scores, 1, history)
            seen = torch.where(seen < 0, seen * self.p.repetition_penalty, seen / self.p.repetition_penalty)
            scores = scores.scatter(1, history, seen)
        if step < self.p.min_new_tokens:
            scores[:, self.eos] = float("-inf")
        scores = scores.masked_fill(self.suppress, float("-inf"))
        if not self.p.do_sample:
            return scores.argmax(dim=-1)
        return _draw(_warp(scores, self.p.temperature, self.p.top_k, self.p.top_p), self.generator)

    def predictor(self, logits: torch.Tensor, step: int) -> torch.Tensor:
        scores = logits.float()
        if not self.p.subtalker_do_sample:
            return scores.argmax(dim=-1)
        return _draw(_warp(scores, self.p.subtalker_temperature, self.p.subtalker_top_k, self.p.subtalker_top_p),
                     self.generator)


def sample_with_noise(logits: torch.Tensor, noise: torch.Tensor, temperature: torch.Tensor,
                      top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Temperature / top-k / top-p sampling as fixed-shape tensor ops, from uniform noise given in.

    This is the form that runs inside an engine: no Multinomial (TensorRT has none), no in-graph
    random generator (TensorRT ignores seeds), so a seeded host generator makes results
    reproducible on every backend. Gumbel-max over the K best logits draws from the same
    distribution as softmax + multinomial. K = noise.shape[-1] is the largest top-k an engine
    serves; a smaller top_k masks ranks. temperature <= 0 means greedy (argmax).

    logits [B, V]; noise [B, K] in (0, 1); temperature, top_p float [B]; top_k int64 [B] -> [B] int64.
    """
    k = noise.shape[-1]
    temp = torch.clamp(temperature.float(), min=1e-5)[:, None]
    values, index = torch.topk(logits.float() / temp, k, dim=-1)  # sorted, best first
    rank = torch.arange(k, device=logits.device)[None]
    ninf = torch.full_like(values, float("-inf"))
    values = torch.where(rank < top_k[:, None], values, ninf)
    probs = torch.softmax(values, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability mass of better-ranked tokens
    values = torch.where((before < top_p[:, None]) | (rank == 0), values, ninf)
    gumbel = -torch.log(-torch.log(torch.clamp(noise.float(), 1e-10, 1.0 - 1e-7)))
    drawn = torch.argmax(values + gumbel, dim=-1)
    pick = torch.where(temperature > 0, drawn, torch.zeros_like(drawn))
    return torch.gather(index, 1, pick[:, None])[:, 0]


class HostSampler:
    """Codebook-0 sampling for the streaming loop: the rules of `CodeSampler` on numpy, with a
    Gumbel-max draw from the request's seeded generator (tens of microseconds a frame, where
    torch.multinomial over 3072 logits alone costs about 200 us on a CPU core).

    Greedy picks are identical to `CodeSampler` (same float32 arithmetic, same argmax); sampled
    picks follow the same distribution but not the official random stream, which only the
    reference loop reproduces. The same generator supplies the predictor's noise.
    """

    def __init__(self, params: SamplingParams, ids: TokenIds, codec_vocab: int):
        self.p = params
        self.eos = ids.codec_eos
        suppress = np.zeros(codec_vocab, dtype=bool)
        suppress[codec_vocab - 1024:] = True  # the official rule, as in CodeSampler
        suppress[self.eos] = False
        # Work on the allowed ids only (audio codes + EOS): suppressed ids can never win.
        self.allowed = np.flatnonzero(~suppress)
        self.eos_slot = int(np.searchsorted(self.allowed, self.eos))
        self.seen = np.zeros(self.allowed.size, dtype=bool)
        self.rng = np.random.default_rng(params.seed if params.seed is not None else 0)

    def talker(self, logits: np.ndarray, step: int) -> int:
        """logits [V] for frame `step` (0-based) -> codebook-0 id; remembers it for the penalty."""
        p = self.p
        scores = np.asarray(logits, dtype=np.float32).reshape(-1)[self.allowed]  # a copy
        if p.repetition_penalty != 1.0:
            penalized = np.where(scores < 0, scores * p.repetition_penalty, scores / p.repetition_penalty)
            scores = np.where(self.seen, penalized, scores)
        if step < p.min_new_tokens:
            scores[self.eos_slot] = -np.inf
        if not p.do_sample:
            slot = int(np.argmax(scores))
        else:
            scores /= np.float32(p.temperature)
            k = min(p.top_k, scores.size) if p.top_k and p.top_k > 0 else scores.size
            index = np.argpartition(-scores, k - 1)[:k]
            index = index[np.argsort(-scores[index], kind="stable")]
            values = scores[index]
            if p.top_p < 1.0:
                probs = np.exp(values - values[0])
                probs /= probs.sum()
                keep = (np.cumsum(probs) - probs) < p.top_p
                keep[0] = True
                index, values = index[keep], values[keep]
            gumbel = -np.log(-np.log(self.rng.random(values.size) + 1e-20) + 1e-20)
            slot = int(index[np.argmax(values + gumbel)])
        if slot != self.eos_slot:
            self.seen[slot] = True
        return int(self.allowed[slot])

    def noise(self, shape) -> torch.Tensor:
        """Uniform noise for the predictor engine's in-graph sampling."""
        return torch.from_numpy(self.rng.random(shape, dtype=np.float32))
