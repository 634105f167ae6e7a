"""The Base checkpoints' speaker encoder: 24 kHz PCM -> x-vector, log-mel front end included.

Written for export: the STFT is a two-stage DFT of MatMuls (STFT is not a TensorRT
op), every "same" reflect padding is an explicit Pad, and the
only dynamic axis is the audio length. The numbers match the official `mel_spectrogram` +
`Qwen3TTSSpeakerEncoder` (n_fft 1024, hop 256, Hann window, 128 slaney mels up to 12 kHz,
reflect padding of 384 samples, log(clamp(., 1e-5)) of sqrt(re^2 + im^2 + 1e-9)).
Parameter names mirror `speaker_encoder.` in the official model.safetensors.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import SpeakerEncoderConfig

N_FFT, HOP, F_MAX = 1024, 256, 12000.0
RADIX = 32  # N_FFT = RADIX * RADIX
POWER_FLOOR = 1e-9  # added to |X|^2 before the square root (official mel_spectrogram)


def _hz_to_mel_slaney(hz: np.ndarray) -> np.ndarray:
    """Slaney's auditory mel scale: linear below 1 kHz, logarithmic above (as librosa, htk=False)."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def _mel_to_hz_slaney(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def slaney_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] triangular filters, area-normalised ("slaney" norm)."""
    fft_freqs = np.linspace(0, sample_rate / 2, 1 + n_fft // 2)
    mel_pts = np.linspace(_hz_to_mel_slaney(f_min), _hz_to_mel_slaney(f_max), n_mels + 2)
    hz_pts = _mel_to_hz_slaney(mel_pts)
    widths = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]
    return weights.astype(np.float32)


class LogMel(nn.Module):
    """PCM [B, N] -> log-mel [B, mels, frames], frames = N // 256 + 1 (N >= 385).

    The 1024-point DFT of each frame is done in two radix-32 stages (Cooley-Tukey as two small
    MatMuls and a twiddle product), not as one 1024-term sum. In fp32 a direct sum rounds ~10x
    worse than an FFT, and the log of near-empty bands (everything above 8 kHz in audio recorded
    at 16 kHz) turns that into x-vector differences of 1e-4; the two-stage sum stays at FFT-like
    error (the official front end uses torch.stft), on every backend.
    """

    def __init__(self, sample_rate: int, n_mels: int):
        super().__init__()
        r = RADIX
        n = np.arange(N_FFT)
        self.register_buffer("window", torch.from_numpy((0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)).astype(np.float32)),
                             persistent=False)  # periodic Hann, as torch.hann_window
        k, m = np.meshgrid(np.arange(r), np.arange(r), indexing="ij")
        stage = -2 * np.pi * k * m / r  # exp(-2 pi i k m / 32), symmetric in k and m
        twiddle = -2 * np.pi * k * m / N_FFT  # [k1, n2]: exp(-2 pi i n2 k1 / 1024)
        for name, value in (("stage_cos", np.cos(stage)), ("stage_sin", np.sin(stage)),
                            ("twiddle_cos", np.cos(twiddle)), ("twiddle_sin", np.sin(twiddle))):
            self.register_buffer(name, torch.from_numpy(value.astype(np.float32)), persistent=False)
        mel = slaney_mel_filterbank(sample_rate, N_FFT, n_mels, 0.0, F_MAX)
        self.register_buffer("mel_basis", torch.from_numpy(mel), persistent=False)

    def spectrum(self, pcm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary STFT [B, frames, 513] (center=False after 384 samples of reflect padding)."""
        pad = (N_FFT - HOP) // 2
        x = F.pad(pcm[:, None], (pad, pad), mode="reflect")[:, 0]  # [B, L]
        # Frames as four hop-sized blocks side by side: Slice/Reshape/Concat, exported everywhere.
        frames = (x.shape[1] - N_FFT) // HOP + 1
        per = N_FFT // HOP
        blocks = F.pad(x, (0, HOP - 1))[:, :(frames + per - 1) * HOP].reshape(x.shape[0], frames + per - 1, HOP)
        windows = torch.cat([blocks[:, i:i + frames] for i in range(per)], dim=2) * self.window
        r = RADIX
        x = windows.reshape(x.shape[0], frames, r, r)  # [B, F, n1, n2], n = 32 n1 + n2
        yr, yi = torch.matmul(self.stage_cos, x), torch.matmul(self.stage_sin, x)  # [B, F, k1, n2]
        zr = yr * self.twiddle_cos - yi * self.twiddle_sin
        zi = yr * self.twiddle_sin + yi * self.twiddle_cos
        xr = torch.matmul(zr, self.stage_cos) - torch.matmul(zi, self.stage_sin)  # [B, F, k1, k2]
        xi = torch.matmul(zr, self.stage_sin) + torch.matmul(zi, self.stage_cos)
        bins = N_FFT // 2 + 1  # bin k = k1 + 32 k2: k2-major order, then the one-sided half

        def order(t):
            return t.transpose(2, 3).reshape(t.shape[0], frames, N_FFT)[:, :, :bins]

        return order(xr), order(xi)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        re, im = self.spectrum(pcm)
        # sqrt(re^2 + im^2 + 1e-9), computed at a scale of 2^15 (exact: powers of two commute with
        # rounding): the ONNX exporter's optimizer drops an `Add` of 1e-9 as if it were 0, which
        # would turn the official floor of sqrt(1e-9) in every empty bin into 0.
        s = float(2 ** 15)
        mag = (torch.sqrt((re * s).pow(2) + (im * s).pow(2) + POWER_FLOOR * s * s) / s).transpose(1, 2)
        return torch.log(torch.clamp(torch.matmul(self.mel_basis, mag), min=1e-5))


class TimeDelay(nn.Module):
    """Conv1d with "same" reflect padding, then ReLU (the official TimeDelayNetBlock)."""

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, dilation=dilation)
        self.pad = (kernel - 1) * dilation // 2  # odd kernels only: symmetric

    def forward(self, x):
        if self.pad:
            x = F.pad(x, (self.pad, self.pad), mode="reflect")
        return F.relu(self.conv(x))


class Res2Net(nn.Module):
    def __init__(self, channels: int, scale: int, kernel: int, dilation: int):
        super().__init__()
        width = channels // scale
        self.scale = scale
        self.blocks = nn.ModuleList(TimeDelay(width, width, kernel, dilation) for _ in range(scale - 1))

    def forward(self, x):
        parts = torch.chunk(x, self.scale, dim=1)
        out, prev = [parts[0]], None
        for i, block in enumerate(self.blocks, start=1):
            prev = block(parts[i] if prev is None else parts[i] + prev)
            out.append(prev)
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = nn.Conv1d(channels, se_channels, 1)
        self.conv2 = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x):
        s = torch.sigmoid(self.conv2(F.relu(self.conv1(x.mean(dim=2, keepdim=True)))))
        return x * s


class SERes2NetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, scale: int, se_channels: int, kernel: int, dilation: int):
        super().__init__()
        self.tdnn1 = TimeDelay(cin, cout, 1, 1)
        self.res2net_block = Res2Net(cout, scale, kernel, dilation)
        self.tdnn2 = TimeDelay(cout, cout, 1, 1)
        self.se_block = SqueezeExcite(cout, se_channels)

    def forward(self, x):
        return x + self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))))


def _mean_std(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12):
    mean = (weights * x).sum(dim=2)
    std = torch.sqrt((weights * (x - mean[:, :, None]).pow(2)).sum(dim=2).clamp(eps))
    return mean, std


class AttentiveStatsPool(nn.Module):
    """Channel-wise attention over time, then the attention-weighted mean and std."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TimeDelay(channels * 3, attention_channels, 1, 1)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x):
        frames = x.shape[2]
        uniform = torch.ones_like(x[:, :1]) / frames  # no padding: every frame counts
        mean, std = _mean_std(x, uniform)
        context = torch.cat([x, mean[:, :, None].expand_as(x), std[:, :, None].expand_as(x)], dim=1)
        attn = F.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)
        mean, std = _mean_std(x, attn)
        return torch.cat([mean, std], dim=1)[:, :, None]


class SpeakerEncoder(nn.Module):
    """PCM [B, N] at 24 kHz -> x-vector [B, enc_dim] (the official ECAPA-TDNN on its log-mel)."""

    def __init__(self, cfg: SpeakerEncoderConfig):
        super().__init__()
        self.cfg = cfg
        ch, ks, dil = cfg.channels, cfg.kernel_sizes, cfg.dilations
        self.mel = LogMel(cfg.sample_rate, cfg.mel_dim)
        self.blocks = nn.ModuleList([TimeDelay(cfg.mel_dim, ch[0], ks[0], dil[0])])
        for i in range(1, len(ch) - 1):
            self.blocks.append(SERes2NetBlock(ch[i - 1], ch[i], cfg.res2net_scale, cfg.se_channels, ks[i], dil[i]))
        self.mfa = TimeDelay(sum(ch[1:-1]), ch[-1], ks[-1], dil[-1])
        self.asp = AttentiveStatsPool(ch[-1], cfg.attention_channels)
        self.fc = nn.Conv1d(ch[-1] * 2, cfg.enc_dim, 1)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = self.mel(pcm)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        x = self.mfa(torch.cat(outs[1:], dim=1))
        return self.fc(self.asp(x))[:, :, 0]

    @staticmethod
    def min_samples() -> int:
        """Shortest input the reflect padding accepts (it needs more samples than it pads)."""
        return (N_FFT - HOP) // 2 + 1
