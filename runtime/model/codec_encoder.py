"""The speech tokenizer's encoder: 24 kHz PCM -> 16 codebooks at 12.5 Hz (ICL reference codes).

The official 12 Hz tokenizer runs transformers' Mimi encoder (4.57: SEANet convs, an 8-layer
causal transformer at 25 Hz, a stride-2 downsample, split residual VQ) and keeps the first 16
of its 32 quantizers. This module is that computation, written here for three reasons: the
parameter names are the official file's (`encoder.encoder.layers.*`, `encoder.encoder_transformer.*`,
`encoder.downsample.*`, `encoder.quantizer.*`) whatever transformers is installed (5.x renamed
Mimi's modules); it exports with one dynamic axis; and it reuses the runtime's attention.

Numerics that matter for identical codes:
  - each causal conv pads (k_eff - stride) zeros on the left and stride - 1 on the right, a static
    amount; its first ceil(N / stride) outputs are exactly those of Mimi's length-dependent extra
    padding (same zeros inside every window), so no pad depends on the input length;
  - the downsample pads by replicating the last frame, as Mimi does;
  - the transformer attends over all earlier frames: transformers 4.57 builds Mimi's encoder mask
    with `create_causal_mask`, which ignores `sliding_window` (the official pin is 4.57.3);
  - nearest codewords come from the same augmented matmul as torch.cdist's default path
    ([-2x, |x|^2, 1] . [e, 1, |e|^2]), then clamp, sqrt and the first argmin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CodecEncoderConfig
from .layers import Attention, LayerScale, attention_mask, rope_tables


class CausalConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, dilation=1, bias=True, replicate=False):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, stride, dilation=dilation, bias=bias)
        self.stride, self.replicate = stride, replicate
        self.left = (kernel - 1) * dilation + 1 - stride

    def forward(self, x):
        right = self.stride - 1
        if self.replicate:
            x = F.pad(x, (self.left, right), mode="replicate")
        elif self.left or right:
            x = F.pad(x, (self.left, right))
        return self.conv(x)


class ResnetBlock(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig, dim: int, dilation: int):
        super().__init__()
        hidden = dim // cfg.compress
        self.block = nn.ModuleList([nn.ELU(), CausalConv(dim, hidden, cfg.residual_kernel_size, dilation=dilation),
                                    nn.ELU(), CausalConv(hidden, dim, 1)])

    def forward(self, x):
        h = x
        for layer in self.block:
            h = layer(h)
        return x + h


class SEANetEncoder(nn.Module):
    """PCM [B, 1, N] -> [B, hidden, ceil(N / prod(ratios))] (25 Hz for the 12 Hz tokenizer)."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        layers: list[nn.Module] = [CausalConv(1, cfg.num_filters, cfg.kernel_size)]
        scale = 1
        for ratio in reversed(cfg.upsampling_ratios):
            dim = scale * cfg.num_filters
            layers += [ResnetBlock(cfg, dim, cfg.dilation_growth_rate ** j) for j in range(cfg.num_residual_layers)]
            layers += [nn.ELU(), CausalConv(dim, dim * 2, ratio * 2, stride=ratio)]
            scale *= 2
        layers += [nn.ELU(), CausalConv(scale * cfg.num_filters, cfg.hidden_size, cfg.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class GeluMLP(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.fc1 = nn.Linear(hidden, intermediate, bias=False)
        self.fc2 = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        h = cfg.hidden_size
        self.self_attn = Attention(h, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, qk_norm_eps=None)
        self.mlp = GeluMLP(h, cfg.intermediate_size)
        self.input_layernorm = nn.LayerNorm(h, eps=cfg.norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(h, eps=cfg.norm_eps)
        self.self_attn_layer_scale = LayerScale(h)
        self.mlp_layer_scale = LayerScale(h)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(x), cos, sin, mask, lambda k, v: (k, v)))
        return x + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(x)))


class Transformer(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_layers))

    def forward(self, x):  # [B, T, C]
        positions = torch.arange(x.shape[1], device=x.device)[None]
        cos, sin = rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        mask = attention_mask(positions, positions[0])
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return x


class Codebook(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("initialized", torch.ones(1))
        self.register_buffer("cluster_usage", torch.ones(size))
        self.register_buffer("embed_sum", torch.zeros(size, dim))

    def table(self) -> torch.Tensor:
        return self.embed_sum / self.cluster_usage.clamp(min=1e-5)[:, None]

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> index of the nearest row, by torch.cdist's matmul formula."""
        table = self.table()
        x_norm = x.pow(2).sum(-1, keepdim=True)
        t_norm = table.pow(2).sum(-1, keepdim=True)
        lhs = torch.cat([x * -2, x_norm, torch.ones_like(x_norm)], dim=-1)
        rhs = torch.cat([table, torch.ones_like(t_norm), t_norm], dim=-1)
        dist = torch.matmul(lhs, rhs.transpose(0, 1)).clamp_min(0).sqrt()
        return dist.argmin(dim=-1)


class VQLayer(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.codebook = Codebook(size, dim)


class ResidualVQ(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig, count: int):
        super().__init__()
        self.input_proj = nn.Conv1d(cfg.hidden_size, cfg.vq_hidden_dim, 1, bias=False)
        self.output_proj = nn.Conv1d(cfg.vq_hidden_dim, cfg.hidden_size, 1, bias=False)  # decode side; kept for the names
        self.layers = nn.ModuleList(VQLayer(cfg.codebook_size, cfg.codebook_dim) for _ in range(count))

    def encode(self, x: torch.Tensor, count: int) -> list[torch.Tensor]:
        residual = self.input_proj(x).transpose(1, 2)  # [B, T, D]
        codes = []
        for layer in self.layers[:count]:
            idx = layer.codebook.nearest(residual)
            residual = residual - F.embedding(idx, layer.codebook.table())
            codes.append(idx)
        return codes


class SplitResidualVQ(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        semantic = cfg.num_semantic_quantizers
        self.semantic_residual_vector_quantizer = ResidualVQ(cfg, semantic)
        self.acoustic_residual_vector_quantizer = ResidualVQ(cfg, cfg.num_quantizers - semantic)
        self.semantic = semantic

    def encode(self, x: torch.Tensor, count: int) -> torch.Tensor:
        codes = self.semantic_residual_vector_quantizer.encode(x, self.semantic)
        codes += self.acoustic_residual_vector_quantizer.encode(x, count - self.semantic)
        return torch.stack(codes, dim=1)  # [B, count, T]


class CodecEncoder(nn.Module):
    """PCM [B, N] at 24 kHz -> codes [B, 16, ceil(N / 1920)] (int64)."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SEANetEncoder(cfg)
        self.encoder_transformer = Transformer(cfg)
        hop = 1
        for r in cfg.upsampling_ratios:
            hop *= r
        stride = round(cfg.sample_rate / hop / cfg.frame_rate)  # 25 Hz -> 12.5 Hz: 2
        self.downsample = CausalConv(cfg.hidden_size, cfg.hidden_size, 2 * stride, stride=stride, bias=False,
                                     replicate=True)
        self.quantizer = SplitResidualVQ(cfg)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = self.encoder(pcm[:, None])
        torch._check(x.shape[-1] > 1)  # export hint: the inputs the contract allows give many frames
        x = self.encoder_transformer(x.transpose(1, 2).contiguous()).transpose(1, 2)
        x = self.downsample(x)
        torch._check(x.shape[-1] > 1)
        return self.quantizer.encode(x, self.cfg.valid_quantizers)
