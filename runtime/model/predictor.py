"""The code predictor: 5 decoder layers that turn (talker hidden, codebook-0 code) into codebooks 1..15.

Its 15 embedding tables and 15 heads are stacked into one tensor each ([15, 2048, width]) so a
step is an index, not a Python branch; `stack_official_tables` converts the checkpoint's
per-index names. One frame runs 15 sequential steps on a fresh 16-position cache.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PredictorConfig
from .layers import ConcatKV, KVCache, RMSNorm, attention_mask, decoder_layers, rope_tables


class PredictorBody(nn.Module):
    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        groups = cfg.num_code_groups - 1
        # Table j embeds codebook j+1 at the talker's width.
        self.codec_embedding = nn.Parameter(torch.zeros(groups, cfg.vocab_size, cfg.talker_hidden_size))
        self.layers = decoder_layers(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Predictor(nn.Module):
    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        self.model = PredictorBody(cfg)
        # Head j predicts codebook j+1.
        self.lm_head = nn.Parameter(torch.zeros(cfg.num_code_groups - 1, cfg.vocab_size, cfg.hidden_size))
        if cfg.talker_hidden_size != cfg.hidden_size:  # 1.7B: 2048 -> 1024
            self.small_to_mtp_projection = nn.Linear(cfg.talker_hidden_size, cfg.hidden_size, bias=True)
        else:
            self.small_to_mtp_projection = None

    def embed(self, step: int, codes: torch.Tensor) -> torch.Tensor:
        """Embedding of codebook `step` (1..15) codes [B, ...] at the talker's width."""
        return self.model.codec_embedding[step - 1][codes]

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache: KVCache | ConcatKV) -> torch.Tensor:
        """embeds [B, S, talker width], positions [B, S] -> post-norm hidden [B, S, width]."""
        x = self.small_to_mtp_projection(embeds) if self.small_to_mtp_projection is not None else embeds
        cos, sin = rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        mask = attention_mask(positions, cache.begin(positions))
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, cache.updater(i))
        return self.model.norm(x)

    def logits(self, hidden: torch.Tensor, step: int) -> torch.Tensor:
        """Logits of codebook `step` (1..15) from hidden [B, width]."""
        return F.linear(hidden, self.lm_head[step - 1])

    def predict_frame(self, talker_hidden: torch.Tensor, code0_embed: torch.Tensor,
                      choose: Callable[[torch.Tensor, int], torch.Tensor]) -> torch.Tensor:
        """Codebooks 1..15 [B, 15] for one frame.

        talker_hidden [B, H] is the talker's post-norm hidden state that produced codebook 0;
        code0_embed [B, H] its codebook-0 embedding; choose(logits [B, V], step) picks a code.
        The cache starts empty every frame and grows to 16 positions.
        """
        b = talker_hidden.shape[0]
        cache = ConcatKV(self.cfg.num_layers)
        x = torch.stack([talker_hidden, code0_embed], dim=1)
        pos = torch.arange(2, device=x.device)[None].expand(b, -1)
        codes = []
        for step in range(1, self.cfg.num_code_groups):
            hidden = self(x, pos, cache)[:, -1]
            code = choose(self.logits(hidden, step), step)
            codes.append(code)
            x = self.embed(step, code)[:, None]
            pos = pos[:, -1:] + 1
        return torch.stack(codes, dim=1)

    def frame_embedding(self, code0_embed: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """The talker's next codec input: codebook-0 embedding [..., H] plus the embeddings of
        codebooks 1..15 (codes [..., 15]), each from its own table."""
        total = code0_embed
        for step in range(1, self.cfg.num_code_groups):
            total = total + self.embed(step, codes[..., step - 1])
        return total


def stack_official_tables(state: dict[str, torch.Tensor], groups: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Turn `model.codec_embedding.{j}.weight` / `lm_head.{j}.weight` into the stacked parameters.

    Keys outside those two families pass through; a missing index is left for the strict load to
    report under its official name.
    """
    out = dict(state)
    for fam_in, fam_out in ((f"{prefix}model.codec_embedding.", f"{prefix}model.codec_embedding"),
                            (f"{prefix}lm_head.", f"{prefix}lm_head")):
        names = [f"{fam_in}{j}.weight" for j in range(groups)]
        if all(n in out for n in names):
            out[fam_out] = torch.stack([out.pop(n) for n in names])
    return out
