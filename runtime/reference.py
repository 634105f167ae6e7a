"""The PyTorch reference pipeline in one object: checkpoint -> prompt -> codes -> PCM."""

from __future__ import annotations

import torch

from .checkpoint import Networks, load_networks
from .generate import GenerationResult, ReferenceGenerator
from .prompt import Prompt, PromptBuilder
from .sampling import SamplingParams
from .text import TextTokenizer
from .voice import Voice


class Reference:
    def __init__(self, nets: Networks, max_context: int = 4096):
        self.nets = nets
        self.config = nets.config
        self.generator = ReferenceGenerator(nets, max_context)
        self.prompts = PromptBuilder(nets.config, TextTokenizer(nets.model_dir), self.generator.embedder)

    @classmethod
    def load(cls, name_or_path, max_context: int = 4096, dtype=torch.float32) -> "Reference":
        return cls(load_networks(name_or_path, dtype=dtype), max_context)

    def prompt(self, text: str, voice: Voice = Voice()) -> Prompt:
        return self.prompts.build(text, voice)

    def generate(self, text: str, voice: Voice = Voice(), params: SamplingParams | None = None) -> GenerationResult:
        params = params or SamplingParams.from_defaults(self.config.sampling)
        return self.generator.generate(self.prompt(text, voice), params)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, ref_codes: torch.Tensor | None = None) -> torch.Tensor:
        """codes [F, G] -> PCM [F * samples_per_frame] (float32, 24 kHz).

        For an ICL clone pass the reference codes [R, G]: as the official wrapper does, they are
        decoded in front of the generated codes (the codec's left context) and their audio is cut
        off, at int(R / (R + F) * samples), which float rounding sometimes puts one sample short."""
        codes = torch.as_tensor(codes).to(torch.long)
        if ref_codes is None:
            return self.nets.codec.decode(codes.T[None])[0].float()
        ref = torch.as_tensor(ref_codes).to(torch.long)
        wav = self.nets.codec.decode(torch.cat([ref, codes]).T[None])[0].float()
        cut = int(ref.shape[0] / (ref.shape[0] + codes.shape[0]) * wav.shape[0])
        return wav[cut:]
