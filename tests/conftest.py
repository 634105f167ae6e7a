"""Shared fixtures: random checkpoints written once per session, the official reference."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from qwen3_tts_trt.export.make_checkpoint import CHECKPOINT_LAYOUT, make_checkpoint
from support import LIMITS, REAL_LIMITS

CACHE = Path(os.environ.get("QWEN3_TTS_TEST_CACHE", Path(__file__).resolve().parent.parent / ".test-cache"))


def _checkpoint(preset: str, variant: str, dtype: str = "float32") -> Path:
    """Checkpoints are deterministic (seeded), so a finished one is reused across sessions, unless
    it was written by an older layout of make_checkpoint (then it is written again)."""
    out = CACHE / f"{preset}-{variant}-{dtype}"
    marker = out / "random_weights.json"
    if not marker.exists() or json.loads(marker.read_text()).get("layout") != CHECKPOINT_LAYOUT:
        # Written aside and swapped in, so a test run reading the old copy keeps its open files.
        fresh = out.with_name(f"{out.name}.new-{os.getpid()}")
        make_checkpoint(fresh, preset=preset, variant=variant, seed=0, dtype=dtype)
        stale = out.with_name(f"{out.name}.old-{os.getpid()}")
        if out.exists():
            out.rename(stale)
        fresh.rename(out)
        shutil.rmtree(stale, ignore_errors=True)
    return out


@pytest.fixture(scope="session")
def tiny_custom_voice() -> Path:
    return _checkpoint("tiny", "custom_voice")


@pytest.fixture(scope="session")
def tiny_base() -> Path:
    return _checkpoint("tiny", "base")


@pytest.fixture(scope="session")
def tiny_voice_design() -> Path:
    return _checkpoint("tiny", "voice_design")


@pytest.fixture(scope="session")
def real_custom_voice() -> Path:
    """The real 0.6B shapes, stored in bf16 like the released checkpoint."""
    return _checkpoint("0.6b", "custom_voice", dtype="bfloat16")


@pytest.fixture(scope="session")
def real_base() -> Path:
    """The real 0.6B shapes of a Base checkpoint (speaker encoder included), bf16 storage."""
    return _checkpoint("0.6b", "base", dtype="bfloat16")


@pytest.fixture(scope="session")
def tiny_base_build(tiny_base, tmp_path_factory):
    """build.sh's work on the tiny Base checkpoint (six graphs: the four and the voice encoders)."""
    from qwen3_tts_trt.export.build import build

    root = Path(os.environ.get("QWEN3_TTS_TEST_BUILDS") or tmp_path_factory.mktemp("builds-base"))  # as tiny_build
    manifest = build(str(tiny_base), root, LIMITS, log=lambda *_: None)
    return root / "cpu" / tiny_base.name, manifest


@pytest.fixture(scope="session")
def real_build(real_custom_voice, tmp_path_factory):
    """build.sh's fp32 work at the real 0.6B shapes (slow tests only: ~10 min on 2 cores), with
    the build log it printed."""
    from qwen3_tts_trt.export.build import build

    root = Path(os.environ.get("QWEN3_TTS_TEST_BUILDS") or tmp_path_factory.mktemp("builds-real"))
    manifest = build(str(real_custom_voice), root, REAL_LIMITS, log=print)
    return root / "cpu" / real_custom_voice.name, manifest


@pytest.fixture(scope="session")
def tiny_build(tiny_custom_voice, tmp_path_factory):
    """build.sh's work on the tiny CustomVoice checkpoint: (build folder, manifest)."""
    from qwen3_tts_trt.export.build import build

    # QWEN3_TTS_TEST_BUILDS=DIR keeps this build between runs while iterating (build() reuses what is
    # unchanged); CI leaves it unset and builds afresh.
    root = Path(os.environ.get("QWEN3_TTS_TEST_BUILDS") or tmp_path_factory.mktemp("builds"))
    manifest = build(str(tiny_custom_voice), root, LIMITS, log=lambda *_: None)
    return root / "cpu" / tiny_custom_voice.name, manifest


@pytest.fixture(scope="module")
def onnx_synth(tiny_build, tiny_custom_voice):
    """A warmed-up ONNX Runtime synthesizer on the tiny build (one per test module)."""
    from qwen3_tts_trt.runtime.stream import Synthesizer

    out, _ = tiny_build
    synth = Synthesizer.open(tiny_custom_voice, out, "onnx")
    synth.warmup()
    return synth


def pytest_collection_modifyitems(config, items):
    """Tests that run the official qwen-tts (their module uses tests/official.py) are marked
    `official`: the transformers 5.x run in .ci/run leaves them out, since qwen-tts 0.1.1 needs 4.57."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and any(hasattr(module, n) for n in ("load_official", "OfficialRun")):
            item.add_marker(pytest.mark.official)
        if module is not None and module.__name__.rsplit(".", 1)[-1].startswith("test_serve"):
            item.add_marker(pytest.mark.serve)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, under Playwright (support.chromium_browser); the module's tests
    skip, with the reason, where none can be had. Asked for first, so no server starts for nothing."""
    from support import chromium_browser

    with chromium_browser() as b:
        yield b
