"""The README's "Clone a voice" block, run as written, and the CLI's voice errors (one line, exit 2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen3_tts_trt.runtime.voice import Voice
from support import write_wav

ROOT = Path(__file__).resolve().parent.parent


def _env():
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRANSFORMERS_VERBOSITY="error")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # qwen3-tts-trt, python
    return env


def readme_block(title: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"## {title}\n", 1)[1]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def _run(block: str, cwd: Path) -> None:
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=_env(), capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]


@pytest.mark.slow  # ~90 s: CI's slow step keeps the default run under 20 minutes
def test_readme_clone_a_voice_block_runs_after_the_main_job(tmp_path):
    """The main job (its set-up block, past the installs the test command made) and then the clone
    block, as written, in a fresh folder: the recording it clones is the main job's WAV; nothing is
    downloaded and nothing is brought."""
    main_job = readme_block("Set-up: two commands")
    commands = main_job.strip().split(" && ")
    assert [c.split()[:2] for c in commands[:2]] == [["pip", "install"]] * 2
    (tmp_path / "build.sh").symlink_to(ROOT / "build.sh")  # `./build.sh`, as from the repository's root
    _run(" && ".join(commands[2:]), tmp_path)
    _run(readme_block("Clone a voice"), tmp_path)
    voice = Voice.load(tmp_path / "me.voice", model=tmp_path / "checkpoints" / "tiny-base")
    assert voice.ref_text == "Hello from qwen3-tts-trt." and voice.ref_codes.shape[1] == 16
    hello = sf.info(str(tmp_path / "out" / "hello.wav"))
    assert voice.ref_codes.shape[0] == round(hello.duration * 12.5)  # the main job's WAV, 12.5 frames a second
    audio, rate = sf.read(str(tmp_path / "out" / "me.wav"))
    assert rate == 24000 and len(audio) >= 1920 * 10 and np.abs(audio).max() > 0.01


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
