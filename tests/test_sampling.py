"""The two forms of the codebook-0 rules agree: CodeSampler (torch, the oracle) and HostSampler
(numpy, the streaming loop), and the noise sampler respects its controls."""

from __future__ import annotations

import numpy as np
import torch

from qwen3_tts_trt.runtime.config import load_model_config
from qwen3_tts_trt.runtime.sampling import CodeSampler, HostSampler, SamplingParams, sample_with_noise


def test_greedy_picks_agree_including_penalty_eos_hold_and_suppression(tiny_custom_voice):
    ids = load_model_config(tiny_custom_voice).ids
    params = SamplingParams.greedy(max_new_tokens=400)
    oracle, host = CodeSampler(params, ids, 3072), HostSampler(params, ids, 3072)
    history = torch.zeros((1, 0), dtype=torch.long)
    gen = torch.Generator().manual_seed(0)
    picks = []
    for step in range(300):
        logits = torch.randn(1, 3072, generator=gen) * 3
        logits[0, 2048:] += 5.0  # control ids would win if they were not suppressed
        if step % 7 == 0:
            logits[0, ids.codec_eos] = 20.0  # EOS wins, except in the first two frames
        if step % 5 == 0 and picks:
            logits[0, picks[-1]] += 0.01  # a repeat that the penalty must turn down
        a = int(oracle.talker(logits, history, step))
        assert host.talker(logits[0].numpy(), step) == a, step
        picks.append(a)
        if a != ids.codec_eos:
            history = torch.cat([history, torch.tensor([[a]])], dim=1)
    assert ids.codec_eos in picks and picks[0] != ids.codec_eos and all(p < 2048 or p == ids.codec_eos for p in picks)


def test_host_sampler_draws_only_from_the_top_k(tiny_custom_voice):
    ids = load_model_config(tiny_custom_voice).ids
    sampler = HostSampler(SamplingParams(top_k=5, seed=3), ids, 3072)
    logits = np.zeros(3072, np.float32)
    logits[[10, 20, 30, 40, 50]] = 10.0
    assert {sampler.talker(logits, 5) for _ in range(200)} <= {10, 20, 30, 40, 50}


def test_noise_sampler_greedy_top_k_and_top_p():
    logits = torch.tensor([[0.0, 3.0, 2.9, 1.0, -1.0]])
    one = lambda x: torch.tensor([x])  # noqa: E731
    noise = torch.rand(1, 4, generator=torch.Generator().manual_seed(0))
    assert int(sample_with_noise(logits, noise, one(0.0), one(4), one(1.0))) == 1  # temperature 0: argmax
    draws = {int(sample_with_noise(logits, torch.rand(1, 4), one(1.0), one(2), one(1.0))) for _ in range(200)}
    assert draws == {1, 2}  # top-k 2
    draws = {int(sample_with_noise(logits, torch.rand(1, 4), one(1.0), one(4), one(0.3))) for _ in range(200)}
    assert draws == {1}  # top-p 0.3: only the best token's mass is needed
