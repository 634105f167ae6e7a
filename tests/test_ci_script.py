"""`.ci/run` fails on the first command that fails, in any step.

The script runs for real, copied into a scratch repository, with `pip`, `python` and `apt-get`
replaced on PATH by stubs that log their arguments and fail when told to; nothing is installed or
tested for real here. The README's test command must appear in it verbatim. The browser step is the
exception to failing: it installs Chromium where it can, and CI goes on without it."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

STUB = """#!/usr/bin/env bash
name={name}
echo "$name $*" >> "$STUB_LOG"
if [[ "$name $*" == $STUB_FAIL ]]; then exit 1; fi
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  for tool in pip python; do
    sed "s|^name=.*|name=venv-$tool|" "$0" > "$3/bin/$tool" && chmod +x "$3/bin/$tool"
  done
fi
"""


# What .ci/run and the stubs run besides shell builtins: a PATH of these alone has no chromium.
TOOLS = ("bash", "env", "dirname", "sed", "mkdir", "chmod")


def _run_ci(tmp_path: Path, fail: str = "never-matches", with_shared: bool = True, chromium: bool | None = None):
    """chromium None: the machine's PATH (where a real chromium may be); True / False: a PATH of
    TOOLS and the stubs only, with or without a stub `chromium`."""
    repo = tmp_path / "repo"
    (repo / ".ci").mkdir(parents=True)
    shutil.copy(REPO / ".ci" / "run", repo / ".ci" / "run")
    if with_shared:
        (tmp_path / "shared" / "tools").mkdir(parents=True)
        (tmp_path / "shared" / "tools" / "trt_api_check.py").write_text("")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in ("pip", "python", "apt-get") + (("chromium",) if chromium else ()):
        (stubs / name).write_text(STUB.format(name=name))
        (stubs / name).chmod(0o755)
    path = f"{stubs}:{os.environ['PATH']}"
    if chromium is not None:
        tools = tmp_path / "tools"
        tools.mkdir()
        for tool in TOOLS:
            (tools / tool).symlink_to(shutil.which(tool))
        path = f"{stubs}:{tools}"
    log = tmp_path / "calls.log"
    log.touch()
    env = {**os.environ, "PATH": path, "STUB_LOG": str(log),
           "STUB_FAIL": fail, "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(repo / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    return done, log.read_text().splitlines(), done.stdout + done.stderr


def _steps(output: str) -> list[str]:
    return re.findall(r"^=== ci step: (.*)$", output, flags=re.M)


def test_every_step_runs_in_order_when_every_command_works(tmp_path):
    done, calls, output = _run_ci(tmp_path)
    assert done.returncode == 0, output
    assert [s.split(" (")[0] for s in _steps(output)] == [
        "browser for the playground test", "default tests", "slow tests", "transformers 5.x tests",
        "TensorRT API name check"]
    calls = [c for c in calls if not c.startswith("apt-get ")]  # only where this machine has no chromium
    assert calls[:4] == ["pip install torch==2.13.0", "pip install -e .[test]",
                         "pip install --no-deps qwen-tts==0.1.1", "python -m pytest -q"]
    assert "python -m pytest -q -m slow" in calls
    assert any(c.startswith("venv-python -m pytest -q tests/test_text_stream.py") for c in calls)
    assert calls[-1] == "python ../shared/tools/trt_api_check.py export/ runtime/"


@pytest.mark.parametrize("fail, failed_step, last_call", [
    # The first command of the README's list: bash's -e alone would let the list (and CI) go on.
    ("pip install torch*", "default tests", "pip install torch==2.13.0"),
    ("pip install -e*", "default tests", "pip install -e .[test]"),
    ("python -m pytest -q -m slow", "slow tests", "python -m pytest -q -m slow"),
    ("venv-pip install -q -U*", "transformers 5.x tests", "venv-pip install -q -U transformers>=5,<6"),
    ("python ../shared/tools/trt_api_check.py*", "TensorRT API name check",
     "python ../shared/tools/trt_api_check.py export/ runtime/"),
])
def test_a_failing_command_fails_the_run_at_its_step(tmp_path, fail, failed_step, last_call):
    done, calls, output = _run_ci(tmp_path, fail=fail)
    assert done.returncode != 0, output
    assert _steps(output)[-1].startswith(failed_step), output
    assert f"=== ci step failed (exit 1): {failed_step}" in output
    assert calls[-1] == last_call, calls   # nothing after the failed command ran
    assert "every step passed" not in output


def test_without_shared_the_trt_check_is_skipped_by_name(tmp_path):
    done, calls, output = _run_ci(tmp_path, with_shared=False)
    assert done.returncode == 0, output
    assert "=== ci step skipped: TensorRT API name check" in output
    assert not any("trt_api_check" in c for c in calls)


def test_ci_runs_exactly_the_readmes_test_command():
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, flags=re.S)
    test_command = next(b for b in blocks if b.endswith("python -m pytest -q"))
    assert f"'{test_command}'" in (REPO / ".ci" / "run").read_text()


@pytest.mark.parametrize("chromium, fail, apt_calls, says", [
    (True, "never-matches", [], None),
    (False, "never-matches", ["apt-get update -qq", "apt-get install -y -qq chromium"], None),
    # no apt-get that works (not root, no network, not Debian): the browser test skips, CI goes on
    (False, "apt-get update*", ["apt-get update -qq"], "no chromium: tests/test_playground.py will skip"),
    (False, "apt-get install*", ["apt-get update -qq", "apt-get install -y -qq chromium"],
     "no chromium: tests/test_playground.py will skip"),
], ids=["present", "installed", "no-apt", "install-fails"])
def test_the_browser_step_installs_chromium_where_missing_and_never_fails_the_run(tmp_path, chromium, fail,
                                                                                  apt_calls, says):
    done, calls, output = _run_ci(tmp_path, fail=fail, chromium=chromium)
    assert done.returncode == 0, output
    assert [c for c in calls if c.startswith("apt-get ")] == apt_calls
    assert calls[len(apt_calls)] == "pip install torch==2.13.0"  # then the default tests, as always
    assert (says in output) if says else "no chromium" not in output
    assert "=== ci: every step passed" in output
