"""Time the export of each ONNX graph of a checkpoint, and optionally compare the graphs with
another build of the same checkpoint (node and op counts), e.g. one made before an export change.

    python benchmarks/export_time.py -m CHECKPOINT [--compare OLD_BUILD_DIR] [--out DIR] [--json FILE]

Prints one line per graph (seconds, nodes, TensorRT op check, ONNX Runtime parity) and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import onnx

from qwen3_tts_trt.export import onnx_graphs
from qwen3_tts_trt.export.parity import ort_parity
from qwen3_tts_trt.export.op_support import check_model
from qwen3_tts_trt.runtime.checkpoint import load_networks, resolve_checkpoint
from qwen3_tts_trt.runtime.contract import EngineLimits, engine_specs


def op_counts(path: Path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--compare", type=Path, help="a build folder of the same checkpoint to compare graphs with")
    ap.add_argument("--out", type=Path, help="where to write the graphs (default: a temporary folder)")
    ap.add_argument("--max-context", type=int, default=512)
    ap.add_argument("--max-prompt", type=int, default=256)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    model_dir = resolve_checkpoint(args.model)
    nets = load_networks(model_dir)
    limits = EngineLimits(max_context=args.max_context, max_prompt=args.max_prompt)
    specs = engine_specs(nets.config, limits)
    modules = onnx_graphs.engine_modules(nets, limits)
    modules.update(onnx_graphs.voice_encoder_modules(model_dir))
    out = args.out or Path(tempfile.mkdtemp(prefix="export-time-"))
    rows = []
    for name, module in modules.items():
        t0 = time.perf_counter()
        path = onnx_graphs.export_engine(name, module, specs[name], limits, out / f"{name}.onnx")
        seconds = time.perf_counter() - t0
        ops = op_counts(path)
        row = dict(graph=name, export_s=round(seconds, 1), nodes=sum(ops.values()),
                   op_problems=check_model(path).problems, parity=ort_parity(module, specs[name], path))
        if args.compare and (args.compare / f"{name}.onnx").exists():
            old = op_counts(args.compare / f"{name}.onnx")
            row["same_ops_as_compared"] = ops == old
            row["compared_nodes"] = sum(old.values())
        rows.append(row)
        print(f"{name}: export {row['export_s']} s, {row['nodes']} nodes, ops {'OK' if not row['op_problems'] else row['op_problems']}, "
              f"parity {row['parity']:.1e}" + (f", same ops as {args.compare}: {row['same_ops_as_compared']}"
                                                  if "same_ops_as_compared" in row else ""), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(model=str(model_dir), graphs=rows), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
