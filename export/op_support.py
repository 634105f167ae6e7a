"""Check every op and data type of an ONNX graph against TensorRT's ONNX-parser support table.

The table (export/data/trt_onnx_ops.json) records its source and version. A graph passes when
every node is a default-domain op the parser supports, its data input has a listed type, the
opset is inside the range of every TensorRT this project targets, op restrictions that can be
read from the graph hold (TopK's K, ScatterND's reduction), and no local functions remain.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx

TABLE_PATH = Path(__file__).with_name("data") / "trt_onnx_ops.json"
ELEM_NAMES = {v: k for k, v in onnx.TensorProto.DataType.items()}


def load_table(path: Path = TABLE_PATH) -> dict:
    return json.loads(Path(path).read_text())


@dataclass
class OpReport:
    graph: str
    opset: int
    op_counts: dict[str, int]
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk(attr.g)


def _tensor_types(model: onnx.ModelProto) -> dict[str, str]:
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=False)
    types = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.HasField("tensor_type"):
            types[vi.name] = ELEM_NAMES.get(vi.type.tensor_type.elem_type, "UNDEFINED")
    for init in inferred.graph.initializer:
        types[init.name] = ELEM_NAMES.get(init.data_type, "UNDEFINED")
    for node in inferred.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = ELEM_NAMES.get(attr.t.data_type, "UNDEFINED")
    return types


def _int_initializer(model, name):
    for init in model.graph.initializer:
        if init.name == name:
            return onnx.numpy_helper.to_array(init).reshape(-1).tolist()
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            return onnx.numpy_helper.to_array(node.attribute[0].t).reshape(-1).tolist()
    return None


def check_model(path: str | Path, table: dict | None = None) -> OpReport:
    table = table or load_table()
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    nodes = list(_walk(model.graph))
    report = OpReport(Path(path).stem, opset, dict(collections.Counter(n.op_type for n in nodes)))
    lo, hi = table["min_opset_for_all_targets"], table["max_opset_for_all_targets"]
    if not lo <= opset <= hi:
        report.problems.append(f"opset {opset} outside {lo}..{hi} (parsed by every targeted TensorRT)")
    if model.functions:
        report.problems.append(f"{len(model.functions)} local functions left in the graph")
    supported = set(table["supported_ops"])
    types = _tensor_types(model)
    data_input = {"Where": 1}
    for node in nodes:
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        if name not in supported:
            report.problems.append(f"{node.name or name}: op {name} is not supported by the TensorRT ONNX parser")
            continue
        allowed = table["data_types"].get(node.op_type)
        idx = data_input.get(node.op_type, 0)
        if allowed and len(node.input) > idx and node.input[idx]:
            dtype = types.get(node.input[idx])
            if dtype is not None and dtype not in allowed:
                report.problems.append(f"{node.name}: {node.op_type} on {dtype} (supported: {', '.join(allowed)})")
        if node.op_type == "TopK" and len(node.input) > 1:
            k = _int_initializer(model, node.input[1])
            if k is None:
                report.problems.append(f"{node.name}: TopK K is not a constant")
            elif k[0] >= 3840:
                report.problems.append(f"{node.name}: TopK K={k[0]} (TensorRT needs K < 3840)")
        for attr in node.attribute:
            if node.op_type == "TopK" and attr.name == "sorted" and attr.i != 1:
                report.problems.append(f"{node.name}: TopK sorted=0 is not supported")
            if node.op_type in ("ScatterND", "ScatterElements") and attr.name == "reduction" and attr.s not in (b"", b"none"):
                report.problems.append(f"{node.name}: {node.op_type} reduction={attr.s.decode()} is not supported")
    return report


def format_report(reports: list[OpReport]) -> str:
    lines = []
    for r in reports:
        ops = ", ".join(f"{k}x{v}" for k, v in sorted(r.op_counts.items()))
        lines.append(f"{r.graph}: opset {r.opset}, {sum(r.op_counts.values())} nodes, "
                     f"{'OK' if r.ok else f'{len(r.problems)} problem(s)'}\n  ops: {ops}")
        lines += [f"  - {p}" for p in r.problems]
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="check ONNX graphs against the TensorRT ONNX-parser op table")
    ap.add_argument("graphs", nargs="+")
    args = ap.parse_args(argv)
    reports = [check_model(p) for p in args.graphs]
    print(format_report(reports))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
