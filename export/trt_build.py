"""The thin TensorRT builder: ONNX file + contract + profile ranges -> serialized engine.

Only TensorRT calls live here; every decision (which shapes, which precision, whether to rebuild)
is made by export/build.py and tested without TensorRT. Networks are strongly typed on both
TensorRT 10 and 11 (11 removed weak typing and the FP16/BF16 builder flags), so precision comes
from the ONNX graph's own dtypes. Names used here are checked against the 10.16 and 11.4
bindings by the TensorRT name check that .ci/run runs.
"""

from __future__ import annotations

from pathlib import Path

from qwen3_tts_trt.runtime.contract import EngineSpec


def profile_shapes(spec: EngineSpec, ranges: dict[str, tuple[int, int, int]]) -> dict[str, tuple[tuple, tuple, tuple]]:
    """(min, opt, max) shape of every input with a dynamic axis (a symbol whose range is not one value;
    the batch axis is static while max_batch is 1, and the ONNX graphs are exported that way)."""
    shapes = {}
    for t in spec.inputs:
        if any(isinstance(d, str) and ranges[d][0] != ranges[d][2] for d in t.shape):
            dims = [ranges[d] if isinstance(d, str) else (d, d, d) for d in t.shape]
            shapes[t.name] = tuple(tuple(d[i] for d in dims) for i in range(3))
    return shapes


def build_engine(onnx_path: Path, engine_path: Path, spec: EngineSpec, ranges: dict, timing_cache: Path,
                 opt_level: int = 3, workspace_bytes: int | None = None, log=print) -> None:
    import tensorrt as trt  # lazily: only machines that build engines have it

    logger = trt.Logger(trt.Logger.WARNING)
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):  # required on 10.x, ignored on 11.x
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    network.name = f"qwen3-tts-{spec.name}"
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f"TensorRT could not parse {onnx_path}:\n  " + "\n  ".join(errors))

    config = builder.create_builder_config()
    config.builder_optimization_level = opt_level
    if workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(spec, ranges).items():
        profile.set_shape(name, lo, opt, hi)
    if config.add_optimization_profile(profile) < 0:
        raise RuntimeError(f"invalid optimization profile for {spec.name}")

    cache_bytes = timing_cache.read_bytes() if timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT failed to build {spec.name} (see the log above)")
    engine_path.write_bytes(bytes(plan))
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    log(f"  built {engine_path.name} ({engine_path.stat().st_size / 1e6:.1f} MB)")
