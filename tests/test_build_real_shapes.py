"""build.sh on the real 0.6B shapes: every graph, op check, ONNX Runtime parity, and the ONNX
graphs driving the loop to the reference codes."""

from __future__ import annotations

import pytest
import torch

from qwen3_tts_trt.export.op_support import check_model
from qwen3_tts_trt.runtime.backends import open_backend
from qwen3_tts_trt.runtime.contract import ENGINES
from qwen3_tts_trt.runtime.decode_loop import FrameLoop
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.voice import Voice
from support import REAL_LIMITS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # 0.6B shapes: minutes on 2 cores


def test_real_shapes_build_and_onnx_parity(real_custom_voice, real_build):
    out, manifest = real_build
    for name in ENGINES:
        entry = manifest["engines"][name]
        assert entry["op_problems"] == [] and check_model(out / entry["onnx"]).ok
        assert entry["parity_max_abs"] <= 1e-4, (name, entry["parity_max_abs"])
    assert (out / "talker_decode.onnx.data").stat().st_size > 1.7e9  # 28 layers x 1024, fp32

    ref = Reference.load(real_custom_voice, max_context=REAL_LIMITS.max_context)
    prompt = ref.prompt("Hello world, this is a streaming test of the voice runtime.",
                        Voice(speaker="ryan", language="english"))
    params = SamplingParams.greedy(max_new_tokens=42)
    oracle = ref.generator.generate(prompt, params).codes
    del ref
    codes = FrameLoop(open_backend("onnx", real_custom_voice, out)).generate(prompt, params)
    assert codes.shape[0] >= 40 and torch.equal(codes, oracle)
