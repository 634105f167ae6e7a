"""The two voice encoders (speaker encoder -> x-vector, codec encoder -> reference codes) on the
PyTorch, ONNX Runtime or TensorRT backend, behind one small interface.

They run once per voice, not per frame, so they live apart from the frame-loop `Backend`: a
synthesizer never loads them, and making a voice never loads the talker. Every kind takes 24 kHz
mono float32 PCM (runtime/voice.py prepares it) and returns torch tensors on the CPU:
x-vector [H] float32 and codes [frames, 16] int64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from ..checkpoint import load_voice_encoders, resolve_checkpoint
from ..config import ModelConfig, load_model_config
from ..contract import CODEC_ENCODER, SPEAKER_ENCODER, VOICE_ENGINES, EngineLimits, engine_specs
from ..errors import BackendUnavailableError, EngineMismatchError
from ..manifest import check_files, check_manifest, load_manifest


class VoiceEncoders(ABC):
    name = "abstract"

    def __init__(self, config: ModelConfig, model_name: str):
        self.config, self.model_name = config, model_name

    @abstractmethod
    def _run(self, engine: str, pcm: np.ndarray) -> np.ndarray:
        """One encoder on PCM [1, N] -> its only output as numpy."""

    def xvector(self, pcm: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._run(SPEAKER_ENCODER, pcm)[0], dtype=np.float32))

    def ref_codes(self, pcm: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self._run(CODEC_ENCODER, pcm)[0].T, dtype=np.int64))


class TorchVoiceEncoders(VoiceEncoders):
    name = "torch"

    def __init__(self, checkpoint, device=None):
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        nets = load_voice_encoders(checkpoint, device)
        super().__init__(nets.config, _model_name(checkpoint, nets.model_dir))
        self.device = torch.device(device)
        self.modules = {SPEAKER_ENCODER: nets.speaker_encoder, CODEC_ENCODER: nets.codec_encoder}

    @torch.inference_mode()
    def _run(self, engine, pcm):
        x = torch.as_tensor(np.asarray(pcm, dtype=np.float32)).reshape(1, -1).to(self.device)
        return self.modules[engine](x).cpu().numpy()


class OnnxVoiceEncoders(VoiceEncoders):
    name = "onnx"

    def __init__(self, config: ModelConfig, model_name: str, graphs: dict[str, Path]):
        """`graphs`: the ONNX file of each voice engine (a build's, or exported alone)."""
        super().__init__(config, model_name)
        from .onnx_backend import ort_session

        self.sessions = {e: ort_session(graphs[e]) for e in VOICE_ENGINES}

    def _run(self, engine, pcm):
        return self.sessions[engine].run(None, {"pcm": np.asarray(pcm, dtype=np.float32).reshape(1, -1)})[0]


class TensorRTVoiceEncoders(VoiceEncoders):
    """The engines from the build, through the TensorRT backend's thin engine runner."""

    name = "tensorrt"

    def __init__(self, config: ModelConfig, model_name: str, build_dir: Path, manifest: dict, limits: EngineLimits):
        super().__init__(config, model_name)
        import tensorrt as trt

        from .tensorrt_backend import _Engine

        self.device = torch.device("cuda")
        self.stream = torch.cuda.Stream()
        self.specs = engine_specs(config, limits)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engines = {e: _Engine(runtime, build_dir / manifest["engines"][e]["engine"], self.specs[e])
                        for e in VOICE_ENGINES}

    def _run(self, engine, pcm):
        x = torch.as_tensor(np.asarray(pcm, dtype=np.float32)).reshape(1, -1).to(self.device).contiguous()
        if engine == SPEAKER_ENCODER:
            out = torch.empty((1, self.config.speaker_encoder.enc_dim), dtype=torch.float32, device=self.device)
            name = "xvector"
        else:
            enc = self.config.codec_encoder
            frames = -(-x.shape[1] // enc.samples_per_frame)
            out = torch.empty((1, enc.valid_quantizers, frames), dtype=torch.int64, device=self.device)
            name = "codes"
        self.engines[engine].run({"pcm": x}, {name: out}, self.stream)
        return out.cpu().numpy()


def _model_name(checkpoint, model_dir: Path) -> str:
    text = str(checkpoint)
    return model_dir.name if Path(text).expanduser().is_dir() else text.rstrip("/")


def open_voice_encoders(kind: str, checkpoint, build_dir=None, *, device=None) -> VoiceEncoders:
    """`torch` (no build needed), `onnx` or `tensorrt` (a build.sh folder of a Base checkpoint), or
    `auto`: TensorRT when the build holds its engines and this machine runs them, else ONNX Runtime,
    else PyTorch when no build folder is given."""
    if kind not in ("auto", "torch", "onnx", "tensorrt"):
        raise BackendUnavailableError(f"unknown backend {kind!r}; choose from auto, tensorrt, onnx, torch")
    if kind == "torch" or (kind == "auto" and build_dir is None):
        return TorchVoiceEncoders(checkpoint, device)
    if build_dir is None:
        raise BackendUnavailableError(f"the {kind} voice encoders need a build directory (run build.sh first)")
    model_dir = resolve_checkpoint(checkpoint)
    config = load_model_config(model_dir)
    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir)
    limits = check_manifest(manifest, config, where=str(build_dir), model_dir=model_dir)
    missing = [e for e in VOICE_ENGINES if e not in manifest["engines"]]
    if missing:
        raise EngineMismatchError(f"{build_dir} has no {' or '.join(missing)} graph: voices are cloned with a Base "
                                  "checkpoint, built by this version of build.sh")
    name = _model_name(checkpoint, model_dir)
    if kind == "auto":
        from ..device_info import detect_gpu, tensorrt_version

        have_engines = all(manifest["engines"][e].get("engine") for e in VOICE_ENGINES)
        kind = "tensorrt" if have_engines and detect_gpu() and tensorrt_version()[0] else "onnx"
    check_files(manifest, build_dir, engines=kind == "tensorrt")
    if kind == "onnx":
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError("onnxruntime is not installed: pip install 'qwen3-tts-trt[onnx]'") from exc
        return OnnxVoiceEncoders(config, name, {e: build_dir / manifest["engines"][e]["onnx"] for e in VOICE_ENGINES})
    from ..device_info import tensorrt_version

    version, why = tensorrt_version()
    if version is None:
        raise BackendUnavailableError(why)
    from ..device_info import detect_gpu

    limits = check_manifest(manifest, config, gpu=detect_gpu(), tensorrt=version, need_engines=True,
                            where=str(build_dir), model_dir=model_dir)
    return TensorRTVoiceEncoders(config, name, build_dir, manifest, limits)
