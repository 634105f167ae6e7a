"""Constants and helpers that several test modules share (fixtures live in conftest.py).

Test modules import these from here (`from support import ...`; pyproject's pytest config puts
tests/ on the path), never from one another.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from qwen3_tts_trt.runtime.contract import EngineLimits

ROOT = Path(__file__).resolve().parent.parent

# -- the tiny builds (conftest's tiny_build / tiny_base_build) and the text most tests speak -------
# max_batch 16: the tests' builds carry the step loop's batched graphs (tests/test_scheduler.py)
LIMITS = EngineLimits(max_context=256, max_prompt=128, max_chunk=10, max_batch=16)
TEXT = "Hello world, this is a streaming test of the voice runtime."

# -- the real 0.6B-shape build (conftest's real_build; slow tests) ---------------------------------
REAL_LIMITS = EngineLimits(max_context=512, max_prompt=256, max_batch=3)  # 3 rows: the batched codec at 0.6B


# -- checkpoints ------------------------------------------------------------------------------------
def edited_checkpoint(src: Path, dst: Path, edit: Callable[[dict], None]) -> Path:
    """A copy of checkpoint `src` at `dst` whose main weights `edit(state)` changed in place."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    state = load_file(str(dst / "model.safetensors"))
    edit(state)
    save_file(state, str(dst / "model.safetensors"))
    return dst


# -- the CLI in a subprocess --------------------------------------------------------------------------
def cli(*args, cwd=None, stdin: bytes | None = None, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "qwen3_tts_trt.commands", *map(str, args)], cwd=cwd or ROOT, env=env,
                          input=stdin, capture_output=True, timeout=timeout)


def one_error_line(proc, *fragments: str, status: int = 2) -> str:
    """The run failed with `status` and exactly one stderr line (no traceback) holding `fragments`."""
    err = proc.stderr.decode()
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == status, (proc.returncode, err)
    assert "Traceback" not in err and len(lines) == 1, err
    for f in fragments:
        assert f in lines[0], (f, lines[0])
    return lines[0]


# -- reference audio (synthesized, never downloaded) -----------------------------------------------
REF_TEXT = "This is the reference."


def synth_audio(seconds: float, rate: int = 24000, channels: int = 1, seed: int = 0) -> np.ndarray:
    """Speech-like test audio, float32 [samples] or [samples, channels]: a voiced tone with vibrato,
    two formant-like partials, and noise, under a syllable-rate envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * rate))) / rate
    f0 = 140 + 25 * np.sin(2 * np.pi * 0.7 * t) + 10 * seed
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = 0.35 * np.sin(phase) + 0.15 * np.sin(3 * phase) + 0.08 * np.sin(7 * phase)
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t) ** 2
    out = []
    for c in range(channels):
        out.append(envelope * voiced * (1 - 0.3 * c) + 0.03 * rng.standard_normal(t.shape))
    a = np.stack(out, axis=1).astype(np.float32)
    return a[:, 0] if channels == 1 else a


def write_wav(path, seconds=3.0, rate=24000, channels=1, seed=0, **kw):
    sf.write(str(path), synth_audio(seconds, rate, channels, seed), rate, **kw)
    return path


# -- the official qwen-tts reference (tests/official.py) --------------------------------------------
MAX_NEW = 48  # official counting: 47 frames unless EOS comes first


class OfficialRun:
    """Runs the official low-level generate and records what its talker saw at prefill."""

    def __init__(self, model_dir):
        # Imported here, not at the top: official.py imports transformers, which the many modules
        # that import this one for a constant need not pay for.
        from official import load_official

        self.wrapper = load_official(str(model_dir))
        self.model = self.wrapper.model

    def generate(self, text, *, language, speaker=None, instruct=None, xvector=None, ref_codes=None,
                 ref_text=None, non_streaming=False, max_new_tokens=MAX_NEW, sampling=None):
        w = self.wrapper
        seen = {}

        def capture(module, args, kwargs, output):
            if "logits" not in seen:
                seen["embeds"] = kwargs["inputs_embeds"].detach().clone()
                seen["trailing"] = kwargs["trailing_text_hidden"].detach().clone()
                seen["logits"] = output.logits[0, -1].detach().clone()
                seen["hidden"] = output.past_hidden[0, -1].detach().clone()

        handle = self.model.talker.register_forward_hook(capture, with_kwargs=True)
        try:
            input_ids = w._tokenize_texts([w._build_assistant_text(text)])
            kwargs = {}
            if instruct:
                kwargs["instruct_ids"] = w._tokenize_texts([w._build_instruct_text(instruct)])
            if xvector is not None:
                kwargs["voice_clone_prompt"] = dict(
                    ref_spk_embedding=[xvector], ref_code=[ref_codes] if ref_codes is not None else None,
                    x_vector_only_mode=[ref_codes is None], icl_mode=[ref_codes is not None])
                if ref_codes is not None:
                    kwargs["ref_ids"] = w._tokenize_texts([w._build_ref_text(ref_text)])
            codes, _ = self.model.generate(
                input_ids=input_ids, languages=[language], speakers=[speaker], non_streaming_mode=non_streaming,
                max_new_tokens=max_new_tokens, **(sampling or dict(do_sample=False, subtalker_dosample=False)),
                **kwargs)
        finally:
            handle.remove()
        return codes[0], seen

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        wavs, sr = self.model.speech_tokenizer.decode([{"audio_codes": codes}])
        assert sr == 24000
        return torch.as_tensor(wavs[0])


# -- servers and browsers on this machine (the serve and playground tests) --------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(config, *, app_name: str = "qwen3-tts", metrics_port: int | None = None):
    """The application of `config` (a ServeConfig) on a Ray cluster of its own on 127.0.0.1, for a
    test module: yields its base URL; Serve and Ray stop on the way out. Ray 2.60 turns token auth
    on for a cluster ray.init() starts and writes ~/.ray/auth_token; a throwaway test cluster on
    this machine needs neither (RAY_AUTH_MODE=disabled)."""
    import pytest

    from qwen3_tts_trt.serve.local import start, stop

    port = free_port()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")
        try:
            start(config, "127.0.0.1", port, app_name=app_name, metrics_port=metrics_port)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop()


@contextlib.contextmanager
def chromium_browser():
    """Debian's Chromium, headless, driven by Playwright (never `playwright install`, which
    downloads browsers); the calling test skips, with the reason, where none can be had."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=chromium, headless=True,
                                        args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        except sync_api.Error as exc:
            pytest.skip(f"{chromium} does not start under Playwright: {str(exc).splitlines()[0]}")
        try:
            yield browser
        finally:
            browser.close()
