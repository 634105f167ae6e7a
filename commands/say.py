"""`qwen3-tts-trt say`: text (an argument, a file, or standard input as it is written) to an audio file.

Ctrl-C (or SIGTERM) keeps the audio made so far as a valid file (main.py maps it to the exit status).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from qwen3_tts_trt.runtime.errors import Qwen3TTSError

from .errors import UsageError
from .options import add_synthesis_options, open_synthesizer, params_of, voice_of
from .output_file import AtomicOutput, check_output, output_format


def add_parser(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
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
    add_synthesis_options(say)
    say.set_defaults(func=run)


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


def _voice_file(text: str) -> Path:
    """argparse type of --voice: an existing file, checked before any model loads."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"voice file not found: {text} (make one with `qwen3-tts-trt voice create`)")
    return path


def _list_voices(args) -> int:
    from qwen3_tts_trt.runtime.checkpoint import resolve_checkpoint
    from qwen3_tts_trt.runtime.config import load_model_config

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


def run(args) -> int:
    if args.list_voices:
        return _list_voices(args)
    if args.stdin_stream and (args.text is not None or args.text_file is not None):
        raise UsageError("--stdin-stream reads the text from standard input: give no text or --text-file")
    text = None if args.stdin_stream else _read_text(args)
    output = Path(args.output)
    check_output(output, audio=True)
    fmt, subtype = output_format(output)
    import soundfile as sf

    target = AtomicOutput(output)  # before loading: proves the folder takes a new file
    samples = 0
    try:
        t0 = time.perf_counter()
        synth = open_synthesizer(args)
        t_load = time.perf_counter() - t0
        voice, params = voice_of(args, synth), params_of(synth, args)
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
