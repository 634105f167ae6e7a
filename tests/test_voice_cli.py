"""The CLI's voice errors (one line, exit 2); the README's "Clone a voice" block runs in test_readme_blocks.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from support import write_wav

ROOT = Path(__file__).resolve().parent.parent


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRANSFORMERS_VERBOSITY="error")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # qwen3-tts-trt, python
    return env


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "qwen3_tts_trt.commands", *map(str, args)], cwd=cwd or ROOT, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _one_error_line(run, expected: str):
    assert run.returncode == 2, (run.returncode, run.stderr)
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expected in lines[0], run.stderr
    assert "Traceback" not in run.stderr


def test_voice_create_errors(tiny_base, tiny_custom_voice, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(48000, np.float32), 24000)
    ref = write_wav(tmp_path / "ref.wav")
    _one_error_line(cli("voice", "create", silent, "--ref-text", "Hi.", "-m", tiny_base, "-o", tmp_path / "a.voice"),
                    "digital silence")
    _one_error_line(cli("voice", "create", ref, "-m", tiny_base, "-o", tmp_path / "a.voice"), "--ref-text")
    _one_error_line(cli("voice", "create", ref, "--x-vector-only", "-m", tiny_base, "-o", tmp_path / "a.wav"),
                    "must end in .voice")
    _one_error_line(cli("voice", "create", ref, "--x-vector-only", "-m", tiny_custom_voice, "-o", tmp_path / "a.voice"),
                    "Base checkpoint")
    assert not (tmp_path / "a.voice").exists()


def test_say_with_a_voice_for_another_model(tiny_base, tiny_voice_design, tmp_path):
    made = cli("voice", "create", write_wav(tmp_path / "ref.wav"), "--x-vector-only", "-m", tiny_base,
               "-o", tmp_path / "x.voice", "--backend", "torch")
    assert made.returncode == 0, made.stderr
    assert "x-vector only" in made.stdout
    _one_error_line(cli("say", "Hello.", "--voice", tmp_path / "x.voice", "-m", tiny_voice_design, "--backend", "torch",
                        "--no-warmup", "-o", tmp_path / "o.wav"), "cloned voices need a Base checkpoint")
    _one_error_line(cli("say", "Hello.", "--voice", tmp_path / "nope.voice", "-m", tiny_base, "-o", tmp_path / "o.wav"),
                    "voice file not found")
    assert not (tmp_path / "o.wav").exists()
