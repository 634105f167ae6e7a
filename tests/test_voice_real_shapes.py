"""The voice encoders at the real 0.6B shapes (ECAPA 512x3 + 1536 channels, enc_dim 1024; Mimi
512 wide, 8 layers, 32 codebooks of 256): against the official code, and as ONNX graphs."""

from __future__ import annotations

import types

import pytest
import torch

from qwen3_tts_trt.export import onnx_graphs
from qwen3_tts_trt.export.op_support import check_model
from official import _install_torchaudio_standin
from qwen3_tts_trt.runtime.backends.onnx_backend import ort_session
from qwen3_tts_trt.runtime.checkpoint import load_voice_encoders
from qwen3_tts_trt.runtime.contract import VOICE_ENGINES, EngineLimits, engine_specs
from qwen3_tts_trt.runtime.voice import reference_audio
from support import synth_audio

pytestmark = [pytest.mark.slow, pytest.mark.official, pytest.mark.timeout(2400)]  # runs the official code (transformers 4.57)


def official_encoders(model_dir):
    """The official speaker encoder and speech tokenizer alone (the 0.6B talker is not needed):
    its own classes, weights and `extract_speaker_embedding` code, fp32 on the CPU."""
    _install_torchaudio_standin()
    from safetensors.torch import load_file

    from qwen_tts import Qwen3TTSTokenizer
    from qwen_tts.core.models.configuration_qwen3_tts import Qwen3TTSConfig
    from qwen_tts.core.models.modeling_qwen3_tts import Qwen3TTSForConditionalGeneration, Qwen3TTSSpeakerEncoder

    cfg = Qwen3TTSConfig.from_pretrained(str(model_dir))
    speaker = Qwen3TTSSpeakerEncoder(cfg.speaker_encoder_config)
    state = load_file(str(model_dir / "model.safetensors"))
    speaker.load_state_dict({k[len("speaker_encoder."):]: v.float() for k, v in state.items()
                             if k.startswith("speaker_encoder.")}, strict=True)
    holder = types.SimpleNamespace(speaker_encoder=speaker.eval(), device=torch.device("cpu"), dtype=torch.float32)

    def xvector(pcm):
        return Qwen3TTSForConditionalGeneration.extract_speaker_embedding(holder, pcm, 24000)

    tokenizer = Qwen3TTSTokenizer.from_pretrained(str(model_dir / "speech_tokenizer"), dtype=torch.float32,
                                                  device_map="cpu")
    return xvector, lambda pcm: tokenizer.encode(pcm, sr=24000).audio_codes[0]


def test_real_shapes_voice_encoders(real_base, tmp_path):
    nets = load_voice_encoders(real_base)
    assert nets.config.speaker_encoder.enc_dim == 1024 and nets.config.codec_encoder.num_layers == 8
    xvector, ref_codes = official_encoders(real_base)
    pcm = reference_audio(synth_audio(3.0, 16000, seed=7), 16000)
    with torch.inference_mode():
        ours_x = nets.speaker_encoder(torch.from_numpy(pcm)[None])[0]
        ours_c = nets.codec_encoder(torch.from_numpy(pcm)[None])[0].T
    assert (ours_x - xvector(pcm)).abs().max() <= 1e-4
    theirs_c = ref_codes(pcm)
    assert ours_c.shape == theirs_c.shape == (38, 16)
    assert torch.equal(ours_c, theirs_c)

    limits = EngineLimits()
    specs = engine_specs(nets.config, limits)
    modules = {"speaker_encoder": nets.speaker_encoder, "codec_encoder": nets.codec_encoder}
    for name in VOICE_ENGINES:
        path = onnx_graphs.export_engine(name, modules[name], specs[name], limits, tmp_path / f"{name}.onnx")
        assert check_model(path).problems == []
        got = torch.from_numpy(ort_session(path).run(None, {"pcm": pcm[None]})[0][0])
        if name == "speaker_encoder":
            assert (got - ours_x).abs().max() <= 1e-4
        else:
            assert torch.equal(got.T, ours_c)
