"""Which voice a request names: a CustomVoice speaker, a `.voice` file in the server's voice
folder, or (Base checkpoints) reference audio sent with the request, encoded once and kept.

Request fields follow vLLM-Omni's and SGLang-Omni's speech APIs: `voice`, `language`,
`instructions`, `task_type` (CustomVoice | VoiceDesign | Base), and for cloning `ref_audio`
(base64, or a `data:audio/...;base64,` URL), `ref_text`, `x_vector_only_mode`. Reference audio is
never fetched from a URL or read from a path the client names: the server would otherwise read
files or reach hosts on a client's behalf. Voices for everyone go into the voice folder instead.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import threading
from collections import OrderedDict
from pathlib import Path

from qwen3_tts_trt.runtime.errors import VoiceError
from qwen3_tts_trt.runtime.requests import VoiceResolver
from qwen3_tts_trt.runtime.voice import VOICE_SUFFIX, Voice, VoiceLibrary

from .errors import bad_request

TASK_TYPES = {"CustomVoice": "custom_voice", "VoiceDesign": "voice_design", "Base": "base"}
MAX_REF_AUDIO_BYTES = 16 * 1024 * 1024  # 30 s of 48 kHz stereo float WAV is ~11.5 MB
CLONE_CACHE = 64  # encoded reference voices kept per replica (x-vector + codes: a few KB each)


class VoiceBook:
    """The voices one replica can speak, resolved from request fields into `Voice`s."""

    def __init__(self, checkpoint, build_dir=None, backend: str = "auto", voice_dir: str | Path | None = None):
        self.library = VoiceLibrary(checkpoint, build_dir, backend)  # .voice files: read once, checked for this model
        self.config = self.library.config
        self.resolver = VoiceResolver(self.config, self.library)
        self.voice_dir = Path(voice_dir).expanduser() if voice_dir else None
        self._maker = None  # the voice encoders, opened at the first reference audio
        self._maker_lock = threading.Lock()
        self._clones: OrderedDict[tuple, Voice] = OrderedDict()

    # -- what `GET /v1/voices` lists --------------------------------------------------------------
    def ids(self) -> list[str]:
        speakers = list(self.config.speakers) if self.config.variant == "custom_voice" else []
        return speakers + self._files()

    def _files(self) -> list[str]:
        if self.voice_dir is None or not self.voice_dir.is_dir():
            return []
        return sorted(p.stem for p in self.voice_dir.glob(f"*{VOICE_SUFFIX}") if p.is_file())

    # -- request fields -> Voice ----------------------------------------------------------------------
    async def resolve(self, *, voice: str | None, language: str | None, instructions: str | None,
                      task_type: str | None, ref_audio: str | None, ref_text: str | None,
                      x_vector_only: bool = False) -> Voice:
        self._check_task(task_type)
        if ref_audio is not None:
            language = (language or "auto").strip().lower() or "auto"
            return self.resolver.resolve(clone=await self._clone(ref_audio, ref_text, x_vector_only, language),
                                         language=language, instruct=instructions)
        if voice and self._is_file_voice(voice):
            return self.resolver.resolve(clone=self._file_voice(voice), language=language, instruct=instructions)
        if self.config.variant == "base":
            raise bad_request(f"this Base checkpoint clones voices: name a voice from GET /v1/voices "
                              f"({self._listed()}) or send `ref_audio` (base64) and `ref_text`", "voice", "voice_required")
        # a speaker name (any case), or the checkpoint's first; an unknown one is refused by the runtime
        return self.resolver.resolve(speaker=voice.strip().lower() if voice else None, language=language,
                                     instruct=instructions)

    def _check_task(self, task_type: str | None) -> None:
        if task_type is None:
            return
        variant = TASK_TYPES.get(task_type)
        if variant is None:
            raise bad_request(f"unknown task_type {task_type!r}: one of {', '.join(TASK_TYPES)}", "task_type")
        if variant != self.config.variant:
            served = next(k for k, v in TASK_TYPES.items() if v == self.config.variant)
            raise bad_request(f"task_type {task_type} needs a {task_type} checkpoint; this server runs a {served} "
                              f"checkpoint", "task_type", "task_type_mismatch")

    def _listed(self) -> str:
        ids = self.ids()
        return ", ".join(ids) if ids else "none"

    def _is_file_voice(self, voice: str) -> bool:
        name = voice[: -len(VOICE_SUFFIX)] if voice.endswith(VOICE_SUFFIX) else voice
        return name in self._files()

    def _file_voice(self, voice: str) -> Voice:
        name = voice[: -len(VOICE_SUFFIX)] if voice.endswith(VOICE_SUFFIX) else voice
        try:
            return self.library.get(str(self.voice_dir / f"{name}{VOICE_SUFFIX}"))
        except VoiceError as exc:  # e.g. made for another model
            raise bad_request(f"voice {name!r}: {exc}", "voice", "voice_unusable") from None

    # -- reference audio ------------------------------------------------------------------------------
    async def _clone(self, ref_audio: str, ref_text: str | None, x_vector_only: bool, language: str) -> Voice:
        if self.config.variant != "base":
            raise bad_request(f"`ref_audio` clones a voice, which needs a Base checkpoint; this server runs a "
                              f"{self.config.variant} checkpoint", "ref_audio", "clone_unsupported")
        data = _decode_audio(ref_audio)
        key = (hashlib.sha256(data).hexdigest(), ref_text, bool(x_vector_only), language)
        if key in self._clones:
            self._clones.move_to_end(key)
            return self._clones[key]
        # Encoding runs the two encoder graphs (tens of ms to seconds): off the event loop.
        voice = await asyncio.get_running_loop().run_in_executor(
            None, self._encode, data, ref_text, bool(x_vector_only), language)
        self._clones[key] = voice
        while len(self._clones) > CLONE_CACHE:
            self._clones.popitem(last=False)
        return voice

    def _encode(self, data: bytes, ref_text: str | None, x_vector_only: bool, language: str) -> Voice:
        import soundfile as sf

        try:
            samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as exc:  # noqa: BLE001  (libsndfile's reason, one line)
            raise bad_request(f"ref_audio is not a readable WAV, FLAC or OGG file ({exc})", "ref_audio",
                              "ref_audio_unreadable") from None
        with self._maker_lock:
            if self._maker is None:
                from qwen3_tts_trt.runtime.voice import VoiceMaker

                self._maker = VoiceMaker.open(self.library.checkpoint, self.library.build_dir, self.library.backend)
        try:
            return self._maker.make(samples, ref_text, sample_rate=rate, x_vector_only=x_vector_only, language=language)
        except VoiceError as exc:
            raise bad_request(f"ref_audio: {exc}", "ref_audio", "ref_audio_unusable") from None


def _decode_audio(ref_audio: str) -> bytes:
    """base64 or a base64 `data:` URL -> the file's bytes; URLs and paths are refused (see above)."""
    text = ref_audio.strip()
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            raise bad_request("ref_audio data URL must be base64 (data:audio/wav;base64,...)", "ref_audio")
    elif "://" in text[:16] or text.startswith(("/", "~", ".")):
        raise bad_request("ref_audio must be the audio itself, base64-encoded (or a data: URL); this server "
                          "does not fetch URLs or read paths: put shared voices in its voice folder", "ref_audio",
                          "ref_audio_not_inline")
    if len(text) > MAX_REF_AUDIO_BYTES * 4 // 3 + 4:
        raise bad_request(f"ref_audio is larger than {MAX_REF_AUDIO_BYTES // 2**20} MB; send a 3 to 10 s clip",
                          "ref_audio", "ref_audio_too_large")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("ref_audio is not valid base64", "ref_audio", "ref_audio_not_base64") from None
