"""The wheel as pip builds it: one top-level package, `qwen3_tts_trt`, holding every subpackage
(the folders at the repository's top level), the build toolchain's data and the command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not part of the source: what builds, tests and tools leave in the working tree.
LEFT_OUT = {".git", ".test-cache", ".ruff_cache", ".benchmarks", "build", "builds", "checkpoints", "out", "__pycache__"}


def _source_copy(dest: Path) -> Path:
    """The repository without its generated files: setuptools writes build/ and *.egg-info next to
    the source it builds, which must not touch the working tree (or the editable install)."""
    def ignore(folder, names):
        return [n for n in names if n in LEFT_OUT or n.endswith(".egg-info")]

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


def test_the_wheel_installs_one_package_with_every_part(tmp_path):
    source = _source_copy(tmp_path / "src")
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                           str(out), "."], cwd=source, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (wheel,) = out.glob("qwen3_tts_trt-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        dist_info = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
        entry_points = z.read(f"{dist_info.pop()}/entry_points.txt").decode()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"qwen3_tts_trt"}, sorted(top)
    for path in ("qwen3_tts_trt/runtime/stream.py", "qwen3_tts_trt/commands/main.py",
                 "qwen3_tts_trt/commands/__main__.py", "qwen3_tts_trt/export/data/trt_onnx_ops.json",
                 "qwen3_tts_trt/serve/static/playground.html"):  # the page `serve` answers at `/`
        assert path in names, path
    assert "qwen3-tts-trt = qwen3_tts_trt.commands.main:main" in entry_points, entry_points
