"""Every shell block of the README, run as written in a fresh folder, after the README's two
set-up commands (whose installs the test command has made): the main job, the clone block (which
clones the main job's WAV), the int8 build, the Pipecat example, and `serve` with the curl and
`openai` blocks against it, stopped as a service manager stops it. A block this test does not run
must be named in NOT_HERE with where it does run, so a new block cannot go untested."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELL = re.findall(r"```bash\n(.*?)```", README, re.S)
PYTHON = re.findall(r"```python\n(.*?)```", README, re.S)
# Blocks run elsewhere, by their first words, with where.
NOT_HERE = {
    'pip install torch==2.13.0 && pip install -e ".[test]"': ".ci/run's first step, verbatim (tests/test_ci_script.py)",
    "python -m venv /tmp/qwen3-tts-trt-tf5": ".ci/run's third step (its venv is ${TMPDIR:-/tmp}/qwen3-tts-trt-tf5)",
    "# head node": "needs two machines with GPUs; tests/test_serve_cluster.py runs its steps as two nodes here",
}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]  # ~5 min: builds, a server, an int8 build


def _block(start: str) -> str:
    found = [b for b in SHELL if b.lstrip().startswith(start)]
    assert len(found) == 1, f"one README shell block starts with {start!r}, found {len(found)}"
    return found[0]


def _env() -> dict:
    env = dict(os.environ, TRANSFORMERS_VERBOSITY="error", RAY_AUTH_MODE="disabled")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # qwen3-tts-trt, python, pip
    return env


def _run(block: str, cwd: Path) -> None:
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=_env(), capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, f"{block}\n{run.stderr[-3000:]}"


RUN_HERE = ("pip install torch==2.13.0 && pip install -e \".[onnx]\"", "python -m qwen3_tts_trt.export.make_checkpoint "
            "--preset tiny --variant base", "./build.sh checkpoints/tiny-custom-voice --precision int8",
            "python examples/pipecat_offline.py", "qwen3-tts-trt serve -m checkpoints/tiny-custom-voice",
            "curl -sSf http://127.0.0.1:8000")


def test_every_shell_block_is_run_here_or_named_where_it_runs():
    for block in SHELL:
        assert sum(block.lstrip().startswith(s) for s in (*RUN_HERE, *NOT_HERE)) == 1, block


def test_the_shell_blocks_run_as_written_in_a_fresh_folder(tmp_path):
    # the repository's own files the blocks name by relative path, as from its root
    (tmp_path / "build.sh").symlink_to(ROOT / "build.sh")
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    main_job = _block(RUN_HERE[0]).strip().split(" && ")
    assert [c.split()[:2] for c in main_job[:2]] == [["pip", "install"]] * 2  # made by the test command
    _run(" && ".join(main_job[2:]), tmp_path)
    assert sf.info(str(tmp_path / "out" / "hello.wav")).samplerate == 24000

    _run(_block(RUN_HERE[1]), tmp_path)  # clone a voice: the main job's WAV and its text
    from qwen3_tts_trt.runtime.voice import Voice

    voice = Voice.load(tmp_path / "me.voice", model=tmp_path / "checkpoints" / "tiny-base")
    assert voice.ref_text == "Hello from qwen3-tts-trt."
    assert voice.ref_codes.shape[0] == round(sf.info(str(tmp_path / "out" / "hello.wav")).duration * 12.5)
    audio, rate = sf.read(str(tmp_path / "out" / "me.wav"))
    assert rate == 24000 and len(audio) >= 1920 * 10 and np.abs(audio).max() > 0.01

    _run(_block(RUN_HERE[2]), tmp_path)  # the int8 graphs
    assert sf.info(str(tmp_path / "out" / "int8.wav")).frames > 0
    _run(_block(RUN_HERE[3]), tmp_path)  # Pipecat, offline
    assert sf.info(str(tmp_path / "out" / "pipecat.wav")).frames > 0

    # serve, as written (port 8000), then the curl and openai blocks against it; SIGTERM stops it
    log = open(tmp_path / "serve.log", "w+")
    server = subprocess.Popen(["bash", "-c", "exec " + _block(RUN_HERE[4]).split("#")[0]], cwd=tmp_path, env=_env(),
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            log.seek(0)
            if server.poll() is not None or "serving " in log.read():
                break
            time.sleep(0.5)
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        _run(_block(RUN_HERE[5]), tmp_path)
        assert sf.info(str(tmp_path / "out" / "server.mp3")).frames > 0
        openai_block = next(b for b in PYTHON if "from openai import OpenAI" in b)
        run = subprocess.run([sys.executable, "-c", openai_block], cwd=tmp_path, env=_env(), capture_output=True,
                             text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]
        assert sf.info(str(tmp_path / "out" / "server.wav")).samplerate == 24000
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            code = None
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()[-3000:]
