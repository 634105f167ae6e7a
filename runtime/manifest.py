"""builds/<gpu>/<model>/manifest.json: what was built, from what, for which GPU and TensorRT.

export/ writes it; every backend reads it through `load_manifest` + `check_manifest` before
touching an engine, and refuses engines that belong to another model (another config or other
weights), GPU, TensorRT version or engine contract, and builds whose files are missing, truncated
or replaced (sizes are checked at every load; the sha256 recorded at build time is not, because
hashing gigabytes would cost seconds per load), with an error that says which and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig
from .contract import WEIGHT_ONLY_BITS, EngineLimits, engine_specs, specs_to_json
from .errors import EngineMismatchError
from .identity import weights_identity

MANIFEST = "manifest.json"
SCHEMA = 1


def default_build_dir(model: str | Path) -> Path | None:
    """builds/<this GPU or cpu>/<model folder name>, as build.sh writes it, when it exists."""
    from .device_info import detect_gpu

    gpu = detect_gpu()
    path = Path("builds") / (gpu["slug"] if gpu else "cpu") / Path(str(model).rstrip("/")).name
    return path if (path / MANIFEST).is_file() else None


def load_manifest(build_dir: str | Path) -> dict:
    path = Path(build_dir) / MANIFEST
    if not path.is_file():
        raise EngineMismatchError(f"no {MANIFEST} in {build_dir}: run build.sh for this model and GPU first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineMismatchError(f"{path} is not valid JSON ({exc}): rebuild with build.sh --force") from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise EngineMismatchError(f"{path} has schema {schema}, this runtime reads {SCHEMA}: rebuild with build.sh --force")
    _require_keys(manifest, path)
    return manifest


# Keys every manifest must have (nested under "model" / per engine where shown); an older or
# hand-edited manifest without them is refused up front instead of failing somewhere inside.
REQUIRED = {"model": ("name", "config_hash", "weights"), "limits": (), "contract": (), "engines": ()}
REQUIRED_PER_ENGINE = ("onnx", "sizes")


def _require_keys(manifest: dict, path: Path) -> None:
    missing = []
    for key, inner in REQUIRED.items():
        if not isinstance(manifest.get(key), dict):
            missing.append(key)
            continue
        missing += [f"{key}.{k}" for k in inner if k not in manifest[key]]
    for name, entry in (manifest.get("engines") or {}).items():
        missing += [f"engines.{name}.{k}" for k in REQUIRED_PER_ENGINE if not isinstance(entry, dict) or k not in entry]
    if missing:
        raise EngineMismatchError(f"{path} lacks {', '.join(missing)} (damaged, or written by an older build.sh): "
                                  "rebuild with build.sh --force")


def check_files(manifest: dict, build_dir: str | Path, *, engines: bool = False) -> None:
    """Every graph file (and engine, when `engines`) the manifest lists exists with its recorded size."""
    build_dir = Path(build_dir)
    for name, entry in manifest["engines"].items():
        sizes = dict(entry["sizes"])
        if engines and entry.get("engine"):
            sizes[entry["engine"]] = entry.get("engine_bytes")
        for file, size in sizes.items():
            path = build_dir / file
            if not path.is_file():
                raise EngineMismatchError(f"{path} is missing (the build lists it): rebuild with build.sh --force")
            got = path.stat().st_size
            if size is not None and got != size:
                raise EngineMismatchError(f"{path} has {got} bytes, the build wrote {size} (truncated or replaced): "
                                          "rebuild with build.sh --force")


def limits_of(manifest: dict) -> EngineLimits:
    d = dict(manifest["limits"])
    try:
        d["chunk_ramp"] = tuple(d["chunk_ramp"])
        return EngineLimits(**d)
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineMismatchError(f"the build's manifest has unusable limits ({exc}): rebuild with build.sh --force") from exc


def check_manifest(manifest: dict, config: ModelConfig, *, gpu: dict | None = None,
                   tensorrt: str | None = None, need_engines: bool = False, where: str = "",
                   model_dir: str | Path | None = None) -> EngineLimits:
    """Raise EngineMismatchError unless the build fits this checkpoint (its config, and its weights
    when `model_dir` is given) and this GPU / TensorRT (when given)."""
    where = where or "this build"
    model = manifest.get("model", {})
    if model.get("config_hash") != config.config_hash:
        raise EngineMismatchError(
            f"{where} was built for model {model.get('name')!r} (config {model.get('config_hash')}), "
            f"not for this checkpoint (config {config.config_hash}): rebuild with build.sh")
    if model_dir is not None and model.get("weights") != weights_identity(model_dir):
        raise EngineMismatchError(
            f"{where} was built from other weights than {model_dir} (same config, weights {model.get('weights')} "
            f"vs {weights_identity(model_dir)}; it was built from {model.get('source')!r}): build this checkpoint "
            "with build.sh --out OTHER_ROOT and pass its folder with --build-dir")
    limits = limits_of(manifest)
    expected = json.loads(specs_to_json(engine_specs(config, limits)))
    if manifest.get("contract") != expected:
        raise EngineMismatchError(f"{where} follows an older engine contract than this runtime: rebuild with build.sh")
    if need_engines:
        if limits.precision in WEIGHT_ONLY_BITS:
            raise EngineMismatchError(
                f"{where} holds {limits.precision} weight-only graphs, which run on ONNX Runtime (CPU) only: use "
                "--backend onnx, or build TensorRT engines with build.sh MODEL --precision bf16 (or fp16, fp32)")
        if limits.codec_precision == "int8":
            raise EngineMismatchError(
                f"{where} holds an int8 codec graph, which runs on ONNX Runtime (CPU) only: use --backend onnx, "
                "or build TensorRT engines with build.sh MODEL --codec-precision fp32 (or fp16, bf16)")
        built = manifest.get("gpu") or {}
        if gpu is None:
            raise EngineMismatchError("TensorRT engines need an NVIDIA GPU, and none is visible")
        if built.get("name") != gpu.get("name"):
            raise EngineMismatchError(f"{where} holds engines built on {built.get('name')!r}; this GPU is "
                                      f"{gpu.get('name')!r}: engines are specific to a GPU, build them here")
        if manifest.get("versions", {}).get("tensorrt") != tensorrt:
            raise EngineMismatchError(f"{where} was built with TensorRT {manifest.get('versions', {}).get('tensorrt')}, "
                                      f"this process has {tensorrt}: rebuild with build.sh")
        missing = [n for n, e in manifest.get("engines", {}).items() if not e.get("engine")]
        if missing:
            reasons = {manifest['engines'][n].get('not_built_reason') for n in missing}
            raise EngineMismatchError(f"{where} has no TensorRT engine for {', '.join(missing)} "
                                      f"({'; '.join(r for r in reasons if r)})")
    return limits
