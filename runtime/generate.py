"""The reference frame loop in PyTorch: the oracle every other backend must match.

    prefill -> c0 ; while c0 != EOS: predictor(h, c0) -> c1..c15 ; yield frame ;
                    talker step on sum(E_q(frame)) + next text input -> h, c0

Stopping follows the official counting: `max_new_tokens` counts codebook-0 samples, so a
generation cut by the cap yields max_new_tokens - 1 frames (the last c0 never reaches the
predictor), and the EOS frame is never yielded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from .checkpoint import Networks
from .embed import Embedder
from .prompt import Prompt
from .sampling import CodeSampler, SamplingParams


@dataclass
class GenerationResult:
    codes: torch.Tensor  # [F, G]
    end_reason: str  # "eos" | "max_new_tokens" | "context"
    prefill_logits: torch.Tensor  # [V] codebook-0 logits at the last prefill position
    prefill_hidden: torch.Tensor  # [H] post-norm hidden at the last prefill position


class ReferenceGenerator:
    def __init__(self, nets: Networks, max_context: int = 4096):
        self.nets = nets
        self.max_context = max_context
        self.embedder = Embedder(nets.talker, nets.predictor)
        self.last: GenerationResult | None = None

    @torch.inference_mode()
    def frames(self, prompt: Prompt, params: SamplingParams) -> Iterator[torch.Tensor]:
        """Yield frames [G] (codebooks 0..G-1) one at a time; sets `self.last` when done."""
        talker, predictor, cfg = self.nets.talker, self.nets.predictor, self.nets.config
        budget, capped_by = prompt.frame_budget(params.max_new_tokens, self.max_context)
        s = prompt.length
        sampler = CodeSampler(params, cfg.ids, cfg.talker.vocab_size, device=prompt.embeds.device)
        cache = talker.new_cache(1, self.max_context)
        positions = torch.arange(s, device=prompt.embeds.device)[None]
        logits, hidden = talker(prompt.embeds.to(talker.codec_head.weight.dtype), positions, cache)
        last_logits, last_hidden = logits[0, -1], hidden[0, -1]
        history = torch.zeros((1, 0), dtype=torch.long, device=logits.device)
        c0 = sampler.talker(logits[:, -1], history, 0)
        frames = []
        end = capped_by
        for step in range(budget - 1):
            if int(c0) == cfg.ids.codec_eos:
                end = "eos"
                break
            history = torch.cat([history, c0[:, None]], dim=1)
            rest = predictor.predict_frame(hidden[:, -1], talker.embed_codec(c0), sampler.predictor)
            frame = torch.cat([c0[:, None], rest], dim=1)  # [1, G]
            frames.append(frame[0])
            yield frame[0]
            x = self._frame_input(frame, prompt, step)
            logits, hidden = talker(x, torch.full((1, 1), s + step, device=x.device), cache)
            c0 = sampler.talker(logits[:, -1], history, step + 1)
        else:
            if int(c0) == cfg.ids.codec_eos:
                end = "eos"
        codes = torch.stack(frames) if frames else torch.zeros((0, cfg.talker.num_code_groups), dtype=torch.long)
        self.last = GenerationResult(codes, end, last_logits, last_hidden)

    def _frame_input(self, frame: torch.Tensor, prompt: Prompt, step: int) -> torch.Tensor:
        return self.embedder.frames(frame[:, None]) + prompt.text_input(step)

    def generate(self, prompt: Prompt, params: SamplingParams) -> GenerationResult:
        for _ in self.frames(prompt, params):
            pass
        return self.last
