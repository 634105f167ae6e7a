"""Voices from a recording: reference audio checks, .voice files, the encoders on every backend.

The test audio is synthesized (tests/support.py: tones with vibrato in noise), never downloaded.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from qwen3_tts_trt.runtime.errors import VoiceError
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.voice import Voice, VoiceMaker, VoiceOrigin, reference_audio
from support import REF_TEXT, synth_audio, write_wav


# -- reference audio: every bad input has its one clear error ------------------------------------
def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("these are notes, not audio\n" * 20)
    aiff = write_wav(tmp_path / "ref.aiff", format="AIFF")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(write_wav(tmp_path / "whole.wav").read_bytes()[:30])
    return {
        "missing file": ((tmp_path / "nope.wav",), "not found"),
        "empty file": ((empty,), "empty file"),
        "not audio": ((text,), "cannot read"),
        "truncated header": ((truncated,), "cannot read"),
        "unsupported format": ((aiff,), "not supported"),
        "too short": ((write_wav(tmp_path / "short.wav", seconds=0.5),), "at least 1 s"),
        "too long": ((write_wav(tmp_path / "long.wav", seconds=31, rate=8000),), "at most 30 s"),
        "digital silence": ((np.zeros(48000, np.float32), 24000), "digital silence"),
        "pcm16 silence": ((np.zeros(48000, np.int16), 24000), "digital silence"),
        "not finite": ((np.full(48000, np.nan, np.float32), 24000), "NaN"),
        "rate too low": ((synth_audio(2, 4000), 4000), "sample rate of 4000"),
        "rate too high": ((synth_audio(1.5, 200000), 200000), "sample rate of 200000"),
        "too many channels": ((np.tile(synth_audio(2)[:, None], (1, 10)), 24000), "10 channels"),
        "int32 samples": (((synth_audio(2) * 1e6).astype(np.int32), 24000), "float or int16"),
        "3-D array": ((np.zeros((2, 2, 24000), np.float32), 24000), "shape"),
        "array without rate": ((synth_audio(2), None), "needs its sample_rate"),
    }


CASES = ["missing file", "empty file", "not audio", "truncated header", "unsupported format", "too short", "too long",
         "digital silence", "pcm16 silence", "not finite", "rate too low", "rate too high", "too many channels",
         "int32 samples", "3-D array", "array without rate"]


@pytest.mark.parametrize("case", CASES)
def test_bad_reference_audio_is_a_clear_error(case, tmp_path):
    args, expected = _bad_inputs(tmp_path)[case]
    with pytest.raises(VoiceError, match=expected) as err:
        reference_audio(*args)
    assert "\n" not in str(err.value)


@pytest.mark.slow  # ~30-45 s: CI's slow step keeps the default run under 20 minutes
def test_file_reading_matches_the_official_loading(tmp_path):
    """Stereo 44.1 kHz file -> mono (mean) -> 24 kHz: the samples the official code gets from
    librosa.load(sr=None, mono=True) and librosa.resample (soxr_hq)."""
    librosa = pytest.importorskip("librosa")
    path = write_wav(tmp_path / "stereo.flac", seconds=2.3, rate=44100, channels=2, subtype="PCM_24", format="FLAC")
    ours = reference_audio(path)
    audio, sr = librosa.load(str(path), sr=None, mono=True)
    theirs = librosa.resample(y=audio.astype(np.float32), orig_sr=sr, target_sr=24000)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


def test_arrays_in_any_layout_and_pcm16(tmp_path):
    stereo = synth_audio(1.7, 16000, channels=2)
    as_file = reference_audio(write_wav(tmp_path / "s.wav", 1.7, 16000, channels=2, subtype="FLOAT"))
    assert np.array_equal(reference_audio(stereo, 16000), as_file)
    assert np.array_equal(reference_audio(stereo.T, 16000), as_file)  # [channels, samples]
    assert np.array_equal(reference_audio(torch.from_numpy(stereo), 16000), as_file)
    pcm16 = np.round(synth_audio(2.0) * 32767).astype(np.int16)
    assert np.array_equal(reference_audio(pcm16, 24000), pcm16.astype(np.float32) / 32768)


# -- voices and .voice files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def maker(tiny_base):
    return VoiceMaker.open(tiny_base, backend="torch")


def test_voice_file_round_trip(maker, tiny_base, tmp_path):
    ref = write_wav(tmp_path / "ref.wav", seconds=3.2, rate=48000)
    voice = maker.make(ref, REF_TEXT, language="english")
    assert voice.xvector.shape == (64,) and voice.ref_codes.shape == (40, 16)  # ceil(3.2 s * 12.5)
    assert len(set(voice.ref_codes[:, 5].tolist())) > 5  # the codes follow the audio
    path = voice.save(tmp_path / "me.voice")
    loaded = Voice.load(path, model=tiny_base)
    assert torch.equal(loaded.xvector, voice.xvector) and torch.equal(loaded.ref_codes, voice.ref_codes)
    assert (loaded.ref_text, loaded.language, loaded.made_for) == (REF_TEXT, "english", voice.made_for)
    assert loaded.made_for.config_hash == Reference.load(tiny_base).config.config_hash

    only = maker.make(ref, x_vector_only=True)
    assert only.ref_codes is None and only.ref_text is None
    loaded = Voice.load(only.save(tmp_path / "x.voice"))
    assert loaded.ref_codes is None and torch.equal(loaded.xvector, voice.xvector)


def test_icl_needs_the_transcript(maker, tmp_path):
    with pytest.raises(VoiceError, match="ref_text"):
        maker.make(write_wav(tmp_path / "ref.wav"), None)


def test_voice_for_another_model_is_refused(maker, tiny_base, tiny_custom_voice, tmp_path):
    voice = maker.make(write_wav(tmp_path / "ref.wav"), REF_TEXT)
    bigger = dataclasses.replace(voice, made_for=VoiceOrigin(model="Qwen3-TTS-12Hz-0.6B-Base", variant="base",
                                                             size="0b6", config_hash="0123456789abcdef",
                                                             hidden_size=1024))
    path = bigger.save(tmp_path / "big.voice")
    with pytest.raises(VoiceError, match=r"made for Qwen3-TTS-12Hz-0.6B-Base .* 0b6 model .*this one is tiny"):
        Voice.load(path, model=tiny_base)
    with pytest.raises(VoiceError, match="cloned voices need a Base checkpoint"):
        Voice.load(path, model=tiny_custom_voice)
    ref = Reference.load(tiny_base, max_context=256)
    with pytest.raises(VoiceError, match="cannot be used with this model"):  # used without Voice.load's check
        ref.prompt("Hello there.", Voice.load(path))
    ref.prompt("Hello there.", voice)  # its own model takes it


def test_not_a_voice_file(tmp_path, maker):
    junk = tmp_path / "junk.voice"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(VoiceError, match="not a voice file"):
        Voice.load(junk)
    from safetensors.torch import save_file

    other = tmp_path / "weights.voice"
    save_file({"xvector": torch.zeros(4)}, str(other))
    with pytest.raises(VoiceError, match="not a qwen3-tts-trt voice file"):
        Voice.load(other)
    with pytest.raises(VoiceError, match="not found"):
        Voice.load(tmp_path / "absent.voice")


def test_failed_save_keeps_the_existing_file(maker, tmp_path):
    voice = maker.make(write_wav(tmp_path / "ref.wav"), REF_TEXT)
    path = voice.save(tmp_path / "keep.voice")
    before = path.read_bytes()
    with pytest.raises(VoiceError, match="only a cloned voice"):
        Voice(speaker="ryan").save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.voice", "ref.wav"]  # no temp file left


# -- the encoders as graphs -----------------------------------------------------------------------
def test_encoder_graphs_match_the_modules(tiny_base, tiny_base_build, tmp_path):
    """ONNX Runtime vs PyTorch on the built graphs (x-vector <= 1e-4, codes identical), at three
    lengths and two rates; the build checked ops against TensorRT's table and recorded parity."""
    build_dir, manifest = tiny_base_build
    for name in ("speaker_encoder", "codec_encoder"):
        entry = manifest["engines"][name]
        assert entry["op_problems"] == [] and entry["parity_max_abs"] <= (1e-4 if name == "speaker_encoder" else 0)
        assert manifest["contract"][name]["inputs"][0]["shape"] == ["B", "N"]
    onnx = VoiceMaker.open(tiny_base, build_dir, backend="onnx")
    torch_ = VoiceMaker.open(tiny_base, backend="torch")
    assert onnx.encoders.name == "onnx"
    for seconds, rate, seed in ((1.0, 24000, 1), (4.7, 16000, 2), (12.3, 24000, 3)):
        audio = synth_audio(seconds, rate, seed=seed)
        a = torch_.make(audio, REF_TEXT, sample_rate=rate)
        b = onnx.make(audio, REF_TEXT, sample_rate=rate)
        assert (a.xvector - b.xvector).abs().max() <= 1e-4
        pcm = torch.from_numpy(reference_audio(audio, rate))
        assert_codes_match(a.ref_codes, b.ref_codes, torch_.encoders.modules["codec_encoder"], pcm)
        assert a.ref_codes.shape[0] == -(-len(pcm) // 1920)


def assert_codes_match(ours, other, encoder, pcm, near=1e-5, share=0.02):
    """Identical codes, except in frames where the residual lies within `near` of two codewords:
    there a kernel that rounds differently (by ~5e-7, as close to fp64 as PyTorch) may pick either.
    `near` is relative to the larger of the distance and the residual quantizer's input: rounding
    errors carry through each codebook's subtraction at the input's scale, while the last
    codebooks' distances are far smaller (a codebook-15 tie at distances of 0.0056 differed by
    3.4e-7). Each differing frame is checked to be such a tie, and they must be rare."""
    assert ours.shape == other.shape
    frames = (ours != other).any(dim=1).nonzero()[:, 0].tolist()
    assert len(frames) <= max(1, share * ours.shape[0]), f"codes differ in frames {frames}"
    if not frames:
        return
    q = encoder.quantizer
    with torch.no_grad():
        x = encoder.encoder(pcm[None, None])
        x = encoder.downsample(encoder.encoder_transformer(x.transpose(1, 2).contiguous()).transpose(1, 2))
        for f in frames:
            k = int((ours[f] != other[f]).nonzero()[0])  # the first codebook that differs decides
            rvq, before = (q.semantic_residual_vector_quantizer, []) if k == 0 else \
                (q.acoustic_residual_vector_quantizer, list(range(1, k)))
            residual = rvq.input_proj(x)[0, :, f]
            scale = residual.norm()
            for j, book in enumerate(before):
                residual = residual - rvq.layers[j].codebook.table()[ours[f, book]]
            table = rvq.layers[len(before)].codebook.table()
            d = (table[torch.stack([ours[f, k], other[f, k]])] - residual).norm(dim=1)
            assert (d[1] - d[0]).abs() <= near * max(d[0], scale), \
                f"frame {f}, codebook {k}: not a near-tie (distances {d.tolist()}, input norm {float(scale):.4g})"


def test_voice_encoders_need_a_base_build(tiny_build, tiny_custom_voice):
    from qwen3_tts_trt.runtime.errors import CheckpointError, EngineMismatchError

    build_dir, _ = tiny_build
    with pytest.raises(EngineMismatchError, match="no speaker_encoder or codec_encoder graph"):
        VoiceMaker.open(tiny_custom_voice, build_dir, backend="onnx")
    with pytest.raises(CheckpointError, match="cloned with a Base checkpoint"):
        VoiceMaker.open(tiny_custom_voice, backend="torch")


def test_manifest_records_the_voice_graphs(tiny_base_build):
    _, manifest = tiny_base_build
    assert json.dumps(manifest["limits"]).count("ref_seconds") == 2


def test_voice_library_encodes_a_recording_once(tiny_base, tmp_path, maker):
    from qwen3_tts_trt.runtime.voice import VoiceLibrary

    library = VoiceLibrary(tiny_base, backend="torch")
    wav = write_wav(tmp_path / "bob.wav", seed=4)
    first = library.get((wav, REF_TEXT))
    assert library.get((str(wav), REF_TEXT)) is first  # cached: not encoded again
    assert library.get({"audio": wav, "x_vector_only": True}).ref_codes is None
    saved = first.save(tmp_path / "bob.voice")
    assert library.get(saved) is library.get(str(saved))
    assert torch.equal(library.get(saved).ref_codes, first.ref_codes)
    write_wav(wav, seconds=2.0, seed=9)  # a new recording under the same name is encoded afresh
    assert library.get((wav, REF_TEXT)).ref_codes.shape[0] == 25
    with pytest.raises(VoiceError, match="unknown voice settings"):
        library.get({"audio": wav, "speed": 2})
    with pytest.raises(VoiceError, match="voice not found"):
        library.get(tmp_path / "absent.voice")
