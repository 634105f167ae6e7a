"""Voice cloning from a recording against the official qwen-tts 0.1.1, on the same random Base
checkpoint and the same synthesized audio (fp32, CPU): the x-vector and the reference codes, then
`generate_voice_clone`'s greedy codes and final audio in both modes and both text layouts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from official import load_official
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.voice import VoiceMaker
from support import MAX_NEW, REF_TEXT, TEXT, synth_audio, write_wav

# (how the reference is given, seconds, sample rate, channels)
REFERENCES = {
    "wav_44k_stereo_3s": ("file", 3.0, 44100, 2),
    "array_16k_10s": ("array", 10.0, 16000, 1),
    "array_24k_1s": ("array", 1.0, 24000, 1),
    "flac_48k_12s": ("file", 12.5, 48000, 1),  # past the 10 s (250-frame) mark of Mimi's sliding window
}


def _reference(kind, seconds, rate, channels, tmp_path, seed=3):
    if kind == "file":
        suffix = ".flac" if rate == 48000 else ".wav"
        path = write_wav(tmp_path / f"ref{suffix}", seconds, rate, channels, seed=seed)
        return dict(ours=(str(path),), theirs=str(path))
    audio = synth_audio(seconds, rate, channels, seed=seed)
    return dict(ours=(audio, rate), theirs=(audio, rate))


@pytest.fixture(scope="module")
def maker(tiny_base):
    return VoiceMaker.open(tiny_base, backend="torch")


@pytest.fixture(scope="module")
def synth(tiny_base, tiny_base_build):
    """The streaming synthesizer over the built ONNX graphs (greedy codes equal the reference loop's)."""
    return Synthesizer.open(tiny_base, tiny_base_build[0], "onnx")


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_xvector_and_reference_codes_match_official(name, tiny_base, maker, tmp_path):
    ref = _reference(*REFERENCES[name], tmp_path)
    item = load_official(str(tiny_base)).create_voice_clone_prompt(ref["theirs"], REF_TEXT)[0]
    audio, *rate = ref["ours"]
    voice = maker.make(audio, REF_TEXT, sample_rate=rate[0] if rate else None)
    assert (voice.xvector - item.ref_spk_embedding).abs().max() <= 1e-4
    assert voice.ref_codes.shape == item.ref_code.shape
    assert torch.equal(voice.ref_codes, item.ref_code), "reference codes differ from the official encoder"


class OfficialClone:
    """generate_voice_clone, recording the talker codes its model.generate returns."""

    def __init__(self, model_dir):
        self.wrapper = load_official(str(model_dir))

    def run(self, prompt_items, non_streaming: bool):
        model, seen = self.wrapper.model, {}
        original = model.generate

        def recording(*args, **kwargs):
            codes, hidden = original(*args, **kwargs)
            seen["codes"] = codes[0].clone()
            return codes, hidden

        model.generate = recording
        try:
            wavs, sr = self.wrapper.generate_voice_clone(
                TEXT, language="english", voice_clone_prompt=prompt_items, non_streaming_mode=non_streaming,
                do_sample=False, subtalker_dosample=False, max_new_tokens=MAX_NEW)
        finally:
            del model.generate  # back to the class's method
        assert sr == 24000
        return seen["codes"], torch.as_tensor(wavs[0])


# The non-streaming layout in CI's slow step (same code path, other prompt layout): the default run
# stays under its 20 minutes.
@pytest.mark.parametrize("non_streaming", [False, pytest.param(True, marks=pytest.mark.slow)],
                         ids=["streaming_text", "non_streaming_text"])
@pytest.mark.parametrize("x_vector_only", [True, False], ids=["x_vector_only", "icl"])
def test_generate_voice_clone_parity(x_vector_only, non_streaming, tiny_base, maker, synth, tmp_path):
    """Same recording in, same greedy codes (>= 40 frames) and the same final audio out (<= 1e-4).
    Our audio is streamed: for ICL the codec is primed with the reference frames (no audio for
    them), which equals the official whole decode of reference + generated frames, cut."""
    path = write_wav(tmp_path / "ref.wav", 4.0, 22050, seed=5)
    official = OfficialClone(tiny_base)
    items = official.wrapper.create_voice_clone_prompt(str(path), REF_TEXT, x_vector_only_mode=x_vector_only)
    off_codes, off_audio = official.run(items, non_streaming)

    voice = maker.make(path, REF_TEXT, x_vector_only=x_vector_only, language="english")
    voice = dataclasses.replace(voice, non_streaming_text=non_streaming)
    chunks = list(synth.stream(TEXT, voice, synth.greedy_params(max_new_tokens=MAX_NEW)))
    codes = torch.cat([c.codes for c in chunks])
    audio = torch.from_numpy(np.concatenate([c.samples for c in chunks]))
    assert codes.shape[0] >= 40
    assert torch.equal(codes, off_codes), "greedy codes differ from the official generate_voice_clone"
    assert audio.shape[0] == codes.shape[0] * 1920
    # The official cut int(ref/total * samples) keeps one reference sample for some lengths.
    extra = off_audio.shape[0] - audio.shape[0]
    assert extra in (0, 1) and (extra == 0 or not x_vector_only)
    assert (audio - off_audio[extra:]).abs().max() <= 1e-4
    assert audio.pow(2).mean().sqrt() > 0.01
