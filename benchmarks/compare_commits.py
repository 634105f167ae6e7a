"""Two commits on one host, interleaved: is a slowdown the code's or the host's?

The CPU frame loop is bound by memory bandwidth, and these hosts' bandwidth drifts from day to day
(a 1 GiB single-thread read ran at 14 to 40 GB/s), so a figure from another day proves nothing.
This script builds and runs two commits in one run on one host, in alternating order, round after
round, and prints new/old per figure:

- each commit is checked out in its own git worktree and installed (editable, no dependencies) in
  its own venv, whose third-party packages are this interpreter's (a .pth file points at its
  site-packages), so both commits run the same torch, ONNX Runtime and numpy, and neither sees the
  other's code;
- each commit builds the model with its own `export.build` (its own contract and graphs); a
  precision a commit cannot build is reported as such, not compared;
- each measurement is one process per (commit, precision): open, warm up, then `--runs`
  utterances of exactly `--frames` greedy frames (EOS held off), speaker ryan; the median ms per
  frame and time to first audio are kept; rounds alternate which commit goes first;
- the host's read bandwidth is measured before and after.

    python benchmarks/compare_commits.py --ref 36738e3 -m .test-cache/0.6b-custom_voice-bfloat16 \\
        --precision fp32 --precision int4+codec8 --frames 60 --runs 3 --rounds 3 --json out/compare.json

`--precision` is fp32, fp16, int8, int4, or one of those with `+codec8` (the int8 codec). The
work folder (`--work`, default /tmp/qwen3-tts-compare) keeps worktrees, venvs and builds, so a
second run reuses them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Run inside each commit's venv, so it uses only names both old and new commits have.
PROBE = textwrap.dedent('''
    import json, statistics, sys, time
    from dataclasses import replace
    from pathlib import Path
    prefix, model, build, frames, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    import importlib
    Synthesizer = importlib.import_module(prefix + "runtime.stream").Synthesizer
    try:
        Voice = importlib.import_module(prefix + "runtime.voice").Voice
    except ImportError:
        Voice = importlib.import_module(prefix + "runtime.prompt").Voice
    synth = Synthesizer.open(model, build, "onnx")
    synth.warmup()
    params = replace(synth.default_params(), do_sample=False, subtalker_do_sample=False,
                     min_new_tokens=frames + 1, max_new_tokens=frames + 1)
    voice = Voice(speaker="ryan", language="english")
    text = sys.stdin.read()
    rows = []
    for i in range(runs + 1):  # the first is a warm-up
        t0 = time.perf_counter()
        for _ in synth.stream(text, voice, params):
            pass
        wall = time.perf_counter() - t0
        m = synth.last_metrics
        if i:
            rows.append(dict(ms_per_frame=1000 * wall / m.frames, ttfc_ms=m.ttfc_ms, frames=m.frames))
    print(json.dumps({k: statistics.median(r[k] for r in rows) for k in rows[0]}))
''')
TEXT = ("Good morning! The weather today is mild and clear, with a light breeze from the west, "
        "and the evening should stay dry, so it is a fine day for a long walk in the park.")


class Checkout:
    """One commit: its worktree, its venv, and how its packages are named."""

    def __init__(self, rev: str, work: Path):
        self.sha = _git("rev-parse", "--verify", f"{rev}^{{commit}}").strip()
        self.rev, self.short = rev, self.sha[:10]
        self.tree, self.venv = work / f"tree-{self.short}", work / f"venv-{self.short}"
        self.python = self.venv / "bin" / "python"

    @property
    def prefix(self) -> str:
        """Module prefix: one `qwen3_tts_trt` namespace now, top-level `runtime`/`export` before."""
        return "qwen3_tts_trt." if (self.tree / "qwen3_tts_trt").is_dir() else ""

    def prepare(self, log) -> None:
        if not self.tree.is_dir():
            _git("worktree", "add", "--detach", str(self.tree), self.sha)
        if not self.python.exists():
            log(f"{self.short}: venv with this interpreter's packages and the commit's code")
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], check=True)
            site = Path(subprocess.run([str(self.python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                       check=True, capture_output=True, text=True).stdout.strip())
            # The base interpreter's packages as a plain path entry: its own .pth files (an editable
            # install of another checkout among them) are not run, so only this commit's code is seen.
            (site / "_base_packages.pth").write_text(sysconfig.get_path("purelib") + "\n")
            subprocess.run([str(self.python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                            "-e", str(self.tree)], check=True, cwd=self.venv)
        where = subprocess.run([str(self.python), "-c", f"import {self.prefix}runtime.stream as m; print(m.__file__)"],
                               check=True, capture_output=True, text=True, cwd=self.venv).stdout.strip()
        if not Path(where).resolve().is_relative_to(self.tree.resolve()):
            raise SystemExit(f"{self.short}: its venv imports {where}, not its worktree")

    def can_build(self, precision: str) -> bool:
        weights, codec8 = _split(precision)
        text = subprocess.run([str(self.python), "-m", f"{self.prefix}export.build", "--help"], check=True,
                              capture_output=True, text=True, cwd=self.venv).stdout
        choices = {flag: set(names.split(",")) for flag, names in re.findall(r"(--[a-z-]+) \{([^}]*)\}", text)}
        return weights in choices.get("--precision", ()) and (not codec8 or "int8" in choices.get("--codec-precision", ()))

    def build(self, model: Path, precision: str, work: Path, log) -> Path:
        weights, codec8 = _split(precision)
        out = work / f"build-{self.short}-{precision}"
        args = [str(model), "--out", str(out), "--skip-parity", "--precision", weights]
        args += ["--codec-precision", "int8"] if codec8 else []
        log(f"{self.short}: build {precision}")
        subprocess.run([str(self.python), "-m", f"{self.prefix}export.build", *args], check=True, cwd=self.venv,
                       stdout=subprocess.DEVNULL)
        return out / "cpu" / model.name

    def measure(self, model: Path, build: Path, frames: int, runs: int) -> dict:
        probe = self.venv / "probe.py"
        probe.write_text(PROBE)
        done = subprocess.run([str(self.python), str(probe), self.prefix, str(model), str(build), str(frames), str(runs)],
                              input=TEXT, check=True, capture_output=True, text=True, cwd=self.venv)
        return json.loads(done.stdout.strip().splitlines()[-1])


def _split(precision: str) -> tuple[str, bool]:
    weights, _, codec = precision.partition("+")
    if weights not in ("fp32", "fp16", "int8", "int4") or codec not in ("", "codec8"):
        raise SystemExit(f"--precision {precision}: use fp32, fp16, int8 or int4, optionally with +codec8")
    return weights, codec == "codec8"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True, cwd=ROOT).stdout


def main(argv=None) -> None:
    from qwen3_tts_trt.runtime.device_info import host_read_gbs

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref", required=True, help="the older commit (any git revision)")
    ap.add_argument("--new", default="HEAD", help="the newer commit (default: HEAD; commit what you measure)")
    ap.add_argument("-m", "--model", required=True, type=Path, help="checkpoint directory")
    ap.add_argument("--precision", action="append", help="fp32, int8, int4, ... (+codec8); repeat (default fp32)")
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--runs", type=int, default=3, help="utterances per measurement (median), after a warm-up")
    ap.add_argument("--rounds", type=int, default=3, help="measurements per commit and precision, interleaved")
    ap.add_argument("--work", type=Path, default=Path("/tmp/qwen3-tts-compare"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    model = args.model.resolve()
    precisions = args.precision or ["fp32"]
    args.work.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    old, new = Checkout(args.ref, args.work), Checkout(args.new, args.work)
    builds: dict[tuple[str, str], Path] = {}
    skipped = {}
    for c in (old, new):
        c.prepare(log)
        for p in precisions:
            if c.can_build(p):
                builds[c.sha, p] = c.build(model, p, args.work, log)
            else:
                skipped[c.short, p] = f"{c.short} cannot build {p}"
    bandwidth = [host_read_gbs()]
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        for p in precisions:
            for c in ((old, new) if r % 2 == 0 else (new, old)):
                if (c.sha, p) in builds:
                    got = c.measure(model, builds[c.sha, p], args.frames, args.runs)
                    runs.setdefault((c.sha, p), []).append(got)
                    log(f"round {r + 1} {p} {c.short}: {got['ms_per_frame']:.1f} ms/frame, TTFC {got['ttfc_ms']:.0f} ms")
    bandwidth.append(host_read_gbs())

    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; single-thread read "
          f"{bandwidth[0]:.1f} GB/s before, {bandwidth[1]:.1f} after")
    print(f"old {old.short} ({args.ref}), new {new.short} ({args.new}); {args.frames} frames, median of {args.runs} "
          f"utterances per measurement, {args.rounds} rounds interleaved")
    print("| precision | figure | old (per round) | new (per round) | new/old (medians) |")
    print("|---|---|---|---|---|")
    rows = []
    for p in precisions:
        if (old.sha, p) not in runs or (new.sha, p) not in runs:
            print(f"| {p} | - | {skipped.get((old.short, p), '')} | {skipped.get((new.short, p), '')} | not compared |")
            continue
        for figure in ("ms_per_frame", "ttfc_ms"):
            a = [x[figure] for x in runs[old.sha, p]]
            b = [x[figure] for x in runs[new.sha, p]]
            ratio = statistics.median(b) / statistics.median(a)
            rows.append(dict(precision=p, figure=figure, old=a, new=b, ratio=ratio))
            print(f"| {p} | {figure} | {', '.join(f'{v:.1f}' for v in a)} | {', '.join(f'{v:.1f}' for v in b)} | {ratio:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(old=old.sha, new=new.sha, model=str(model), frames=args.frames,
                                             runs=args.runs, rounds=args.rounds, read_gbs=bandwidth, rows=rows,
                                             skipped={f"{k[0]} {k[1]}": v for k, v in skipped.items()},
                                             date=time.strftime("%Y-%m-%d")), indent=1))


if __name__ == "__main__":
    main()
