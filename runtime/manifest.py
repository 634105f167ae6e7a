"""builds/<gpu>/<model>/manifest.json: what was built, from what, for which GPU and TensorRT.

export/ writes it; every backend reads it through `load_manifest` + `check_manifest` before
touching an engine, and refuses engines that belong to another model, GPU, TensorRT version or
engine contract, with an error that says which and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import ModelConfig
from .contract import EngineLimits, engine_specs, specs_to_json
from .errors import EngineMismatchError

MANIFEST = "manifest.json"
SCHEMA = 1


def load_manifest(build_dir: str | Path) -> dict:
    path = Path(build_dir) / MANIFEST
    if not path.is_file():
        raise EngineMismatchError(f"no {MANIFEST} in {build_dir}: run build.sh for this model and GPU first")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise EngineMismatchError(f"{path} is not valid JSON ({exc}): rebuild with build.sh --force") from exc
    if manifest.get("schema") != SCHEMA:
        raise EngineMismatchError(f"{path} has schema {manifest.get('schema')}, this runtime reads {SCHEMA}: rebuild")
    return manifest


def limits_of(manifest: dict) -> EngineLimits:
    d = dict(manifest["limits"])
    d["chunk_ramp"] = tuple(d["chunk_ramp"])
    return EngineLimits(**d)


def check_manifest(manifest: dict, config: ModelConfig, *, gpu: dict | None = None,
                   tensorrt: str | None = None, need_engines: bool = False, where: str = "") -> EngineLimits:
    """Raise EngineMismatchError unless the build fits this checkpoint (and GPU / TensorRT when given)."""
    where = where or "this build"
    model = manifest.get("model", {})
    if model.get("config_hash") != config.config_hash:
        raise EngineMismatchError(
            f"{where} was built for model {model.get('name')!r} (config {model.get('config_hash')}), "
            f"not for this checkpoint (config {config.config_hash}): rebuild with build.sh")
    limits = limits_of(manifest)
    expected = json.loads(specs_to_json(engine_specs(config, limits)))
    if manifest.get("contract") != expected:
        raise EngineMismatchError(f"{where} follows an older engine contract than this runtime: rebuild with build.sh")
    if need_engines:
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
