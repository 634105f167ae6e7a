"""The 12 Hz codec decoder: 16 codebooks at 12.5 Hz -> 24 kHz PCM, whole or as an exact stream.

The decoder is fully causal, so streaming needs no re-decoding window, only state:
  - every causal conv keeps its last (k-1)*dilation input samples (zeros at the start, which is
    exactly the official left zero-padding);
  - every transposed conv keeps the input frames whose output tail overlaps the next chunk;
  - each transformer layer keeps K/V of the last `sliding_window - 1` frames, and positions go on
    counting across chunks.
`decode` is `stream_step` on a fresh state, so both entry points share one code path, and chunks
of any size concatenate to the whole-utterance output.
Parameter names mirror `decoder.` in the official speech_tokenizer/model.safetensors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CodecConfig
from .layers import DecoderLayer, RMSNorm, attention_mask, rope_tables


class StateCursor:
    """Reads the incoming state tensors in order and collects the outgoing ones."""

    def __init__(self, state_in: list[torch.Tensor]):
        self._in = iter(state_in)
        self.out: list[torch.Tensor] = []

    def take(self) -> torch.Tensor:
        return next(self._in)

    def put(self, t: torch.Tensor) -> None:
        self.out.append(t)


class CausalConv(nn.Module):
    def __init__(self, cin, cout, kernel, dilation=1, groups=1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation, groups=groups)
        self.context = (kernel - 1) * dilation

    def state_shapes(self):
        return [(self.conv.in_channels, self.context)] if self.context else []

    def forward(self, x, st: StateCursor):
        if not self.context:
            return self.conv(x)
        xx = torch.cat([st.take(), x], dim=-1)
        st.put(xx[..., -self.context:])
        return self.conv(xx)


class CausalTransConv(nn.Module):
    """ConvTranspose1d trimmed on the right to exactly stride*T samples (official >= 0.1.0)."""

    def __init__(self, cin, cout, kernel, stride):
        super().__init__()
        if (kernel - stride) % stride:
            raise ValueError("kernel - stride must be a multiple of stride for exact streaming")
        self.conv = nn.ConvTranspose1d(cin, cout, kernel, stride=stride)
        self.stride = stride
        self.history = (kernel - stride) // stride  # input frames whose output overlaps the next ones

    def state_shapes(self):
        return [(self.conv.in_channels, self.history)] if self.history else []

    def forward(self, x, st: StateCursor):
        t = x.shape[-1]
        if self.history:
            x = torch.cat([st.take(), x], dim=-1)
            st.put(x[..., -self.history:])
        y = self.conv(x)
        start = self.history * self.stride
        return y[..., start:start + t * self.stride]


class SnakeBeta(nn.Module):
    """x + sin^2(x * e^alpha) / (e^beta + 1e-9); alpha and beta are stored in log scale."""

    def __init__(self, channels):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        alpha = torch.exp(self.alpha)[None, :, None]
        beta = torch.exp(self.beta)[None, :, None]
        return x + (1.0 / (beta + 1e-9)) * torch.pow(torch.sin(x * alpha), 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.dwconv = CausalConv(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x, st):
        h = self.dwconv(x, st).transpose(1, 2)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class ResidualUnit(nn.Module):
    def __init__(self, dim, dilation):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv(dim, dim, 1)

    def forward(self, x, st):
        return x + self.conv2(self.act2(self.conv1(self.act1(x), st)), st)


class DecoderBlock(nn.Module):
    def __init__(self, cin, cout, rate):
        super().__init__()
        self.block = nn.ModuleList([SnakeBeta(cin), CausalTransConv(cin, cout, 2 * rate, rate)]
                                   + [ResidualUnit(cout, d) for d in (1, 3, 9)])

    def forward(self, x, st):
        x = self.block[1](self.block[0](x), st)
        for unit in self.block[2:]:
            x = unit(x, st)
        return x


class _Codebook(nn.Module):
    def __init__(self, size, dim):
        super().__init__()
        self.cluster_usage = nn.Parameter(torch.ones(size))
        self.embedding_sum = nn.Parameter(torch.zeros(size, dim))

    def table(self):
        # EMA accumulators -> centroids, as the official EuclideanCodebook.decode does.
        return self.embedding_sum / self.cluster_usage.clamp(min=1e-5)[:, None]


class _VQ(nn.Module):
    def __init__(self, size, dim):
        super().__init__()
        self._codebook = _Codebook(size, dim)


class _VQLayers(nn.Module):
    def __init__(self, n, size, dim):
        super().__init__()
        self.layers = nn.ModuleList(_VQ(size, dim) for _ in range(n))


class _RVQ(nn.Module):
    def __init__(self, n, size, dim, out_dim):
        super().__init__()
        self.vq = _VQLayers(n, size, dim)
        self.output_proj = nn.Conv1d(dim, out_dim, 1, bias=False)

    def forward(self, codes):  # codes [B, n, T]
        total = 0
        for i, layer in enumerate(self.vq.layers):
            total = total + F.embedding(codes[:, i], layer._codebook.table()).transpose(1, 2)
        return self.output_proj(total)


class Dequantizer(nn.Module):
    """Codebook 0 ('semantic') and codebooks 1.. ('acoustic') each summed and projected, then added."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        dim = cfg.codebook_dim // 2
        self.rvq_first = _RVQ(1, cfg.codebook_size, dim, cfg.codebook_dim)
        self.rvq_rest = _RVQ(cfg.num_quantizers - 1, cfg.codebook_size, dim, cfg.codebook_dim)

    def forward(self, codes):
        return self.rvq_first(codes[:, :1]) + self.rvq_rest(codes[:, 1:])


class CodecTransformer(nn.Module):
    """Causal sliding-window transformer; streams with per-layer K/V of the last window-1 frames."""

    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(cfg.hidden_size, cfg.intermediate_size, cfg.num_heads, cfg.num_heads, cfg.head_dim,
                         cfg.rms_norm_eps, qk_norm=False, layer_scale=True)
            for _ in range(cfg.num_layers)
        )
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)

    @property
    def history(self) -> int:
        return self.cfg.sliding_window - 1

    def state_shapes(self):
        kv = (self.history, self.cfg.num_heads, self.cfg.head_dim)
        return [()] + [kv] * (2 * self.cfg.num_layers)  # frame counter, then K and V per layer

    def state_suffixes(self):
        return ["frames"] + [f"layers.{i}.{kind}" for i in range(self.cfg.num_layers) for kind in ("key", "value")]

    def forward(self, x, st):  # x [B, T, latent]
        b, t, _ = x.shape
        start = st.take().to(torch.int64)  # [B] frames already decoded
        st.put(start + t)
        offsets = torch.arange(t, device=x.device)
        q_pos = start[:, None] + offsets  # [B, T]
        hist_pos = start[:, None] - self.history + torch.arange(self.history, device=x.device)
        mask = attention_mask(q_pos, torch.cat([hist_pos, q_pos], dim=1), window=self.cfg.sliding_window)
        cos, sin = rope_tables(q_pos, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        h = self.input_proj(x)
        for layer in self.layers:
            k_hist, v_hist = st.take(), st.take()

            def update(k, v, k_hist=k_hist, v_hist=v_hist):
                k_all, v_all = torch.cat([k_hist, k], dim=1), torch.cat([v_hist, v], dim=1)
                st.put(k_all[:, -self.history:])
                st.put(v_all[:, -self.history:])
                return k_all, v_all

            h = layer(h, cos, sin, mask, update)
        return self.output_proj(self.norm(h))


class CodecDecoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        self.cfg = cfg
        self.quantizer = Dequantizer(cfg)
        self.pre_conv = CausalConv(cfg.codebook_dim, cfg.latent_dim, 3)
        self.pre_transformer = CodecTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalTransConv(cfg.latent_dim, cfg.latent_dim, r, r), ConvNeXtBlock(cfg.latent_dim)])
            for r in cfg.upsampling_ratios
        )
        dims = [cfg.decoder_dim // 2 ** i for i in range(len(cfg.upsample_rates) + 1)]
        self.decoder = nn.ModuleList(
            [CausalConv(cfg.latent_dim, cfg.decoder_dim, 7)]
            + [DecoderBlock(dims[i], dims[i + 1], r) for i, r in enumerate(cfg.upsample_rates)]
            + [SnakeBeta(dims[-1]), CausalConv(dims[-1], 1, 7)]
        )

    def state_layout(self) -> list[tuple[str, tuple]]:
        """(name, shape without batch) of every state tensor, in the order `stream_step` uses them.

        Registration order is visiting order, so walking the modules lists them correctly.
        """
        layout = []
        for path, m in self.named_modules():
            if isinstance(m, CodecTransformer):
                layout += [(f"state.{path}.{sfx}", shape) for sfx, shape in zip(m.state_suffixes(), m.state_shapes())]
            elif isinstance(m, (CausalConv, CausalTransConv)):
                layout += [(f"state.{path}", shape) for shape in m.state_shapes()]
        return layout

    def init_state(self, batch: int = 1, device=None, dtype=None) -> list[torch.Tensor]:
        p = self.pre_conv.conv.weight
        dtype, device = dtype or p.dtype, device or p.device
        return [torch.zeros((batch, *shape), dtype=torch.int64 if shape == () else dtype, device=device)
                for _, shape in self.state_layout()]

    def stream_step(self, codes: torch.Tensor, state: list[torch.Tensor]):
        """codes [B, Q, T] (0..codebook_size-1) + state -> (PCM [B, T*samples_per_frame], new state)."""
        st = StateCursor(state)
        h = self.pre_conv(self.quantizer(codes), st)
        h = self.pre_transformer(h.transpose(1, 2), st).transpose(1, 2)
        for up, block in self.upsample:
            h = block(up(h, st), st)
        h = self.decoder[0](h, st)
        for block in self.decoder[1:-2]:
            h = block(h, st)
        wav = self.decoder[-1](self.decoder[-2](h), st)
        return wav.clamp(-1.0, 1.0)[:, 0], st.out

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Whole-utterance decode: codes [B, Q, T] -> PCM [B, T*samples_per_frame]."""
        return self.stream_step(codes, self.init_state(codes.shape[0], codes.device))[0]
