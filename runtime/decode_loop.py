"""The frame loop over any backend: prefill, then per frame predictor -> yield -> talker step.

Same counting as the reference loop (runtime/generate.py), which is the oracle it is tested
against: `max_new_tokens` counts codebook-0 samples, the EOS frame is never yielded. Codebook 0
is sampled on the host with the official rules (`HostSampler`); codebooks 1..15 are sampled
inside the predictor engine from uniform noise drawn from the same seeded generator, so every
backend gives the same codes for the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generator

import torch

from .backends.base import FrameEngine
from .errors import PromptError
from .prompt import Prompt
from .sampling import HostSampler, SamplingParams


class TextStall:
    """Yielded after a frame when the next step's text has not arrived yet: the streamer flushes
    the audio it holds before the loop blocks waiting for that text."""

    def __repr__(self) -> str:
        return "TEXT_STALL"


TEXT_STALL = TextStall()


@dataclass(frozen=True)
class LoopResult:
    """How one prompt's frame loop ended: the generator's return value."""

    frames: int
    end_reason: str  # "eos" | "max_new_tokens" | "context"


Frames = Generator["torch.Tensor | TextStall", None, LoopResult]


class FrameLoop:
    def __init__(self, backend: FrameEngine):
        self.backend = backend
        self.config = backend.config

    def _predictor_controls(self, params: SamplingParams):
        top_k_max = self.backend.limits.top_k_max
        if params.subtalker_do_sample and not 0 < params.subtalker_top_k <= top_k_max:
            raise ValueError(f"subtalker_top_k must be in 1..{top_k_max} (the engines' top-k width)")
        temp = params.subtalker_temperature if params.subtalker_do_sample else 0.0
        return (torch.tensor([temp], dtype=torch.float32),
                torch.tensor([params.subtalker_top_k or top_k_max], dtype=torch.long),
                torch.tensor([params.subtalker_top_p], dtype=torch.float32))

    def frames(self, prompt: Prompt, params: SamplingParams) -> Frames:
        """Yield frames [G] (int64, CPU) as they are made (and TEXT_STALL where text is missing);
        return how the loop ended (`result = yield from loop.frames(...)`)."""
        b, cfg = self.backend, self.config
        limits = b.limits
        s = prompt.length
        if s > limits.max_prompt:
            raise PromptError(f"the prompt has {s} positions; the prefill engine takes {limits.max_prompt}")
        budget, end = prompt.frame_budget(params.max_new_tokens, limits.max_context)
        sampler = HostSampler(params, cfg.ids, cfg.talker.vocab_size)
        controls = self._predictor_controls(params)
        noise_shape = (1, cfg.talker.num_code_groups - 1, limits.top_k_max)
        eos = cfg.ids.codec_eos

        logits, hidden = b.prefill(prompt.embeds)  # KV slots need no reset: positions mask stale ones
        c0 = sampler.talker(logits.cpu().numpy(), 0)
        code0 = torch.zeros(1, dtype=torch.long)  # reused: backends copy their inputs
        frames = 0
        for step in range(budget - 1):
            if c0 == eos:
                end = "eos"
                break
            code0[0] = c0
            codes, frame_embed = b.predict_frame(hidden, code0, sampler.noise(noise_shape), *controls)
            frame = torch.cat([code0, codes[0].cpu()])
            frames += 1
            yield frame
            if not prompt.text_ready(step):  # text still being written: let the streamer flush, then wait
                yield TEXT_STALL
            # the talker's next input: all 16 codebook embeddings plus this step's text input
            x = frame_embed.to("cpu", torch.float32)[:, None] + prompt.text_input(step)
            logits, hidden = b.decode(x, s + step)
            c0 = sampler.talker(logits.cpu().numpy(), step + 1)
        else:
            if c0 == eos:
                end = "eos"
        return LoopResult(frames, end)

    def generate(self, prompt: Prompt, params: SamplingParams) -> torch.Tensor:
        """All frames [F, G] at once."""
        frames = [f for f in self.frames(prompt, params) if isinstance(f, torch.Tensor)]
        return torch.stack(frames) if frames else torch.zeros((0, self.config.talker.num_code_groups), dtype=torch.long)
