"""Bad input gets a clear error naming the problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from qwen3_tts_trt.runtime.checkpoint import load_networks, resolve_checkpoint
from qwen3_tts_trt.runtime.config import load_model_config
from qwen3_tts_trt.runtime.errors import CheckpointError, PromptError
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.voice import Voice


@pytest.fixture()
def ckpt_copy(tiny_custom_voice, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(tiny_custom_voice, dst)
    return dst


@pytest.fixture(scope="module")
def ref(tiny_custom_voice):
    return Reference.load(tiny_custom_voice, max_context=256)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        resolve_checkpoint(tmp_path / "nope")


def test_unreachable_hub_id_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="could not be fetched"):
        resolve_checkpoint("no-such-org/no-such-model-xyz")


@pytest.mark.parametrize("name", ["config.json", "speech_tokenizer/config.json", "model.safetensors",
                                  "speech_tokenizer/model.safetensors"])
def test_missing_file(ckpt_copy, name):
    (ckpt_copy / name).unlink()
    with pytest.raises(CheckpointError, match="missing file"):
        load_networks(ckpt_copy)


def test_corrupt_safetensors(ckpt_copy):
    path = ckpt_copy / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="model.safetensors is damaged \\(truncated"):
        load_networks(ckpt_copy)


def test_garbage_safetensors_header(ckpt_copy):
    (ckpt_copy / "speech_tokenizer" / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    with pytest.raises(CheckpointError, match="model.safetensors is damaged"):
        load_networks(ckpt_copy)


def test_wrong_model_type(ckpt_copy):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg["model_type"] = "qwen2"
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="model_type='qwen2'"):
        load_model_config(ckpt_copy)


def test_unsupported_variant(ckpt_copy):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg["tts_model_type"] = "music"
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unsupported tts_model_type"):
        load_model_config(ckpt_copy)


def test_invalid_json(ckpt_copy):
    (ckpt_copy / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model_config(ckpt_copy)


def test_weight_names_mismatch_lists_missing_and_unexpected(ckpt_copy):
    from safetensors.torch import load_file, save_file

    path = ckpt_copy / "model.safetensors"
    state = load_file(str(path))
    state["talker.extra_layer.weight"] = state.pop("talker.model.layers.1.mlp.up_proj.weight")
    save_file(state, str(path))
    with pytest.raises(CheckpointError) as err:
        load_networks(ckpt_copy)
    msg = str(err.value)
    assert "missing 1: talker.model.layers.1.mlp.up_proj.weight" in msg
    assert "talker.extra_layer.weight" in msg


def test_weight_shape_mismatch(ckpt_copy):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg["talker_config"]["intermediate_size"] += 8
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_networks(ckpt_copy)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text(ref, text):
    with pytest.raises(PromptError, match="empty"):
        ref.prompt(text, Voice(speaker="ryan"))


def test_unknown_speaker(ref):
    with pytest.raises(PromptError, match="unknown speaker 'nobody'.*ryan"):
        ref.prompt("Hi there.", Voice(speaker="nobody"))


def test_speaker_lookup_is_case_insensitive(ref):
    assert torch.equal(ref.prompt("Hi.", Voice(speaker="Ryan")).embeds, ref.prompt("Hi.", Voice(speaker="ryan")).embeds)


@pytest.mark.parametrize("language", ["klingon", "sichuan_dialect"])
def test_unknown_language(ref, language):
    with pytest.raises(PromptError, match="unknown language.*english"):
        ref.prompt("Hi there.", Voice(speaker="ryan", language=language))


def test_custom_voice_needs_a_speaker(ref):
    with pytest.raises(PromptError, match="need a speaker"):
        ref.prompt("Hi there.", Voice())


def test_clone_needs_base(ref):
    with pytest.raises(PromptError, match="needs a Base checkpoint"):
        ref.prompt("Hi there.", Voice(speaker="ryan", xvector=torch.zeros(64)))


def test_base_checks_clone_prompt(tiny_base):
    base = Reference.load(tiny_base, max_context=256)
    with pytest.raises(PromptError, match="x-vector"):
        base.prompt("Hi.", Voice())
    with pytest.raises(PromptError, match="x-vector has 3 values"):
        base.prompt("Hi.", Voice(xvector=torch.zeros(3)))
    with pytest.raises(PromptError, match="ref_text"):
        base.prompt("Hi.", Voice(xvector=torch.zeros(64), ref_codes=torch.zeros(4, 16, dtype=torch.long)))
    with pytest.raises(PromptError, match="shape"):
        base.prompt("Hi.", Voice(xvector=torch.zeros(64), ref_codes=torch.zeros(4, 8, dtype=torch.long), ref_text="x"))
    with pytest.raises(PromptError, match="0..2047"):
        base.prompt("Hi.", Voice(xvector=torch.zeros(64), ref_codes=torch.full((4, 16), 2150), ref_text="x"))


def test_text_longer_than_context(ref):
    with pytest.raises(PromptError, match="context holds 256"):
        ref.generate("word " * 400, Voice(speaker="ryan"))
