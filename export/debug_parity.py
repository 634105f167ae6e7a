"""`build.sh MODEL --debug-parity [GRAPH]`: where in a graph a build goes wrong.

Every layer output of the build's graph and of the reference (the fp32 export of the same graph)
is marked as an output (Polygraphy's ModifyOutputs with MARK_ALL); both run on the same feeds
(the first shape setting of build.sh's parity check; an fp16 graph gets its float inputs cast);
the outputs are paired by where they stand, not by name: the k-th node of an op type inside one
PyTorch module (the exporter's name scopes) in one graph pairs with the k-th in the other. Names
cannot pair them: the exporter numbers tensors per op type across the whole graph, so the Casts an
fp16 export adds shift the numbers, and `mul_3683` is `q * cos` in one graph and `rotate_half(q) *
sin` in the other. Casts themselves are not paired (the fp16 graph has its own); floating-point
tensors of equal shape are compared, with Polygraphy's comparator, element by element (a tensor
leaves tolerance where some element differs by more than `atol` and by more than `rtol` relative
to the reference). The report names the first such tensor
in topological order (ONNX node order) with the node that makes it, its op type and the error,
and is written as parity_debug.json beside manifest.json.

On a machine without TensorRT the build's graph runs in ONNX Runtime on the CPU (fp16 kernels where
ONNX Runtime has them; bf16 has none there). Where TensorRT and a GPU are present and the build has
an engine, the build side is TensorRT: the graph is parsed into a network with every layer output
marked (Polygraphy's ModifyNetworkOutputs) and built for the engine's profile; that path is never
run on a machine without TensorRT (tests/test_polygraphy.py only checks its Polygraphy names exist).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

REPORT = "parity_debug.json"
DIVERGING_LISTED = 20  # the report lists this many out-of-tolerance tensors after the first


def _marked(path: Path, tmp: Path, name: str) -> Path:
    """A copy of the graph at `path` with every tensor marked as an output, saved under `tmp` (with
    external data, so graphs over protobuf's 2 GB still load)."""
    from polygraphy import constants
    from polygraphy.backend.onnx import ModifyOutputs, OnnxFromPath, SaveOnnx

    out = tmp / f"{name}.onnx"
    SaveOnnx(ModifyOutputs(OnnxFromPath(str(path)), outputs=constants.MARK_ALL), str(out),
             external_data_path=f"{name}.onnx.data")()
    return out


def _graph_info(path: Path) -> tuple[dict, list[tuple[str, str, str, tuple]]]:
    """The graph's input dtypes (numpy) and, in topological order, (tensor, node name, op type,
    position): the position pairs a tensor with the same computation in another export of the
    same module (None for Casts, which precision changes add)."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    model = onnx.load(str(path), load_external_data=False)
    dtypes = {i.name: tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type) for i in model.graph.input}
    seen: dict[tuple[str, str], int] = {}
    order = []
    for node in model.graph.node:
        position = None
        if node.op_type != "Cast":
            scope_op = (_scope(node), node.op_type)
            position = (*scope_op, seen.get(scope_op, 0))
            seen[scope_op] = position[2] + 1
        order += [(t, node.name, node.op_type, position and (*position, k)) for k, t in enumerate(node.output) if t]
    return dtypes, order


def _scope(node) -> str:
    """The PyTorch module a node came from (the exporter's name scopes, without the node's own
    name); '' where the graph has none (positions then count over the whole graph)."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            return prop.value.rsplit(",", 1)[0]
    return ""


def _trt_marked_runner(path: Path, spec, ranges: dict, name: str):
    """TensorRT (GPU only, never run without it): the graph with every layer output marked, built
    for the build's profile, as a Polygraphy runner."""
    from polygraphy import constants
    from polygraphy.backend.trt import (CreateConfig, EngineFromNetwork, ModifyNetworkOutputs, NetworkFromOnnxPath,
                                        Profile, TrtRunner)

    from .trt_build import profile_shapes

    profile = Profile()
    for tensor, (lo, opt, hi) in profile_shapes(spec, ranges).items():
        profile.add(tensor, lo, opt, hi)
    network = ModifyNetworkOutputs(NetworkFromOnnxPath(str(path), strongly_typed=True), outputs=constants.MARK_ALL)
    return TrtRunner(EngineFromNetwork(network, config=CreateConfig(profiles=[profile])), name=name)


def first_divergence(reference: Path, test: Path, spec, atol: float, rtol: float, *, sizes: dict | None = None,
                     trt_ranges: dict | None = None) -> dict:
    """Compare every layer of `test` with the same-named layer of `reference` (both ONNX graphs of
    one contract graph `spec`); the result says which tensor leaves tolerance first. `trt_ranges`
    (the build's dim ranges) runs `test` in TensorRT instead of ONNX Runtime (GPU only)."""
    import numpy as np
    from polygraphy.comparator import Comparator, CompareFunc, RunResults
    from polygraphy.logger import G_LOGGER

    from .parity import SIZES, ReferenceData, exact_name, onnxrt_runner

    sizes = [dict(sizes or SIZES[0])]
    ref_dtypes, ref_order = _graph_info(reference)
    test_dtypes, order = _graph_info(test)
    ref_at = {position: t for t, _, _, position in ref_order if position is not None}
    with tempfile.TemporaryDirectory(prefix="parity-debug-") as tmp, G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        tmp = Path(tmp)
        ref_runner = onnxrt_runner(_marked(reference, tmp, "reference"), name="reference")
        if trt_ranges is not None:
            test_runner, test_kind = _trt_marked_runner(test, spec, trt_ranges, "build"), "TensorRT engine"
        else:
            test_runner, test_kind = onnxrt_runner(_marked(test, tmp, "build"), name="build"), "ONNX Runtime (CPU)"
        ref_run = Comparator.run([ref_runner], data_loader=ReferenceData(spec, cast=ref_dtypes, sizes=sizes))
        test_run = Comparator.run([test_runner], data_loader=ReferenceData(spec, cast=test_dtypes, sizes=sizes))
        ref_out, test_out = dict(ref_run[0][1][0]), dict(test_run[0][1][0])
        pair = {t: ref_at[position] for t, _, _, position in order if position in ref_at}
        common = [t for t, *_ in order if t in pair and pair[t] in ref_out and t in test_out
                  and np.issubdtype(np.asarray(ref_out[pair[t]]).dtype, np.floating)
                  and np.issubdtype(np.asarray(test_out[t]).dtype, np.floating)
                  and np.asarray(ref_out[pair[t]]).shape == np.asarray(test_out[t]).shape and np.asarray(test_out[t]).size]
        results = RunResults()
        # Each reference tensor under the name of its pair in the build, so the comparator pairs by name.
        # Beyond the build dtype's range (a mask's fp32 minimum against fp16's -65504) both mean the same
        results.add([{t: _clip(ref_out[pair[t]], test_out[t]) for t in common}], runner_name="reference")
        results.add([{t: _clip(test_out[t], test_out[t]) for t in common}], runner_name="build")
        compare = CompareFunc.simple(atol=atol, rtol=rtol, check_error_stat="elemwise", infinities_compare_equal=True,
                                     find_output_func=exact_name)
        with np.errstate(over="ignore", invalid="ignore"):  # Polygraphy's summary statistics of fp16 tensors
            accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    verdicts = {}
    for result in accuracy:
        for iterations in result.values():
            for outputs in iterations:
                verdicts.update(outputs)
    node_of = {t: (node, op) for t, node, op, _ in order}
    choices = _differing_choices(order, pair, ref_out, test_out, node_of)
    follows = _downstream(test, [c["tensor"] for c in choices])
    diverging, after_choice = [], 0
    for t in common:
        r = verdicts.get(t)
        if r is not None and not bool(r):
            if t in follows:
                after_choice += 1
                continue
            node, op = node_of[t]
            diverging.append(dict(tensor=t, reference_tensor=pair[t], node=node, op_type=op,
                                  max_abs=_num(getattr(r, "max_absdiff", None)), max_rel=_num(getattr(r, "max_reldiff", None))))
    return dict(graph=spec.name, reference=str(reference), build=str(test), build_runs_on=test_kind, atol=atol,
                rtol=rtol, sizes=sizes[0], tensors_compared=len(common), layers_in_build=len(order),
                first=diverging[0] if diverging else None, diverging=diverging[:DIVERGING_LISTED + 1],
                diverging_count=len(diverging), first_choice=choices[0] if choices else None,
                diverging_after_choice=after_choice)


def _differing_choices(order, pair, ref_out, test_out, node_of) -> list[dict]:
    """Integer tensors (codes picked by ArgMax or TopK in a graph that samples inside) that differ
    between the two runs, in topological order. Where one differs, the floats after it differ
    because a different code was picked (a near tie of two logits), not because a layer lost
    precision, so they are reported apart."""
    import numpy as np

    out = []
    for t, *_ in order:
        if t not in pair or pair[t] not in ref_out or t not in test_out:
            continue
        a, b = np.asarray(ref_out[pair[t]]), np.asarray(test_out[t])
        if np.issubdtype(b.dtype, np.integer) and np.issubdtype(a.dtype, np.integer) and a.shape == b.shape \
                and not np.array_equal(a, b):
            node, op = node_of[t]
            out.append(dict(tensor=t, node=node, op_type=op, differing=int((a != b).sum()), of=int(b.size)))
    return out


def _downstream(path: Path, tensors: list[str]) -> set[str]:
    """Every tensor computed (directly or not) from any of `tensors` in the graph at `path`."""
    import onnx

    reached = set(tensors)
    for node in onnx.load(str(path), load_external_data=False).graph.node:  # topological order
        if reached.intersection(node.input):
            reached.update(t for t in node.output if t)
    return reached - set(tensors)


def _clip(reference, build):
    import numpy as np

    big = float(np.finfo(np.asarray(build).dtype).max)
    return np.clip(np.asarray(reference).astype(np.float64), -big, big)


def _num(x):
    return None if x is None else float(x)


def debug_graph(model_dir: Path, graph: str, limits, path: Path, *, reference: Path | None = None,
                atol: float | None = None, rtol: float | None = None, engine: Path | None = None) -> dict:
    """The report for one graph of a build: `path` (or its TensorRT `engine`) against `reference`,
    by default a fresh fp32 export of the same graph from the checkpoint at `model_dir`. The
    tolerance defaults to the build precision's parity limit for the graph, absolute and relative."""
    from qwen3_tts_trt.runtime.checkpoint import load_networks
    from qwen3_tts_trt.runtime.contract import dim_ranges, engine_specs

    from . import onnx_graphs
    from .errors import BuildError
    from .parity import parity_limit

    fp32 = replace(limits, precision="fp32", codec_precision="fp32")
    nets = load_networks(model_dir)
    specs = engine_specs(nets.config, fp32)
    if graph not in specs:
        raise BuildError(f"--debug-parity: no graph {graph!r} in this build (graphs: {', '.join(specs)}, or all)")
    limit = parity_limit(graph, limits)
    atol = atol if atol is not None else (limit if limit is not None else 1e-3)
    rtol = rtol if rtol is not None else atol
    ranges = dim_ranges(limits, graph) if engine is not None else None
    with tempfile.TemporaryDirectory(prefix="parity-ref-") as tmp:
        if reference is None:
            modules = onnx_graphs.engine_modules(nets, fp32)
            modules.update(onnx_graphs.voice_encoder_modules(model_dir))
            reference = onnx_graphs.export_engine(graph, modules[graph], specs[graph], fp32, Path(tmp) / f"{graph}.onnx")
            ref_label = "fp32 export of the same graph"
        else:
            ref_label = str(reference)
        report = first_divergence(Path(reference), Path(path), specs[graph], atol, rtol, trt_ranges=ranges)
    report.update(reference=ref_label, precision=limits.codec_precision if graph == "codec" else limits.precision)
    return report


def debug_build(build_dir: Path, graph: str | None = None, *, model: str | Path | None = None,
                reference_dir: Path | None = None, atol: float | None = None, rtol: float | None = None,
                log=print) -> dict:
    """--debug-parity on an existing build folder: each graph (or `graph`) against its fp32 export
    (or the same-named graph in `reference_dir`, e.g. an fp32 build). Writes parity_debug.json."""
    from qwen3_tts_trt.runtime.checkpoint import resolve_checkpoint
    from qwen3_tts_trt.runtime.device_info import detect_gpu, tensorrt_version
    from qwen3_tts_trt.runtime.manifest import check_files, limits_of, load_manifest

    build_dir = Path(build_dir)
    manifest = load_manifest(build_dir)
    check_files(manifest, build_dir)
    limits = limits_of(manifest)
    model_dir = resolve_checkpoint(str(model or manifest["model"]["source"]))
    on_gpu = detect_gpu() is not None and tensorrt_version()[0] is not None
    reports = {}
    for name in ([graph] if graph not in (None, "all") else list(manifest["engines"])):
        entry = manifest["engines"].get(name) or {}
        engine = build_dir / entry["engine"] if on_gpu and entry.get("engine") else None
        reports[name] = debug_graph(model_dir, name, limits, build_dir / entry.get("onnx", f"{name}.onnx"),
                                    reference=(reference_dir / f"{name}.onnx") if reference_dir else None,
                                    atol=atol, rtol=rtol, engine=engine)
        print_report(reports[name], log)
    write_report(build_dir, reports)
    return reports


def write_report(out_dir: Path, reports: dict) -> Path:
    """parity_debug.json beside manifest.json (graphs from an earlier run are kept)."""
    path = Path(out_dir) / REPORT
    old = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text()).get("graphs", {})
        except (json.JSONDecodeError, AttributeError):
            old = {}
    old.update(reports)
    path.write_text(json.dumps(dict(graphs=old), indent=1))
    return path


def print_report(report: dict, log=print) -> None:
    first = report["first"]
    where = f"{report['graph']} ({report['precision']}, {report['build_runs_on']}) vs {report['reference']}"
    choice = report.get("first_choice")
    if first is None:
        log(f"      {where}: no layer leaves tolerance (atol {report['atol']:.0e}, rtol {report['rtol']:.0e}; "
            f"{report['tensors_compared']} tensors compared)")
    else:
        log(f"      {where}: first layer out of tolerance: {first['op_type']} node {first['node']!r} "
            f"(output {first['tensor']!r}): max |diff| {first['max_abs']:.2e}, max rel {first['max_rel']:.2e} "
            f"(atol {report['atol']:.0e}, rtol {report['rtol']:.0e}; {report['diverging_count']} of "
            f"{report['tensors_compared']} tensors out)")
    if choice is not None:
        log(f"      {report['graph']}: {choice['op_type']} node {choice['node']!r} picked other codes "
            f"({choice['differing']} of {choice['of']}; a near tie of two logits), so "
            f"{report['diverging_after_choice']} tensors after it differ for that reason, not a layer's precision")
