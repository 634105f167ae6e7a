"""The talker: a Qwen3 decoder over summed text-track and codec-track embeddings.

One `forward` serves prefill (S positions) and decode (1 position); the KV cache is written at
the explicit positions given per row. Parameter names mirror the official checkpoint under
`talker.` so weights load without renaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import TalkerConfig
from .layers import ConcatKV, KVCache, RMSNorm, attention_mask, decoder_layers, rope_tables


class TextProjection(nn.Module):
    """text_embedding width -> talker width: Linear, SiLU, Linear (official ResizeMLP)."""

    def __init__(self, text_hidden: int, hidden: int):
        super().__init__()
        self.linear_fc1 = nn.Linear(text_hidden, text_hidden, bias=True)
        self.linear_fc2 = nn.Linear(text_hidden, hidden, bias=True)

    def forward(self, x):
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class TalkerBody(nn.Module):
    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, cfg.text_hidden_size)
        self.layers = decoder_layers(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Talker(nn.Module):
    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.model = TalkerBody(cfg)
        self.text_projection = TextProjection(cfg.text_hidden_size, cfg.hidden_size)
        self.codec_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)

    def new_cache(self, batch: int, max_len: int, dtype=None, device=None) -> KVCache:
        p = self.codec_head.weight
        return KVCache(self.cfg.num_layers, batch, self.cfg.num_kv_heads, max_len, self.cfg.head_dim,
                       dtype or p.dtype, device or p.device)

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        """Text-track vectors P(ids): every text-track input goes through text_projection."""
        return self.text_projection(self.model.text_embedding(ids))

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.codec_embedding(ids)

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, cache: KVCache | ConcatKV):
        """embeds [B, S, H], positions [B, S] -> (codebook-0 logits [B, S, V], post-norm hidden [B, S, H])."""
        cos, sin = rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, embeds.dtype)
        mask = attention_mask(positions, cache.begin(positions))
        x = embeds
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, cache.updater(i))
        hidden = self.model.norm(x)
        return self.codec_head(hidden), hidden
