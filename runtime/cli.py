"""Command line: `qwen3-tts-trt say "text" -o out.wav`, `qwen3-tts-trt bench` and `qwen3-tts-trt serve`.

Both stream through the `Synthesizer` on the backend you name (`--backend auto` runs the build's
TensorRT engines, or its ONNX graphs on a build without engines, or PyTorch when there is no
build; a build that cannot run here is an error unless `--fallback` is given). The build folder
defaults to builds/<this GPU or cpu>/<model folder name> when it exists; the runtime checks that
it was built from this very checkpoint.

Every failure is one line on stderr and exit status 2 (1 for a bug), before any model is loaded
where it can be found then. Audio goes to a temporary file next to the output and is moved into
place only when there is audio, so a failed or empty run never replaces an existing file. Ctrl-C
(or SIGTERM) keeps the audio made so far as a valid file and exits 130 (143 for SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .errors import Qwen3TTSError

BENCH_TEXTS = [
    "Hello! Thanks for calling. How can I help you today?",
    "Your order has shipped and should arrive on Thursday, between nine and noon.",
    "I'm sorry, I didn't catch that. Could you say the account number again, slowly?",
]
# Output formats by extension: what soundfile (libsndfile) writes, with the sample type used.
AUDIO_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                 ".mp3": ("MP3", "MPEG_LAYER_III"), ".aiff": ("AIFF", "PCM_16")}


class UsageError(Qwen3TTSError):
    """A command-line argument that cannot work (found before any model is loaded)."""


class Interrupted(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that the same clean-up runs."""

    exit_status = 143


# -- argument types: one line each, found by argparse before anything runs -----------------------
def _int_at_least(low: int, what: str = ""):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}{what}, got {value}")
        return value

    return parse


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the error and where to read more), exit 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


# -- output files -----------------------------------------------------------------------------
def _output_format(path: Path) -> tuple[str, str]:
    fmt = AUDIO_FORMATS.get(path.suffix.lower())
    if fmt is None:
        what = f"extension {path.suffix!r}" if path.suffix else "no extension"
        raise UsageError(f"output {path} has {what}: name it with one of {', '.join(AUDIO_FORMATS)}")
    import soundfile as sf

    if fmt[0] not in sf.available_formats():
        raise UsageError(f"this libsndfile ({sf.__libsndfile_version__}) cannot write {fmt[0]}: use .wav or .flac")
    return fmt


def _check_output(path: Path, *, audio: bool) -> None:
    """Everything that would make writing `path` fail, found before any model is loaded."""
    if path.is_dir():
        raise UsageError(f"output {path} is a directory: give a file name, e.g. {path / 'out.wav'}")
    if audio:
        _output_format(path)
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"output {path} lies under {ancestor}, which is a file, not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write to {ancestor}: choose another output path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"output {path} exists and is read-only: choose another output path")


class AtomicOutput:
    """A temporary file beside `path` (created now: proves the folder is writable), moved onto
    `path` by `commit()`, removed by `discard()`: the user's file changes only when there is a
    complete new one."""

    def __init__(self, path: Path):
        self.path = path
        self.created = []  # folders made for it, removed again if nothing is committed
        folder = path.parent
        while not folder.exists():
            self.created.append(folder)
            folder = folder.parent
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        except OSError as exc:
            self._remove_created()
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}: choose another output path") from None
        os.close(fd)
        self.tmp = Path(tmp)
        self.committed = False

    def commit(self) -> None:
        if self.path.exists():  # keep the permissions the user gave the file it replaces
            os.chmod(self.tmp, self.path.stat().st_mode & 0o7777)
        else:
            os.chmod(self.tmp, 0o666 & ~_umask())
        os.replace(self.tmp, self.path)
        self.committed = True

    def discard(self) -> None:
        if not self.committed:
            self.tmp.unlink(missing_ok=True)
            self._remove_created()

    def _remove_created(self) -> None:
        for folder in self.created:  # deepest first
            try:
                folder.rmdir()
            except OSError:
                break


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- text ---------------------------------------------------------------------------------------
def _read_text(args) -> str:
    if args.text_file is not None and args.text is not None:
        raise UsageError("give the text or --text-file, not both")
    source = args.text_file if args.text_file is not None else args.text
    if source is None:
        raise UsageError("no text: give it as an argument, '-' to read standard input, or --text-file PATH")
    if source == "-" and args.text_file is None or args.text_file == "-":
        data, where = sys.stdin.buffer.read(), "standard input"
    elif args.text_file is not None:
        try:
            data, where = Path(source).read_bytes(), source
        except OSError as exc:
            raise UsageError(f"cannot read --text-file {source}: {exc.strerror or exc}") from None
    else:
        return source
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{where} is not UTF-8 text (byte {exc.start}): convert it to UTF-8") from None


def _stdin_fragments():
    """Standard input as it arrives (an LLM CLI piping tokens), decoded as UTF-8 piece by piece."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    while True:
        data = os.read(sys.stdin.fileno(), 4096)
        text = decoder.decode(data, final=not data)
        if text:
            yield text
        if not data:
            return


# -- commands -----------------------------------------------------------------------------------
def _open(args):
    from .manifest import default_build_dir
    from .stream import StreamOptions, Synthesizer

    build_dir = args.build_dir or default_build_dir(args.model)
    options = StreamOptions(chunk_ramp=tuple(args.chunk_ramp), pcm16=getattr(args, "pcm16", False))
    synth = Synthesizer.open(args.model, build_dir, args.backend, options=options, fallback=args.fallback)
    if not args.no_warmup:
        synth.warmup()
    return synth


def _voice(args, synth=None):
    from .prompt import Voice

    non_streaming = args.non_streaming_text
    if args.official_layout and synth is not None:  # what the official generate_* calls default to
        non_streaming = synth.config.variant != "base"
    if getattr(args, "voice", None):
        return _cloned_voice(args, synth, non_streaming)
    return Voice(speaker=args.speaker, language=args.language, instruct=args.instruct, non_streaming_text=non_streaming)


# -- voice cloning: `voice create` and `say --voice` ------------------------------------------------
def _voice_file(text: str) -> Path:
    """argparse type of --voice: an existing file, checked before any model loads."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"voice file not found: {text} (make one with `qwen3-tts-trt voice create`)")
    return path


def _cloned_voice(args, synth, non_streaming: bool):
    from dataclasses import replace

    from .prompt import Voice

    if args.speaker or args.instruct:
        raise UsageError("--voice clones a voice; it cannot be combined with --speaker or --instruct")
    voice = Voice.load(args.voice, synth.config if synth is not None else None)
    language = args.language if args.language != "auto" else voice.language  # the file's unless one is given
    return replace(voice, language=language, non_streaming_text=non_streaming)


def _voice_create(args) -> int:
    from .voice import VoiceMaker, save_voice

    output = Path(args.output).expanduser()
    if output.suffix != ".voice":
        raise UsageError(f"the voice file name must end in .voice (got {output.name}); e.g. -o {output.stem}.voice")
    if output.parent and not output.parent.is_dir():
        raise UsageError(f"folder {output.parent} does not exist; create it or choose another -o")
    if not args.x_vector_only and not (args.ref_text and args.ref_text.strip()):
        raise UsageError("ICL cloning needs the transcript of the reference: --ref-text \"...\" "
                         "(or --x-vector-only to clone from the speaker embedding alone)")
    from .voice import reference_audio

    reference_audio(args.audio)  # a bad recording fails here, before the model loads
    t0 = time.perf_counter()
    from .manifest import default_build_dir

    build_dir = args.build_dir or default_build_dir(args.model)
    maker = VoiceMaker.open(args.model, build_dir, args.backend)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    voice = maker.make(args.audio, args.ref_text, x_vector_only=args.x_vector_only, language=args.language)
    t_encode = time.perf_counter() - t0
    save_voice(voice, output)
    if not args.quiet:
        mode = "x-vector only" if voice.ref_codes is None else f"ICL, {voice.ref_codes.shape[0]} reference frames"
        print(f"wrote {output}: {mode}, for {voice.made_for.model} ({voice.made_for.variant} {voice.made_for.size}); "
              f"backend {maker.encoders.name}, load {t_load:.1f} s, encode {t_encode * 1000:.0f} ms")
    return 0


def _add_voice_commands(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    voice = sub.add_parser("voice", help="clone a voice from a recording (Base checkpoints)", formatter_class=fmt)
    actions = voice.add_subparsers(dest="voice_command", required=True, metavar="{create}")
    create = actions.add_parser(
        "create", formatter_class=fmt, help="encode a reference recording once into a reusable .voice file",
        description="Encode a 1 to 30 s recording (WAV, FLAC or OGG; any rate from 8 to 192 kHz, mixed to mono) "
                    "into NAME.voice: the x-vector, and for ICL the reference codes and transcript. "
                    "Speak with it: qwen3-tts-trt say --voice NAME.voice ...")
    create.add_argument("audio", help="the reference recording")
    create.add_argument("--ref-text", help="transcript of the recording (needed for ICL, the default mode)")
    create.add_argument("--x-vector-only", action="store_true",
                        help="clone from the speaker embedding alone (no transcript; weaker likeness)")
    create.add_argument("-o", "--output", required=True, help="the voice file to write (NAME.voice)")
    create.add_argument("-m", "--model", required=True, help="Base checkpoint directory or hub id")
    create.add_argument("--language", default="auto", help="language the voice speaks by default")
    create.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                        help="auto: the build's engines, else its ONNX graphs; PyTorch without a build")
    create.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    create.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    create.set_defaults(func=_voice_create)


# -- serving: `serve` ------------------------------------------------------------------------------
def _add_serve_command(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser(
        "serve", formatter_class=fmt, help="serve many conversations: an OpenAI-compatible speech API on Ray Serve",
        description="Start Ray on this machine (or join a cluster with --address) and serve POST /v1/audio/speech "
                    "(OpenAI-compatible), the WebSocket /v1/audio/speech/stream, GET /v1/voices and /health until "
                    "Ctrl-C. Needs the serve extra: pip install -e \".[onnx,serve]\".")
    p.add_argument("-m", "--model", required=True, help="checkpoint directory (present on every node) or hub id")
    p.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                   help="auto: the build's TensorRT engines, else its ONNX graphs; PyTorch without a build")
    p.add_argument("--fallback", action="store_true", help="run the next backend if the build cannot run here")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 to listen on every interface)")
    p.add_argument("--port", type=_int_at_least(1), default=8000, help="HTTP port")
    p.add_argument("--voice-dir", help="a folder of NAME.voice files, offered as voice \"NAME\"")
    p.add_argument("--replicas", type=_int_at_least(1), default=1, help="engines (one per GPU in production)")
    p.add_argument("--max-replicas-per-node", type=_int_at_least(0), default=0,
                   help="at most this many replicas on one node (1 spreads them over the machines; 0: no limit)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPU cores Ray reserves per replica (may be fractional)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (1 for TensorRT engines)")
    p.add_argument("--threads", type=_int_at_least(1), default=1, help="OMP_NUM_THREADS of each replica")
    p.add_argument("--streams", type=_int_at_least(1),
                   help="streams each replica runs at once, in shared engine calls (default: the build's --max-batch)")
    p.add_argument("--metrics-port", type=_int_at_least(1),
                   help="serve this node's Prometheus metrics here (Ray picks a port if not given)")
    p.add_argument("--haproxy", action="store_true",
                   help="Ray Serve's HAProxy mode instead of its Python proxy (less added latency; for the cluster "
                        "this command starts; on a cluster of your own, set RAY_SERVE_ENABLE_HA_PROXY=1 for `ray start`)")
    p.add_argument("--address", help="join this Ray cluster (\"auto\": the one `ray start` runs here) instead of "
                                     "starting one")
    p.set_defaults(func=_serve)


def _serve(args) -> int:
    # Imported here, not at the top: imports flow serve -> runtime, and the CLI only dispatches to
    # the serving layer (Ray is an optional extra that say/bench/voice never need).
    try:
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"serving needs Ray Serve ({exc.name} is missing): pip install -e \".[serve]\"") from None
    from qwen3_tts_trt.serve import ServeConfig, run_local
    from .checkpoint import resolve_checkpoint

    resolve_checkpoint(args.model)  # a wrong path is one line here, not a replica failing in Ray's logs
    if args.build_dir and not Path(args.build_dir).is_dir():
        raise UsageError(f"build folder {args.build_dir} does not exist: run ./build.sh {args.model} first")
    if args.voice_dir and not Path(args.voice_dir).is_dir():
        raise UsageError(f"voice folder {args.voice_dir} does not exist")
    config = ServeConfig(model=args.model, build_dir=args.build_dir, backend=args.backend, fallback=args.fallback,
                         voice_dir=args.voice_dir, replicas=args.replicas,
                         max_replicas_per_node=args.max_replicas_per_node, num_cpus=args.num_cpus,
                         num_gpus=args.num_gpus, threads=args.threads, capacity=args.streams or 0)
    if args.haproxy and args.address:
        raise UsageError("--haproxy applies to the cluster this command starts; on a cluster of your own, set "
                         "RAY_SERVE_ENABLE_HA_PROXY=1 in the environment of `ray start` on every node")
    return run_local(config, args.host, args.port, address=args.address, metrics_port=args.metrics_port,
                     haproxy=args.haproxy)


def _params(synth, args, seed=None):
    overrides = dict(max_new_tokens=args.max_new_tokens, seed=args.seed if seed is None else seed)
    return synth.greedy_params(**overrides) if args.greedy else synth.default_params(**overrides)


def _list_voices(args) -> int:
    from .checkpoint import resolve_checkpoint
    from .config import load_model_config

    cfg = load_model_config(resolve_checkpoint(args.model))
    print(f"{args.model}: {cfg.variant} {cfg.size}")
    if cfg.speakers:
        dialect = {k: f" ({v})" if v else "" for k, v in cfg.speaker_dialects.items()}
        print("speakers: " + ", ".join(f"{s}{dialect.get(s, '')}" for s in cfg.speakers))
    elif cfg.variant == "base":
        print("speakers: none (a Base checkpoint clones a voice from a reference)")
    else:
        print("speakers: none (describe the voice with --instruct)")
    print("languages: " + ", ".join(cfg.public_languages))
    return 0


def _say(args) -> int:
    if args.list_voices:
        return _list_voices(args)
    if args.stdin_stream and (args.text is not None or args.text_file is not None):
        raise UsageError("--stdin-stream reads the text from standard input: give no text or --text-file")
    text = None if args.stdin_stream else _read_text(args)
    output = Path(args.output)
    _check_output(output, audio=True)
    fmt, subtype = _output_format(output)
    import soundfile as sf

    target = AtomicOutput(output)  # before loading: proves the folder takes a new file
    samples = 0
    try:
        t0 = time.perf_counter()
        synth = _open(args)
        t_load = time.perf_counter() - t0
        voice, params = _voice(args, synth), _params(synth, args)
        with sf.SoundFile(target.tmp, "w", samplerate=synth.sample_rate, channels=1, format=fmt, subtype=subtype) as f:
            try:
                chunks = synth.stream_text(_stdin_fragments(), voice, params) if args.stdin_stream \
                    else synth.stream(text, voice, params)
                for chunk in chunks:
                    f.write(chunk.samples)
                    samples += len(chunk.samples)
            except KeyboardInterrupt:
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not break the clean-up
                raise
        if not samples:
            raise Qwen3TTSError(f"no audio was made (the model ended at once); {output} was left as it was")
        target.commit()
    except KeyboardInterrupt as stop:
        if samples:
            target.commit()
            stop.note = f"wrote {output} with the {samples / synth.sample_rate:.2f} s of audio made so far"
        else:
            target.discard()
            stop.note = f"no audio yet; {output} was left as it was"
        raise
    finally:
        target.discard()  # a no-op after commit
    m = synth.last_metrics
    if not args.quiet:
        print(f"wrote {output}: {m.audio_seconds:.2f} s of audio, {m.frames} frames, end: {m.end_reason}; "
              f"backend {m.backend}, load {t_load:.1f} s, first chunk {m.ttfc_ms:.0f} ms, xRT {m.xrt:.1f}, "
              f"host {m.host_us_per_frame:.0f} us/frame")
    return 0


def _percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def bench_report(runs: list[dict]) -> dict:
    if not runs:
        raise UsageError("no runs were made: give --runs 1 or more")
    ttfc = [r["ttfc_ms"] for r in runs if r["ttfc_ms"] is not None] or [float("nan")]
    return dict(
        runs=len(runs),
        ttfc_ms_p50=_percentile(ttfc, 50), ttfc_ms_p95=_percentile(ttfc, 95),
        ms_per_frame=statistics.median(r["ms_per_frame"] for r in runs),
        xrt=statistics.median(r["xrt"] for r in runs),
        host_us_per_frame=statistics.median(r["host_us_per_frame"] for r in runs),
        engine_ms_per_frame=statistics.median(1000 * r["engine_seconds"] / max(r["frames"], 1) for r in runs),
        frames=sum(r["frames"] for r in runs),
    )


def _bench(args) -> int:
    if args.json:
        _check_output(Path(args.json), audio=False)
    synth = _open(args)
    runs = []
    for i in range(args.runs):
        text = BENCH_TEXTS[i % len(BENCH_TEXTS)]
        for _ in synth.stream(text, _voice(args, synth), _params(synth, args, seed=args.seed + i)):
            pass
        runs.append(synth.last_metrics.to_dict())
    report = dict(bench_report(runs), backend=synth.backend_name, fallback=synth.backend.fallback, model=args.model,
                  greedy=args.greedy, max_new_tokens=args.max_new_tokens, per_run=runs)
    rows = [("TTFC p50", f"{report['ttfc_ms_p50']:.1f} ms"), ("TTFC p95", f"{report['ttfc_ms_p95']:.1f} ms"),
            ("per frame", f"{report['ms_per_frame']:.2f} ms"), ("engine per frame", f"{report['engine_ms_per_frame']:.2f} ms"),
            ("host overhead per frame", f"{report['host_us_per_frame']:.0f} us"), ("xRT", f"{report['xrt']:.2f}"),
            ("frames", str(report["frames"]))]
    print(f"backend {report['backend']}, {report['runs']} runs")
    for k, v in rows:
        print(f"  {k:<24}{v}")
    if args.json:
        target = AtomicOutput(Path(args.json))
        try:
            target.tmp.write_text(json.dumps(report, indent=1))
            target.commit()
        finally:
            target.discard()
        print(f"wrote {args.json}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", required=True, help="checkpoint directory or hub id")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                   help="auto: the build's TensorRT engines, else its ONNX graphs; PyTorch without a build")
    p.add_argument("--fallback", action="store_true",
                   help="if the build cannot run here, run the next backend (said on stderr) instead of failing")
    p.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    p.add_argument("--speaker", help="CustomVoice speaker name (--list-voices shows them)")
    p.add_argument("--language", default="auto", help="language name, or auto (--list-voices shows them)")
    p.add_argument("--instruct", help="voice description (VoiceDesign, 1.7B CustomVoice)")
    p.add_argument("--greedy", action="store_true",
                   help="argmax decoding (with the checkpoint's repetition penalty) instead of sampling")
    p.add_argument("--seed", type=_int_at_least(0), default=0, help="random seed for sampling")
    p.add_argument("--max-new-tokens", type=_int_at_least(2, " (one frame needs two)"), default=2048,
                   help="codebook-0 samples per text piece, as the official max_new_tokens (frames = this - 1)")
    p.add_argument("--chunk-ramp", type=_int_at_least(1), nargs="+", default=[1, 2, 4, 8, 10],
                   help="frames per audio chunk, in order; the last size repeats")
    layout = p.add_mutually_exclusive_group()
    layout.add_argument("--non-streaming-text", action="store_true",
                        help="feed the whole text in the prefill (official non_streaming_mode=True)")
    layout.add_argument("--official-layout", action="store_true",
                        help="the official generate_* default: whole text in the prefill for CustomVoice and "
                             "VoiceDesign, streaming text for clones (default here: streaming text, lower latency)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up run after loading")


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
    sub = ap.add_subparsers(dest="command", required=True, metavar="{say,bench,voice,serve}")
    say = sub.add_parser("say", help="synthesize text to an audio file, streaming", formatter_class=fmt,
                         description="Synthesize text to an audio file (.wav, .flac, .ogg, .mp3, .aiff).")
    say.add_argument("text", nargs="?", help="the text; '-' reads standard input")
    say.add_argument("--stdin-stream", action="store_true",
                     help="speak standard input while it is still being written (e.g. piped from an LLM); "
                          "audio starts after the first word")
    say.add_argument("-f", "--text-file", help="read the text from this UTF-8 file ('-': standard input)")
    say.add_argument("-o", "--output", default="out.wav", help="audio file to write (format from the extension)")
    say.add_argument("--list-voices", action="store_true", help="list the checkpoint's speakers and languages, and exit")
    say.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    say.add_argument("--voice", type=_voice_file, help="a cloned voice (NAME.voice from `voice create`; Base checkpoints)")
    _common(say)
    say.set_defaults(func=_say)
    bench = sub.add_parser("bench", help="time to first chunk, ms per frame, xRT, host overhead", formatter_class=fmt)
    bench.add_argument("--runs", type=_int_at_least(1), default=6, help="utterances to time")
    bench.add_argument("--json", help="write the report here")
    _common(bench)
    bench.set_defaults(func=_bench)
    _add_voice_commands(sub)
    _add_serve_command(sub)
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


if __name__ == "__main__":
    sys.exit(main())
