"""The PyTorch reference pipeline in one object: checkpoint -> prompt -> codes -> PCM."""

from __future__ import annotations

import torch

from .checkpoint import Networks, load_networks
from .generate import GenerationResult, ReferenceGenerator
from .prompt import Prompt, PromptBuilder, Voice
from .sampling import SamplingParams
from .text import TextTokenizer


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
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [F, G] -> PCM [F * samples_per_frame] (float32, 24 kHz)."""
        return self.nets.codec.decode(codes.T[None].to(torch.long))[0].float()
