"""Who speaks: the `Voice` value type, the rule that a cloned voice fits only the model it was made
for, and voice cloning from a recording: reference audio in, a reusable `.voice` file out.

    audio file / array ─> mono, 24 kHz (soxr) ─> speaker encoder ─> x-vector      ┐
                                               └> codec encoder  ─> ref codes (ICL) ┴> Voice ─> NAME.voice

A voice is computed once: the file holds the x-vector, the reference codes and transcript, the
mode and language, and the model it was made for (name, variant, size, config hash). Loading it
for another model is refused, because an x-vector only means something to the speaker encoder
and talker that made it.

Reference audio limits (why):
  - 1 s at least: below that the x-vector's attentive statistics rest on under 94 mel frames and
    ICL on under 13 codec frames; voice-cloning recipes use 3 to 10 s.
  - 30 s at most: ICL puts 12.5 reference frames per second into the talker prompt, so 30 s is
    375 of the default 512 prefill positions, with the room left for the text; and the speech
    tokenizer's encoder attends over the whole clip, so its cost grows with the square.
  - 8 kHz to 192 kHz, 1 to 8 channels (mixed to mono by the mean, as the official code does).
  - Digital silence (peak below one 16-bit step) and non-finite samples are refused: they give
    an x-vector of nothing and codes of silence, and no error later would say why.
Resampling is soxr's HQ mode with the output length librosa gives (ceil(n * 24000 / rate)): what
the official code's `librosa.resample` does, so the same file gives the same samples.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ModelConfig, load_model_config
from .contract import REF_SAMPLE_RATE, EngineLimits
from .errors import PromptError, VoiceError

SAMPLE_RATE = REF_SAMPLE_RATE
MIN_SECONDS, MAX_SECONDS = EngineLimits.min_ref_seconds, EngineLimits.max_ref_seconds
MIN_RATE, MAX_RATE, MAX_CHANNELS = 8000, 192000, 8
FILE_FORMATS = {"WAV": "WAV", "WAVEX": "WAV", "FLAC": "FLAC", "OGG": "OGG"}
SILENCE_PEAK = 1.0 / 32768  # one 16-bit step
VOICE_FORMAT, VOICE_VERSION = "qwen3-tts-trt.voice", "1"
VOICE_SUFFIX = ".voice"
CONVERT_HINT = "convert it to WAV, FLAC or OGG first (e.g. ffmpeg -i INPUT -ar 24000 -ac 1 ref.wav)"


# -- the voice ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class VoiceOrigin:
    """The model a cloned voice was made for (x-vectors mean something only to their own model)."""

    model: str
    variant: str
    size: str
    config_hash: str
    hidden_size: int

    def to_dict(self) -> dict:
        return dict(model=self.model, variant=self.variant, size=self.size, config_hash=self.config_hash,
                    hidden_size=self.hidden_size)


@dataclass(frozen=True)
class Voice:
    """Who speaks, and how. Which fields apply depends on the checkpoint variant.

    Cloned voices (Base): `Voice.from_audio(...)` encodes a recording once; `voice.save(path)` and
    `Voice.load(path)` keep it in a .voice file (below).
    """

    speaker: str | None = None  # CustomVoice
    language: str = "auto"
    instruct: str | None = None  # VoiceDesign, 1.7B CustomVoice
    xvector: torch.Tensor | None = None  # Base clone: speaker embedding [H]
    ref_codes: torch.Tensor | None = None  # Base ICL clone: reference codes [F, 16]
    ref_text: str | None = None  # Base ICL clone: transcript of the reference
    non_streaming_text: bool = False  # feed the whole text in the prefill (official non_streaming_mode)
    made_for: VoiceOrigin | None = None  # cloned voices: the model that encoded them (checked at use)

    @classmethod
    def from_audio(cls, audio, ref_text: str | None = None, *, model=None, encoders=None,
                   sample_rate: int | None = None, x_vector_only: bool = False, language: str = "auto",
                   build_dir=None, backend: str = "auto") -> "Voice":
        """Encode reference audio (a WAV/FLAC/OGG path, or an array with `sample_rate`) into a voice.
        Give `model` (checkpoint; with `build_dir` to run its engines) or ready `encoders`."""
        if encoders is None:
            if model is None:
                raise PromptError("Voice.from_audio needs the Base checkpoint: model=...")
            encoders = VoiceMaker.open(model, build_dir, backend).encoders
        return make_voice(encoders, audio, ref_text, sample_rate=sample_rate, x_vector_only=x_vector_only,
                          language=language)

    @classmethod
    def load(cls, path, model=None) -> "Voice":
        """Read a .voice file; with `model` (a checkpoint or its ModelConfig), refuse a voice made for another."""
        config = model if isinstance(model, ModelConfig) or model is None else None
        if model is not None and config is None:
            from .checkpoint import resolve_checkpoint

            config = load_model_config(resolve_checkpoint(model))
        return load_voice(path, config)

    def save(self, path):
        """Write this cloned voice to a .voice file (atomically); returns the path."""
        return save_voice(self, path)


# -- reference audio ---------------------------------------------------------------------------
def read_audio_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A WAV, FLAC or OGG file -> (float32 [samples, channels], sample rate)."""
    import soundfile as sf

    p = Path(path).expanduser()
    if not p.is_file():
        raise VoiceError(f"reference audio not found: {p}")
    if p.stat().st_size == 0:
        raise VoiceError(f"reference audio {p} is an empty file; record or export the clip again")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise VoiceError(f"cannot read {p} as audio ({exc}); {CONVERT_HINT}") from exc
    if info.format not in FILE_FORMATS:
        raise VoiceError(f"{p} is {info.format_info or info.format} audio, which is not supported; {CONVERT_HINT}")
    try:
        data, rate = sf.read(str(p), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise VoiceError(f"cannot decode {p} (truncated or corrupt?): {exc}; {CONVERT_HINT}") from exc
    if data.shape[0] == 0:
        raise VoiceError(f"reference audio {p} holds no samples; record or export the clip again")
    return data, int(rate)


def _as_samples_channels(audio) -> np.ndarray:
    """An array from code -> float32 [samples, channels]. PCM16 is scaled by 1/32768; a 2-D array
    is [samples, channels] (soundfile's layout), or [channels, samples] when that is the only
    reading with at most 8 channels."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().numpy()
    a = np.asarray(audio)
    if a.dtype == np.int16:
        a = a.astype(np.float32) / 32768.0
    elif np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32, copy=False)
    else:
        raise VoiceError(f"reference audio must be float or int16 PCM samples, not {a.dtype}")
    if a.ndim == 1:
        return a[:, None]
    if a.ndim != 2:
        raise VoiceError(f"reference audio must be [samples] or [samples, channels]; got shape {a.shape}")
    if a.shape[1] > MAX_CHANNELS and a.shape[0] <= MAX_CHANNELS:
        a = a.T
    return a


def reference_audio(audio, sample_rate: int | None = None) -> np.ndarray:
    """A file path or an array (with its `sample_rate`) -> float32 mono PCM at 24 kHz, checked."""
    if isinstance(audio, (str, os.PathLike)):
        if sample_rate is not None:
            raise VoiceError("sample_rate is read from the file; pass it only with an array")
        data, rate = read_audio_file(audio)
        where = str(audio)
    else:
        if sample_rate is None:
            raise VoiceError("an audio array needs its sample_rate (e.g. sample_rate=16000)")
        data, rate, where = _as_samples_channels(audio), int(sample_rate), "the reference audio"
    if not MIN_RATE <= rate <= MAX_RATE:
        raise VoiceError(f"{where} has a sample rate of {rate} Hz; supported: {MIN_RATE} to {MAX_RATE} Hz "
                         "(resample it first)")
    if data.shape[1] > MAX_CHANNELS:
        raise VoiceError(f"{where} has {data.shape[1]} channels; at most {MAX_CHANNELS} are supported "
                         "(mix it down to mono first)")
    seconds = data.shape[0] / rate
    if seconds < MIN_SECONDS:
        raise VoiceError(f"{where} is {seconds:.2f} s long; a voice needs at least {MIN_SECONDS:g} s of speech "
                         "(3 to 10 s works best)")
    if seconds > MAX_SECONDS:
        raise VoiceError(f"{where} is {seconds:.1f} s long; at most {MAX_SECONDS:g} s is supported "
                         "(cut a 3 to 10 s clip of clear speech)")
    if not np.isfinite(data).all():
        raise VoiceError(f"{where} holds NaN or infinite samples; export the clip again")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if float(np.abs(mono).max()) < SILENCE_PEAK:
        raise VoiceError(f"{where} is digital silence (peak below one 16-bit step); record the speaker again")
    return resample(mono, rate)


def resample(mono: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """soxr HQ, cut or zero-padded to ceil(n * target / rate) samples (librosa.resample's length)."""
    if rate == target:
        return np.ascontiguousarray(mono, dtype=np.float32)
    import soxr

    out = soxr.resample(mono, rate, target, quality="HQ")
    n = int(np.ceil(mono.shape[0] * (float(target) / rate)))
    out = out[:n] if out.shape[0] >= n else np.pad(out, (0, n - out.shape[0]))
    return np.ascontiguousarray(out, dtype=np.float32)


# -- making a voice ------------------------------------------------------------------------------
def origin_of(config: ModelConfig, model_name: str) -> VoiceOrigin:
    return VoiceOrigin(model=model_name, variant=config.variant, size=config.size, config_hash=config.config_hash,
                       hidden_size=config.talker.hidden_size)


def make_voice(encoders, audio, ref_text: str | None = None, *, sample_rate: int | None = None,
               x_vector_only: bool = False, language: str = "auto") -> Voice:
    """Encode a reference once into a Voice (x-vector; plus reference codes and transcript for ICL).

    `encoders` is a `runtime.backends.encoders.VoiceEncoders` (any backend)."""
    if not x_vector_only and not (ref_text and ref_text.strip()):
        raise VoiceError("ICL cloning needs the transcript of the reference (ref_text); "
                         "pass it, or use x-vector-only mode (--x-vector-only)")
    if x_vector_only and ref_text:
        ref_text = None  # the official x-vector-only mode ignores it too
    pcm = reference_audio(audio, sample_rate)
    xvector = encoders.xvector(pcm)
    codes = None if x_vector_only else encoders.ref_codes(pcm)
    return Voice(language=language, xvector=xvector, ref_codes=codes, ref_text=ref_text,
                 made_for=origin_of(encoders.config, encoders.model_name))


# -- .voice files --------------------------------------------------------------------------------
def save_voice(voice: Voice, path: str | os.PathLike) -> Path:
    """Write `voice` as safetensors + JSON metadata; atomically (a failed write leaves no file)."""
    from safetensors.torch import save_file

    if voice.xvector is None or voice.made_for is None:
        raise VoiceError("only a cloned voice (Voice.from_audio or Voice.load) can be saved to a .voice file")
    tensors = {"xvector": torch.as_tensor(voice.xvector, dtype=torch.float32).reshape(-1).contiguous()}
    if voice.ref_codes is not None:
        tensors["ref_codes"] = torch.as_tensor(voice.ref_codes, dtype=torch.int64).contiguous()
    meta = dict(format=VOICE_FORMAT, version=VOICE_VERSION, mode="icl" if voice.ref_codes is not None else "x_vector_only",
                ref_text=voice.ref_text or "", language=voice.language or "auto",
                non_streaming_text=json.dumps(voice.non_streaming_text), model=json.dumps(voice.made_for.to_dict()),
                created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    out = Path(path).expanduser()
    if out.is_dir():
        raise VoiceError(f"{out} is a directory; give a file name such as {out / 'speaker.voice'}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def load_voice(path: str | os.PathLike, config: ModelConfig | None = None) -> Voice:
    """Read a .voice file; with `config`, refuse it unless it was made for that model."""
    from safetensors import SafetensorError, safe_open

    p = Path(path).expanduser()
    if not p.is_file():
        raise VoiceError(f"voice file not found: {p}")
    try:
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VoiceError(f"{p} is not a voice file (or it is corrupt): {exc}") from exc
    if meta.get("format") != VOICE_FORMAT or "xvector" not in tensors:
        raise VoiceError(f"{p} is not a qwen3-tts-trt voice file; make one with `qwen3-tts-trt voice create`")
    if meta.get("version") != VOICE_VERSION:
        raise VoiceError(f"{p} is voice file version {meta.get('version')}; this runtime reads version "
                         f"{VOICE_VERSION}: make the voice again")
    try:
        origin = VoiceOrigin(**json.loads(meta["model"]))
        non_streaming = bool(json.loads(meta.get("non_streaming_text", "false")))
    except (KeyError, TypeError, ValueError) as exc:
        raise VoiceError(f"{p} has unreadable metadata ({exc}); make the voice again") from exc
    icl = meta.get("mode") == "icl"
    if icl and "ref_codes" not in tensors:
        raise VoiceError(f"{p} says ICL but holds no reference codes; make the voice again")
    voice = Voice(language=meta.get("language") or "auto", xvector=tensors["xvector"],
                  ref_codes=tensors["ref_codes"] if icl else None, ref_text=(meta.get("ref_text") or None) if icl else None,
                  non_streaming_text=non_streaming, made_for=origin)
    if config is not None:
        check_voice_fits(voice, config, where=str(p))
    return voice


def check_voice_fits(voice: Voice, config: ModelConfig, where: str = "the voice") -> None:
    """A voice made for another model is refused, with both models named."""
    o = voice.made_for
    if o is None or o.config_hash == config.config_hash:
        return
    if config.variant != "base":
        why = f"this model is {config.variant}; cloned voices need a Base checkpoint"
    elif o.hidden_size != config.talker.hidden_size or o.size != config.size:
        why = f"it was made for a {o.size} model (x-vector of {o.hidden_size}); this one is {config.size} " \
              f"({config.talker.hidden_size})"
    else:
        why = f"its config hash is {o.config_hash}; this model's is {config.config_hash}"
    raise VoiceError(f"{where} was made for {o.model} ({o.variant} {o.size}) and cannot be used with this model: "
                     f"{why}. Make the voice again with this model (qwen3-tts-trt voice create ... -m MODEL)")


class VoiceLibrary:
    """Voices for a long-lived service: a `.voice` file, or a recording with its transcript that is
    encoded the first time it is asked for and cached (keyed by file, size, mtime and settings),
    so the same audio is never encoded twice. Encoders are opened on first need.

        library = VoiceLibrary(checkpoint, build_dir)
        voice = library.get("alice.voice")                        # a file from `voice create`
        voice = library.get(("bob.wav", "Transcript of bob.wav"))   # encoded once, then cached
        voice = library.get({"audio": "bob.wav", "x_vector_only": True, "language": "english"})
    """

    def __init__(self, checkpoint, build_dir: str | os.PathLike | None = None, backend: str = "auto"):
        from .checkpoint import resolve_checkpoint

        self.checkpoint, self.build_dir, self.backend = checkpoint, build_dir, backend
        self.config = load_model_config(resolve_checkpoint(checkpoint))
        self._maker: VoiceMaker | None = None
        self._cache: dict[tuple, Voice] = {}

    def get(self, voice) -> Voice:
        if isinstance(voice, Voice):
            check_voice_fits(voice, self.config)
            return voice
        if isinstance(voice, (str, os.PathLike)) and str(voice).endswith(VOICE_SUFFIX):
            path = Path(voice).expanduser()
            key = ("file", *self._stamp(path))
            if key not in self._cache:
                self._cache[key] = load_voice(path, self.config)
            return self._cache[key]
        if isinstance(voice, tuple) and len(voice) == 2:
            voice = dict(audio=voice[0], ref_text=voice[1])
        if not isinstance(voice, dict) or "audio" not in voice:
            raise VoiceError("a voice is a Voice, a .voice file, (recording, transcript) or "
                             "{'audio': recording, 'ref_text': ..., 'x_vector_only': ..., 'language': ...}")
        settings = dict(voice)
        audio = settings.pop("audio")
        unknown = set(settings) - {"ref_text", "x_vector_only", "language", "sample_rate"}
        if unknown:
            raise VoiceError(f"unknown voice settings: {', '.join(sorted(unknown))}")
        if not isinstance(audio, (str, os.PathLike)):
            raise VoiceError("a cached voice is made from a recording file; encode arrays with Voice.from_audio")
        key = ("audio", *self._stamp(Path(audio).expanduser()), json.dumps(settings, sort_keys=True, default=str))
        if key not in self._cache:
            if self._maker is None:
                self._maker = VoiceMaker.open(self.checkpoint, self.build_dir, self.backend)
            self._cache[key] = self._maker.make(audio, **settings)
        return self._cache[key]

    @staticmethod
    def _stamp(path: Path) -> tuple:
        try:
            st = path.resolve().stat()
        except OSError:
            raise VoiceError(f"voice not found: {path}") from None
        return str(path.resolve()), st.st_size, st.st_mtime_ns


@dataclass
class VoiceMaker:
    """Encoders opened once, voices made many times: `VoiceMaker.open(model).make("ref.wav", "...")`."""

    encoders: object

    @classmethod
    def open(cls, checkpoint, build_dir: str | os.PathLike | None = None, backend: str = "auto") -> "VoiceMaker":
        from .backends.encoders import open_voice_encoders

        return cls(open_voice_encoders(backend, checkpoint, build_dir))

    def make(self, audio, ref_text: str | None = None, **kwargs) -> Voice:
        return make_voice(self.encoders, audio, ref_text, **kwargs)
