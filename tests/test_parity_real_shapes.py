"""The real 0.6B shapes (bf16 storage, fp32 compute) pass the same parity checks for one mode."""

from __future__ import annotations

import pytest
import torch

from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.voice import Voice
from support import MAX_NEW, TEXT, OfficialRun

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # 0.6B shapes: minutes on 2 cores


def test_real_shapes_greedy_and_audio_parity(real_custom_voice):
    ref = Reference.load(real_custom_voice, max_context=512)
    assert ref.config.talker.num_layers == 28 and ref.config.talker.hidden_size == 1024
    official = OfficialRun(real_custom_voice)
    off_codes, seen = official.generate(TEXT, language="english", speaker="ryan")
    prompt = ref.prompt(TEXT, Voice(speaker="ryan", language="english"))
    torch.testing.assert_close(prompt.embeds, seen["embeds"], atol=1e-5, rtol=0)
    result = ref.generator.generate(prompt, SamplingParams.greedy(max_new_tokens=MAX_NEW))
    assert (result.prefill_logits - seen["logits"]).abs().max() <= 1e-4
    assert (result.prefill_hidden - seen["hidden"]).abs().max() <= 1e-4
    assert result.codes.shape[0] >= 40
    assert torch.equal(result.codes, off_codes)
    del official.model.talker  # free ~3.7 GB before the codec runs
    ours, theirs = ref.decode(result.codes), official.decode(result.codes)
    assert ours.shape == theirs.shape == (result.codes.shape[0] * 1920,)
    assert (ours - theirs).abs().max() <= 1e-4
