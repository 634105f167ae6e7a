"""`qwen3-tts-trt inspect BUILD_DIR`: what a build holds.

The manifest's checks (model, weights identity, GPU, TensorRT version, limits), then per graph its
inputs and outputs (name, dtype, shape), op histogram, precision and weight bytes (read through
Polygraphy's ONNX loader without the weights, or onnx directly where Polygraphy is absent), and per
engine its profiles and layer precisions when TensorRT is here (the TensorRT part is a code path
that machines without TensorRT never run; the output says so). onnx, Polygraphy and TensorRT are
imported inside run(), so `--help` stays light. A damaged build (no manifest, a missing or truncated
graph) is the runtime's one-line error, exit 2.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def add_parser(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser("inspect", help="print what a build folder holds: manifest checks, graphs, engines",
                       formatter_class=fmt)
    p.add_argument("build_dir", metavar="BUILD_DIR", help="a build folder (builds/<gpu>/<model>, with manifest.json)")
    p.set_defaults(func=run)


def _load_graph(path: Path):
    """The graph's structure without its weights (Polygraphy's loader, or onnx where it is absent)."""
    try:
        from polygraphy.backend.onnx import OnnxFromPath
    except ImportError:
        import onnx

        return onnx.load(str(path), load_external_data=False)
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):  # no "[I] Loading model" lines in the listing
        return OnnxFromPath(str(path), ignore_external_data=True)()


def _dims(type_proto) -> str:
    dims = [d.dim_param or (str(d.dim_value) if d.HasField("dim_value") else "?") for d in type_proto.tensor_type.shape.dim]
    return "[" + ", ".join(dims) + "]"


def _weight_bytes(model, path: Path) -> int:
    """Bytes of the graph's initializers: their external-data lengths plus what is stored inline."""
    total = 0
    for init in model.graph.initializer:
        ext = {e.key: e.value for e in init.external_data}
        if "length" in ext:
            total += int(ext["length"])
        else:
            total += len(init.raw_data) or 0
    return total


def graph_lines(path: Path) -> list[str]:
    import onnx

    model = _load_graph(path)
    name = onnx.TensorProto.DataType.Name
    lines = []
    for kind, tensors in (("input", model.graph.input), ("output", model.graph.output)):
        for t in tensors:
            lines.append(f"    {kind:6} {t.name}: {name(t.type.tensor_type.elem_type).lower()} {_dims(t.type)}")
    ops = Counter(n.op_type for n in model.graph.node)
    lines.append(f"    ops    {sum(ops.values())} nodes: " + ", ".join(f"{op} {n}" for op, n in ops.most_common()))
    floats = Counter(name(i.data_type).lower() for i in model.graph.initializer
                     if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16))
    lines.append("    weights " + f"{_weight_bytes(model, path) / 1e6:.2f} MB in {len(model.graph.initializer)} "
                 "initializers (" + ", ".join(f"{k} {v}" for k, v in floats.most_common()) + ")")
    return lines


def engine_lines(path: Path) -> list[str]:
    """Profiles and layer precisions of a TensorRT engine (only where TensorRT is installed)."""
    import tensorrt as trt

    engine = trt.Runtime(trt.Logger(trt.Logger.ERROR)).deserialize_cuda_engine(path.read_bytes())
    lines = [f"    engine {path.name}: {engine.num_optimization_profiles} profile(s), {engine.num_layers} layers"]
    for p in range(engine.num_optimization_profiles):
        for i in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(i)
            if engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT:
                lo, opt, hi = engine.get_tensor_profile_shape(tensor, p)
                lines.append(f"    profile {p} {tensor}: min {tuple(lo)} opt {tuple(opt)} max {tuple(hi)}")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    lines.append(f"    layers (engine inspector, JSON): {len(info)} characters")
    return lines


def run(args) -> int:
    from qwen3_tts_trt.runtime.manifest import check_files, limits_of, load_manifest

    build_dir = Path(args.build_dir)
    manifest = load_manifest(build_dir)
    check_files(manifest, build_dir)
    limits = limits_of(manifest)
    model, gpu, versions = manifest["model"], manifest.get("gpu") or {}, manifest.get("versions") or {}
    print(f"build {build_dir}")
    print(f"model {model.get('name')} ({model.get('variant')} {model.get('size')}), config {model.get('config_hash')}, "
          f"source {model.get('source')}")
    print(f"weights {model.get('weights')}")
    print(f"gpu {gpu.get('name') or 'none (a CPU build)'}")
    print(f"tensorrt {versions.get('tensorrt') or 'none'} (min {manifest.get('min_tensorrt')}); onnx "
          f"{versions.get('onnx')}, onnxruntime {versions.get('onnxruntime')}, torch {versions.get('torch')}")
    print(f"limits precision {limits.precision}, codec {limits.codec_precision}, max_context {limits.max_context}, "
          f"max_prompt {limits.max_prompt}, max_chunk {limits.max_chunk}, max_batch {limits.max_batch}")
    print(f"built {manifest.get('built_at')} in {manifest.get('build_seconds')} s, opset {manifest.get('opset')}")
    try:
        import tensorrt  # noqa: F401
        have_trt = True
    except ImportError:
        have_trt = False
    for name, entry in manifest["engines"].items():
        precision = limits.codec_precision if name == "codec" else limits.precision
        if name in ("speaker_encoder", "codec_encoder"):
            precision = "fp32"
        parity = entry.get("parity_max_abs")
        parity_text = (f"parity {parity:.1e} (limit {entry.get('parity_limit')})" if parity is not None
                       else f"parity {entry.get('parity_note') or 'not checked'}")
        print(f"graph {name}: {entry['onnx']}, precision {precision}, {parity_text}")
        for line in graph_lines(build_dir / entry["onnx"]):
            print(line)
        if entry.get("engine"):
            if have_trt:
                for line in engine_lines(build_dir / entry["engine"]):
                    print(line)
            else:
                print(f"    engine {entry['engine']}: TensorRT is not installed here, profiles and layer "
                      "precisions not read")
        else:
            print(f"    engine none ({entry.get('not_built_reason') or 'not built'})")
    if not have_trt:
        print("tensorrt: not installed here; engine profiles and layer precisions are read only where it is")
    return 0
