"""Engine backends behind one interface: PyTorch (reference), ONNX Runtime (CPU), TensorRT (GPU)."""

from __future__ import annotations

import logging
from pathlib import Path

from ..checkpoint import load_networks, resolve_checkpoint
from ..config import load_model_config
from ..contract import EngineLimits
from ..errors import BackendUnavailableError, Qwen3TTSError
from ..manifest import check_files, check_manifest, load_manifest
from .base import Backend

BACKENDS = ("tensorrt", "onnx", "torch")


def open_backend(kind: str, checkpoint, build_dir: str | Path | None = None, *, device=None,
                 limits: EngineLimits | None = None, fallback: bool = False) -> Backend:
    """A ready backend by name, or `auto`: the best one the build supports (TensorRT when the build
    holds engines, else ONNX Runtime), or PyTorch when there is no build folder.

    Every backend given a build folder checks its manifest first: the model's config and weights,
    the engine contract, and the size of every file. With `auto`, a build that cannot run here is
    an error unless `fallback=True`; then the next backend runs, and the reason is logged (stderr)
    and kept in `backend.fallback` (and so in the synthesizer's metrics)."""
    if kind == "auto":
        return _open_auto(checkpoint, build_dir, device, limits, fallback)
    if kind not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {kind!r}; choose from auto, {', '.join(BACKENDS)}")
    model_dir = resolve_checkpoint(checkpoint)
    manifest = None
    if build_dir is not None:
        manifest = load_manifest(build_dir)
        limits = check_manifest(manifest, load_model_config(model_dir), where=str(build_dir), model_dir=model_dir)
    if kind == "torch":
        import torch

        nets = load_networks(model_dir)
        from .torch_backend import TorchBackend

        return TorchBackend(nets, limits or EngineLimits(),
                            device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if build_dir is None:
        raise BackendUnavailableError(f"the {kind} backend needs a build directory (run build.sh first)")
    check_files(manifest, build_dir, engines=kind == "tensorrt")
    config = load_model_config(model_dir)
    if kind == "onnx":
        from .onnx_backend import OnnxBackend

        return OnnxBackend(config, limits, build_dir)
    from .tensorrt_backend import TensorRTBackend

    return TensorRTBackend(config, build_dir)


def _open_auto(checkpoint, build_dir, device, limits, fallback: bool) -> Backend:
    if build_dir is None:
        backend = open_backend("torch", checkpoint, device=device, limits=limits)
        _note(backend, "no build folder was given or found: running the PyTorch backend (slow); "
                       "run build.sh for ONNX Runtime or TensorRT")
        return backend
    order = ["onnx", "torch"]
    try:
        if any(e.get("engine") for e in load_manifest(build_dir)["engines"].values()):
            order.insert(0, "tensorrt")
    except Qwen3TTSError:
        pass  # the first backend reports the manifest's problem
    errors = []
    for name in order:
        try:
            # a fallback to PyTorch runs the checkpoint alone: the broken build is not read again
            backend = open_backend(name, checkpoint, build_dir if name != "torch" or not errors else None,
                                   device=device, limits=limits)
        except Qwen3TTSError as exc:
            if not fallback:
                raise type(exc)(f"{exc} (--backend auto runs {name} for this build; to fall back to the next "
                                "backend instead, pass --fallback / fallback=True)") from exc
            errors.append(f"{name}: {exc}")
            continue
        if errors:
            _note(backend, f"fell back to the {name} backend because " + "; ".join(errors))
        return backend
    raise BackendUnavailableError("no backend could start: " + "; ".join(errors))


def _note(backend: Backend, why: str) -> None:
    backend.fallback = why
    logging.getLogger("qwen3_tts_trt").warning(why)


__all__ = ["BACKENDS", "Backend", "open_backend"]
