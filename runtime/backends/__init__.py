"""Engine backends behind one interface: PyTorch (reference), ONNX Runtime (CPU), TensorRT (GPU)."""

from __future__ import annotations

from pathlib import Path

from ..checkpoint import load_networks, resolve_checkpoint
from ..config import load_model_config
from ..contract import EngineLimits
from ..errors import BackendUnavailableError, Qwen3TTSError
from ..manifest import check_manifest, load_manifest
from .base import Backend

BACKENDS = ("tensorrt", "onnx", "torch")


def open_backend(kind: str, checkpoint, build_dir: str | Path | None = None, *, device=None,
                 limits: EngineLimits | None = None) -> Backend:
    """A ready backend by name, or `auto`: TensorRT if its engines load here, else ONNX Runtime if
    the build has graphs, else PyTorch. Engine backends check the build's manifest first."""
    if kind == "auto":
        errors = []
        for name in BACKENDS:
            if name != "torch" and build_dir is None:
                continue
            try:
                return open_backend(name, checkpoint, build_dir, device=device, limits=limits)
            except Qwen3TTSError as exc:
                errors.append(f"{name}: {exc}")
        raise BackendUnavailableError("no backend could start: " + "; ".join(errors))
    if kind not in BACKENDS:
        raise ValueError(f"unknown backend {kind!r}; choose from auto, {', '.join(BACKENDS)}")
    model_dir = resolve_checkpoint(checkpoint)
    if kind == "torch":
        import torch

        nets = load_networks(model_dir)
        if build_dir is not None:
            limits = check_manifest(load_manifest(build_dir), nets.config, where=str(build_dir))
        from .torch_backend import TorchBackend

        return TorchBackend(nets, limits or EngineLimits(),
                            device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if build_dir is None:
        raise BackendUnavailableError(f"the {kind} backend needs a build directory (run build.sh first)")
    config = load_model_config(model_dir)
    if kind == "onnx":
        limits = check_manifest(load_manifest(build_dir), config, where=str(build_dir))
        from .onnx_backend import OnnxBackend

        return OnnxBackend(config, limits, build_dir)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(config, build_dir)


__all__ = ["BACKENDS", "Backend", "open_backend"]
