"""Issue 25, item 2: a checkpoint with a missing or damaged file is one clear error naming the file,
found when the checkpoint is opened (runtime/checkpoint.py: check_checkpoint_files, run by
resolve_checkpoint), before any model loads and before a build's weights identity is compared.

Each front end is driven the way a user drives it: the CLI in a subprocess (exit status 2, one
stderr line), the API (`CheckpointError`), a real Pipecat pipeline (an ErrorFrame), a server
replica's constructor path (`StreamPool.load`; Ray is not started here) and build.sh."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3_tts_trt.runtime.backends import open_backend
from qwen3_tts_trt.runtime.checkpoint import check_checkpoint_files, resolve_checkpoint
from qwen3_tts_trt.runtime.errors import CheckpointError
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.stream_pool import StreamPool
from qwen3_tts_trt.runtime.voice import VoiceMaker
from support import ROOT, cli, one_error_line

TOKENIZER_FILES = ["vocab.json", "merges.txt", "tokenizer_config.json"]
WEIGHTS = ["model.safetensors", "speech_tokenizer/model.safetensors"]


# -- damage -----------------------------------------------------------------------------------------
def cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def same_size_garbage(path: Path) -> None:
    path.write_bytes(b"\x07" * path.stat().st_size)


def one_byte_more(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0")


def cut_inside_the_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def empty(path: Path) -> None:
    path.write_bytes(b"")


# What each case does to the checkpoint and what the error must say (the file, and what is wrong).
CASES = {
    **{f"missing {name}": (name, Path.unlink, f"is missing file {name}") for name in TOKENIZER_FILES},
    **{f"truncated {name}": (name, cut_in_half, f"{name} is damaged (truncated: header says") for name in WEIGHTS},
}


def damaged_copy(src: Path, tmp_path: Path, case: str) -> Path:
    """A copy of checkpoint `src`, under its own folder name, with `case` done to it."""
    rel, damage, _ = CASES[case]
    dst = tmp_path / "checkpoints" / src.name
    shutil.copytree(src, dst)
    damage(dst / rel)
    return dst


def expected(case: str) -> str:
    return CASES[case][2]


def assert_names_the_file(message: str, case: str) -> None:
    assert expected(case) in message, message
    assert "other weights" not in message and "download or copy the checkpoint again" in message, message


# -- the check itself ---------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["tiny_custom_voice", "tiny_base", "tiny_voice_design"])
def test_good_checkpoints_pass(request, fixture):
    root = request.getfixturevalue(fixture)
    check_checkpoint_files(root)
    assert resolve_checkpoint(root) == root


@pytest.mark.parametrize("rel, damage, why", [
    ("model.safetensors", same_size_garbage, "not a safetensors file"),
    ("model.safetensors", one_byte_more, "extra bytes at its end"),
    ("speech_tokenizer/model.safetensors", cut_inside_the_header, "truncated: header says at least"),
    ("speech_tokenizer/model.safetensors", empty, "truncated"),
    ("merges.txt", empty, "empty"),  # transformers loads an empty merges.txt and splits every word wrongly
    ("config.json", Path.unlink, "missing file config.json"),
    ("speech_tokenizer/config.json", Path.unlink, "missing file speech_tokenizer/config.json"),
])
def test_each_kind_of_damage_is_named(tiny_custom_voice, tmp_path, rel, damage, why):
    root = tmp_path / "ck"
    shutil.copytree(tiny_custom_voice, root)
    damage(root / rel)
    with pytest.raises(CheckpointError) as err:
        check_checkpoint_files(root)
    assert rel in str(err.value) and why in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_every_missing_file_is_named_at_once(tiny_custom_voice, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(tiny_custom_voice, root)
    for name in ("vocab.json", "merges.txt"):
        (root / name).unlink()
    with pytest.raises(CheckpointError, match=r"missing files vocab.json \(.*\), merges.txt \(.*\): download"):
        check_checkpoint_files(root)


def test_a_tokenizer_json_stands_in_for_vocab_and_merges(tiny_custom_voice, tmp_path):
    """A fast tokenizer's one file holds vocabulary and merges: transformers needs no vocab.json or
    merges.txt next to it, so neither does the check."""
    from qwen3_tts_trt.runtime.text import TextTokenizer

    root = tmp_path / "ck"
    shutil.copytree(tiny_custom_voice, root)
    want = TextTokenizer(root)
    want._tok.backend_tokenizer.save(str(root / "tokenizer.json"))
    for name in ("vocab.json", "merges.txt"):
        (root / name).unlink()
    check_checkpoint_files(root)
    assert TextTokenizer(root).encode("Hello world, 你好") == want.encode("Hello world, 你好")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_an_unreadable_file_is_named(tiny_custom_voice, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(tiny_custom_voice, root)
    (root / "vocab.json").chmod(0)
    with pytest.raises(CheckpointError, match="vocab.json cannot be read .*make it readable"):
        check_checkpoint_files(root)


def test_a_damaged_hub_snapshot_says_how_to_fetch_it_again(tiny_custom_voice, tmp_path, monkeypatch):
    import huggingface_hub

    snapshot = tmp_path / "hub" / "snapshot"
    shutil.copytree(tiny_custom_voice, snapshot)
    cut_in_half(snapshot / "model.safetensors")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id: str(snapshot))
    with pytest.raises(CheckpointError, match=r"model.safetensors is damaged \(truncated.*"
                                              r"hf download Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice --force-download"):
        resolve_checkpoint("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")


# -- the front ends -----------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_cli_say_is_one_line_naming_the_file(tiny_custom_voice, tmp_path, case):
    """No build folder here: `say` runs the PyTorch backend, where a missing vocab.json was a
    TypeError traceback from transformers."""
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, case)
    wav = tmp_path / "out.wav"
    proc = cli("say", "Hello.", "-m", ckpt, "--speaker", "ryan", "--max-new-tokens", "3", "-o", wav, cwd=tmp_path)
    line = one_error_line(proc, "error:", expected(case))
    assert_names_the_file(line, case)
    assert not wav.exists()


@pytest.mark.parametrize("backend", ["torch", "onnx", "auto"])
@pytest.mark.parametrize("case", list(CASES))
def test_synthesizer_open_raises_checkpoint_error(tiny_custom_voice, tiny_build, tmp_path, case, backend):
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, case)
    build = None if backend == "torch" else tiny_build[0]
    with pytest.raises(CheckpointError) as err:
        Synthesizer.open(ckpt, build, backend)
    assert_names_the_file(str(err.value), case)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
@pytest.mark.parametrize("case", list(CASES))
def test_voice_maker_open_raises_checkpoint_error(tiny_base, tiny_base_build, tmp_path, case, backend):
    ckpt = damaged_copy(tiny_base, tmp_path, case)
    with pytest.raises(CheckpointError) as err:
        VoiceMaker.open(ckpt, None if backend == "torch" else tiny_base_build[0], backend)
    assert_names_the_file(str(err.value), case)


@pytest.mark.parametrize("case", list(CASES))
def test_a_server_replicas_pool_raises_checkpoint_error(tiny_custom_voice, tiny_build, tmp_path, case):
    """serve/app.py's replica constructor loads its engines with StreamPool.load: the error it
    raises there is this one."""
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, case)
    with pytest.raises(CheckpointError) as err:
        StreamPool.load(ckpt, tiny_build[0], "onnx")
    assert_names_the_file(str(err.value), case)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the serve extra (Ray Serve)")
def test_cli_serve_fails_before_ray_starts(tiny_custom_voice, tmp_path):
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, "missing vocab.json")
    proc = cli("serve", "-m", ckpt, "--port", "1", cwd=tmp_path, timeout=120)
    one_error_line(proc, "error:", "is missing file vocab.json")
    assert b"Started a local Ray instance" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("case", list(CASES))
def test_pipecat_start_pushes_an_error_frame_naming_the_file(tiny_custom_voice, tmp_path, case):
    """The service is made on a good checkpoint that is damaged before the pipeline starts (a
    download still running, a disk going bad): start() reports it as an ErrorFrame, not a crash."""
    pytest.importorskip("pipecat")
    from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.tests.utils import run_test
    from pipecat.transcriptions.language import Language

    from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings

    ckpt = tmp_path / "checkpoints" / tiny_custom_voice.name
    shutil.copytree(tiny_custom_voice, ckpt)
    settings = Qwen3TTSSettings(voice="ryan", language=Language.EN, greedy=True, max_new_tokens=4)
    tts = Qwen3TTSService.from_pretrained(ckpt, None, backend="torch", settings=settings)
    rel, damage, _ = CASES[case]
    damage(ckpt / rel)
    down, up = asyncio.run(run_test(tts, frames_to_send=[TTSSpeakFrame("Hello there.")], start_timeout=30))
    errors = [f.error for f in up if isinstance(f, ErrorFrame)]
    assert errors, up
    assert_names_the_file(errors[0], case)
    assert not tts.is_usable and not [f for f in down if isinstance(f, TTSAudioRawFrame)]


def test_pipecat_service_on_a_damaged_checkpoint_is_a_construction_error(tiny_custom_voice, tmp_path):
    """Damaged already when the service is made: the service reads the checkpoint's config there
    (its speakers, its variant), so the error comes there, as for a checkpoint that is not found."""
    pytest.importorskip("pipecat")
    from qwen3_tts_trt.pipecat_service import Qwen3TTSService

    ckpt = damaged_copy(tiny_custom_voice, tmp_path, "missing vocab.json")
    with pytest.raises(CheckpointError, match="is missing file vocab.json"):
        Qwen3TTSService.from_pretrained(ckpt, None, backend="torch")


# -- truncated weights next to a build: damaged, not "other weights" -------------------------------------
@pytest.mark.parametrize("rel", WEIGHTS)
def test_truncated_weights_next_to_a_build_are_named_damaged(tiny_custom_voice, tiny_build, tmp_path, rel):
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, f"truncated {rel}")
    for kind in ("onnx", "torch", "auto"):
        with pytest.raises(CheckpointError) as err:
            open_backend(kind, ckpt, tiny_build[0])
        assert_names_the_file(str(err.value), f"truncated {rel}")


def test_cli_truncated_weights_in_the_default_build_folder(tiny_custom_voice, tiny_build, tmp_path):
    """The build folder `say` finds by the checkpoint's name (builds/cpu/NAME) was built from these
    weights before they were cut: the line says the file is damaged, not that the build is another's."""
    (tmp_path / "builds" / "cpu").mkdir(parents=True)
    (tmp_path / "builds" / "cpu" / tiny_custom_voice.name).symlink_to(tiny_build[0])
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, "truncated model.safetensors")
    proc = cli("say", "Hello.", "-m", ckpt, "--speaker", "ryan", "-o", tmp_path / "a.wav", cwd=tmp_path)
    line = one_error_line(proc, "error:", "model.safetensors is damaged (truncated")
    assert "other weights" not in line


def test_build_sh_over_its_own_build_names_the_damaged_file(tiny_custom_voice, tiny_build, tmp_path):
    """build.sh (export/build.py) run again on a checkpoint whose weights were cut since: one line
    naming the file, not "a build of another checkpoint ... other weights", and the build is untouched."""
    out_root = tmp_path / "builds"
    (out_root / "cpu").mkdir(parents=True)
    shutil.copytree(tiny_build[0], out_root / "cpu" / tiny_custom_voice.name)
    before = (out_root / "cpu" / tiny_custom_voice.name / "manifest.json").read_bytes()
    ckpt = damaged_copy(tiny_custom_voice, tmp_path, "truncated model.safetensors")
    proc = subprocess.run([sys.executable, "-m", "qwen3_tts_trt.export.build", str(ckpt), "--out", str(out_root)],
                          cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, timeout=120)
    line = one_error_line(proc, "error:", "model.safetensors is damaged (truncated")
    assert "other weights" not in line
    assert (out_root / "cpu" / tiny_custom_voice.name / "manifest.json").read_bytes() == before
