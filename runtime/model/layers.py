"""The transformer pieces shared by the talker, the code predictor and the codec's transformer.

Written once: RMSNorm, rotary embedding, attention over a cache of key/value slots, SwiGLU.
Every shape keeps a leading batch axis and every row carries its own positions, so a batch of
independent streams (one KV slot each) runs through the same code as a single stream.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

KVUpdate = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class RMSNorm(nn.Module):
    """RMSNorm computed in fp32, cast back to the input dtype, then scaled (the official order)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


def rope_tables(positions: torch.Tensor, head_dim: int, theta: float, dtype: torch.dtype):
    """cos/sin tables [B, S, 1, D] for integer positions [B, S] (rotate-half layout, heads broadcast).

    The talker's M-RoPE has three identical position rows for speech, which makes it exactly this
    plain 1-D RoPE.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=positions.device).float() / head_dim))
    freqs = positions.float()[..., None] * inv_freq  # [B, S, D/2]
    emb = torch.cat((freqs, freqs), dim=-1)[:, :, None]  # [B, S, 1, D]
    return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + _rotate_half(x) * sin


def attention_mask(query_pos: torch.Tensor, key_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Boolean mask [B, 1, S, L]: key j is visible to query i iff 0 <= pos_j <= pos_i (and within window).

    query_pos [B, S]; key_pos [B, L] or [L]. Slots holding no data carry a negative position or a
    position after the query, so stale cache entries are never attended.
    """
    if key_pos.dim() == 1:
        key_pos = key_pos[None]
    q = query_pos[:, None, :, None]
    k = key_pos[:, None, None, :]
    visible = (k <= q) & (k >= 0)
    if window is not None:
        visible = visible & (k > q - window)
    return visible


class Attention(nn.Module):
    """Multi-head attention with grouped KV heads, optional per-head QK-norm, RoPE.

    The cache is reached through `kv_update(k_new, v_new) -> (k_all, v_all)`, with K/V laid out
    [B, L, H_kv, D] (sequence before heads, so a prefix of a stream's cache is one contiguous
    block an engine can read, and a new position one block it can write in place). The same
    module thus serves a static slot cache (talker, predictor), an engine's past + new slice, and
    the codec's rolling window history.
    """

    def __init__(self, hidden: int, num_heads: int, num_kv_heads: int, head_dim: int,
                 qk_norm_eps: float | None, bias: bool = False):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.q_proj = nn.Linear(hidden, num_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(hidden, num_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(hidden, num_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(num_heads * head_dim, hidden, bias=bias)
        if qk_norm_eps is not None:
            self.q_norm = RMSNorm(head_dim, qk_norm_eps)
            self.k_norm = RMSNorm(head_dim, qk_norm_eps)
        else:
            self.q_norm = self.k_norm = None

    def forward(self, x, cos, sin, mask, kv_update: KVUpdate):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:  # QK-norm acts per head, before RoPE
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k_all, v_all = kv_update(k, v)
        # Grouped heads without repeating K/V: query head h = g * rep + r reads KV head g. Scores
        # are [B, G, rep, S, L]; K/V broadcast over rep (no copy, no reshape of symbolic axes).
        g, rep = self.num_kv_heads, self.num_heads // self.num_kv_heads
        q = q.view(b, s, g, rep, self.head_dim).permute(0, 2, 3, 1, 4)  # [B, G, rep, S, D]
        k_all = k_all.permute(0, 2, 1, 3)[:, :, None]  # [B, G, 1, L, D]
        v_all = v_all.permute(0, 2, 1, 3)[:, :, None]
        scores = torch.matmul(q, k_all.transpose(-1, -2)) * (self.head_dim ** -0.5)
        scores = scores.masked_fill(~mask[:, :, None], torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(probs, v_all).permute(0, 3, 1, 2, 4).reshape(b, s, self.num_heads * self.head_dim)
        return self.o_proj(out)


class SwiGLU(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return self.scale * x


class DecoderLayer(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x)); optional LayerScale (codec)."""

    def __init__(self, hidden, intermediate, num_heads, num_kv_heads, head_dim, eps,
                 qk_norm: bool, layer_scale: bool = False):
        super().__init__()
        self.self_attn = Attention(hidden, num_heads, num_kv_heads, head_dim, eps if qk_norm else None)
        self.mlp = SwiGLU(hidden, intermediate)
        self.input_layernorm = RMSNorm(hidden, eps)
        self.post_attention_layernorm = RMSNorm(hidden, eps)
        if layer_scale:
            self.self_attn_layer_scale = LayerScale(hidden)
            self.mlp_layer_scale = LayerScale(hidden)
        else:
            self.self_attn_layer_scale = self.mlp_layer_scale = None

    def forward(self, x, cos, sin, mask, kv_update: KVUpdate):
        h = self.self_attn(self.input_layernorm(x), cos, sin, mask, kv_update)
        x = x + (self.self_attn_layer_scale(h) if self.self_attn_layer_scale is not None else h)
        h = self.mlp(self.post_attention_layernorm(x))
        return x + (self.mlp_layer_scale(h) if self.mlp_layer_scale is not None else h)


def decoder_layers(cfg) -> nn.ModuleList:
    """The Qwen3 decoder stack shared by talker and predictor (QK-norm, no layer scale)."""
    return nn.ModuleList(
        DecoderLayer(cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_kv_heads,
                     cfg.head_dim, cfg.rms_norm_eps, qk_norm=True)
        for _ in range(cfg.num_layers)
    )


class KVCache:
    """Static per-layer key/value slots [B, L, H_kv, D]; row b writes at its own positions.

    Slot index == absolute position, so the attention mask derived from positions is all that
    separates live entries from stale ones (gpt-fast's KVCache with one position row per stream).
    """

    def __init__(self, num_layers, batch, num_kv_heads, max_len, head_dim, dtype, device=None):
        shape = (batch, max_len, num_kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.max_len = max_len
        self._positions = None

    def begin(self, positions: torch.Tensor) -> torch.Tensor:
        """Start a forward over `positions` [B, S]; returns the key positions [L] to mask against."""
        self._positions = positions
        return torch.arange(self.max_len, device=positions.device)

    def updater(self, layer: int) -> KVUpdate:
        positions = self._positions

        def update(k_new, v_new):
            idx = positions[:, :, None, None].expand(-1, -1, k_new.shape[2], k_new.shape[3])
            self.k[layer].scatter_(1, idx, k_new)
            self.v[layer].scatter_(1, idx, v_new)
            return self.k[layer], self.v[layer]

        return update


class ConcatKV:
    """Keys/values as explicit tensors: given past entries (maybe none), each forward appends.

    This is the engine form of the cache: a graph receives the past as inputs and returns only
    the new entries (`new_k`, `new_v`), which the runtime writes into its slots. Past entries at
    or beyond a row's own position are masked, so rows of different lengths can share a batch.
    """

    def __init__(self, num_layers: int, past_k=None, past_v=None, past_positions=None):
        self.k = list(past_k) if past_k is not None else [None] * num_layers
        self.v = list(past_v) if past_v is not None else [None] * num_layers
        self.pos = past_positions  # [B, P] or None
        self.new_k: list[torch.Tensor] = [None] * num_layers
        self.new_v: list[torch.Tensor] = [None] * num_layers

    @staticmethod
    def past_positions_for(positions: torch.Tensor, past_len: int) -> torch.Tensor:
        """[B, P] positions of past slots 0..P-1, with -1 (masked) where slot >= the row's position."""
        slots = torch.arange(past_len, device=positions.device)[None]
        return torch.where(slots < positions[:, :1], slots, torch.full_like(slots, -1))

    def begin(self, positions: torch.Tensor) -> torch.Tensor:
        key_pos = positions if self.pos is None else torch.cat([self.pos, positions], dim=1)
        self.pos = key_pos
        return key_pos

    def updater(self, layer: int) -> KVUpdate:
        def update(k_new, v_new):
            self.new_k[layer], self.new_v[layer] = k_new, v_new
            if self.k[layer] is not None:
                k_new = torch.cat([self.k[layer], k_new], dim=1)
                v_new = torch.cat([self.v[layer], v_new], dim=1)
            self.k[layer], self.v[layer] = k_new, v_new
            return k_new, v_new

        return update
