"""`qwen3-tts-trt`: the parser that assembles the subcommands, and what a run ends with.

Every failure is one line on stderr and exit status 2 (1 for a bug), before any model is loaded
where it can be found then. Ctrl-C (or SIGTERM) exits 130 (143 for SIGTERM), after the command
has kept what it made so far.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from qwen3_tts_trt.runtime.errors import Qwen3TTSError

from . import bench, inspect, say, serve, voice


class Interrupted(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that the same clean-up runs."""

    exit_status = 143


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the error and where to read more), exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qwen3-tts-trt")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    ap = _Parser(prog="qwen3-tts-trt", description="Qwen3-TTS streaming runtime", formatter_class=fmt)
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="{say,bench,voice,serve,inspect}")
    say.add_parser(sub)
    bench.add_parser(sub)
    voice.add_parser(sub)
    serve.add_parser(sub)
    inspect.add_parser(sub)
    return ap


def _quiet_libraries() -> None:
    """No library chatter on every run: transformers' advisory warnings (tokenizer regex notes,
    version hints) say nothing a user of this CLI can act on."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()

    def on_sigterm(signum, frame):
        raise Interrupted()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    # Ctrl-C is ignored during the clean-up after an interrupt; put it back on the way out, or a
    # caller of main() in-process (tests, an embedding program) and the children it starts, which
    # inherit an ignored SIGINT, could no longer be interrupted.
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        return args.func(args)
    except KeyboardInterrupt as stop:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        print(f"interrupted: {getattr(stop, 'note', 'nothing was written')}", file=sys.stderr)
        return getattr(stop, "exit_status", 130)
    except Qwen3TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, a file vanished mid-run: say which, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not None:
            signal.signal(signal.SIGINT, previous_int)
