"""Polygraphy in the build toolchain (issue 28): build.sh's parity through Polygraphy's comparator,
`--debug-parity` naming the first layer that leaves tolerance, `qwen3-tts-trt inspect`, and every
Polygraphy name the code uses existing in the installed Polygraphy.

TensorRT never runs here: the TensorRT runners (export/parity.py `trt_runner`, export/debug_parity.py
`_trt_marked_runner`, commands/inspect.py `engine_lines`) are code paths for GPU machines; this file
only checks that the Polygraphy names they use exist.
"""

from __future__ import annotations

import ast
import importlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper

from qwen3_tts_trt.export import build as build_mod
from qwen3_tts_trt.export import debug_parity, onnx_graphs, parity
from qwen3_tts_trt.runtime.checkpoint import load_networks
from qwen3_tts_trt.runtime.contract import ENGINES, dim_ranges, engine_specs
from support import LIMITS, ROOT, cli, one_error_line

BROKEN = "talker.model.layers.1.post_attention_layernorm.weight"  # consumed by one Mul (RMSNorm's scale)


def test_polygraphy_parity_gives_todays_verdicts(tiny_build, tiny_custom_voice):
    out, manifest = tiny_build
    nets = load_networks(tiny_custom_voice)
    specs, modules = engine_specs(nets.config, LIMITS), onnx_graphs.engine_modules(nets, LIMITS)
    for name in ENGINES:
        args = modules[name], specs[name], out / f"{name}.onnx", dim_ranges(LIMITS, name)["B"][2]
        today = build_mod.ort_parity(*args)
        limit = build_mod.parity_limit(name, LIMITS)
        worst, within = parity.polygraphy_parity(*args, limit=limit)
        assert worst == pytest.approx(today, rel=1e-9, abs=0), name
        assert within == (today <= limit), name
        assert manifest["engines"][name]["parity_max_abs"] == pytest.approx(worst, rel=1e-9, abs=0)
        if today > 0:  # a limit just below today's number fails in both, at it passes in both
            assert parity.polygraphy_parity(*args, limit=today * 0.99)[1] is False
            assert parity.polygraphy_parity(*args, limit=today)[1] is True


def _broken_copy(src: Path, dst: Path, graph: str, initializer: str, scale: float = 2.0) -> str:
    """`graph` of build `src` written to `dst` with one initializer scaled; returns the node using it."""
    dst.mkdir(parents=True, exist_ok=True)
    model = onnx.load(str(src / f"{graph}.onnx"))
    for init in model.graph.initializer:
        if init.name == initializer:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, initializer))
    onnx.save(model, str(dst / f"{graph}.onnx"), save_as_external_data=True, location=f"{graph}.onnx.data")
    (node,) = [n.name for n in model.graph.node if initializer in n.input]
    return node


def test_debug_parity_names_the_broken_layer(tiny_build, tiny_custom_voice, tmp_path):
    out, _ = tiny_build
    node = _broken_copy(out, tmp_path, "talker_decode", BROKEN)
    report = debug_parity.debug_graph(tiny_custom_voice, "talker_decode", LIMITS, tmp_path / "talker_decode.onnx",
                                      reference=out / "talker_decode.onnx")
    assert report["first"]["node"] == node and report["first"]["op_type"] == "Mul"
    assert report["first"]["max_abs"] > 1e-3
    good = debug_parity.debug_graph(tiny_custom_voice, "talker_decode", LIMITS, out / "talker_decode.onnx",
                                    reference=out / "talker_decode.onnx")
    assert good["first"] is None and good["tensors_compared"] > 100


def test_debug_parity_on_a_build_folder_writes_the_report(tiny_build, tiny_custom_voice, tmp_path):
    """A build whose graph file was damaged after the build: against a fresh fp32 export (the
    default reference), the debug names the layer; the report lands beside manifest.json."""
    out, _ = tiny_build
    copy = tmp_path / "build"
    shutil.copytree(out, copy)
    node = _broken_copy(out, copy, "talker_decode", BROKEN)
    manifest = json.loads((copy / "manifest.json").read_text())
    entry = manifest["engines"]["talker_decode"]
    entry["sizes"] = {p: (copy / p).stat().st_size for p in entry["sizes"]}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    reports = debug_parity.debug_build(copy, "talker_decode", log=lines.append)
    assert reports["talker_decode"]["first"]["node"] == node
    assert f"first layer out of tolerance: Mul node {node!r}" in lines[0]
    saved = json.loads((copy / debug_parity.REPORT).read_text())
    assert saved["graphs"]["talker_decode"]["first"]["node"] == node


def _fp16_graph(tiny_custom_voice, tmp_path, graph: str = "talker_decode") -> tuple:
    limits = replace(LIMITS, precision="fp16")
    nets = load_networks(tiny_custom_voice)
    spec = engine_specs(nets.config, limits)[graph]
    module = onnx_graphs.engine_modules(nets, limits)[graph]
    path = onnx_graphs.export_engine(graph, module, spec, limits, tmp_path / f"{graph}.onnx")
    return limits, path


def test_layers_pair_by_position_not_by_name(tiny_build, tiny_custom_voice, tmp_path):
    """The fp16 predictor's Casts shift the exporter's tensor numbers, so a name in the fp16 graph
    can be another computation in the fp32 one: every pair must be the same op in the same module,
    and every fp32 computation (Casts aside) must find its pair."""
    out, _ = tiny_build
    _, path = _fp16_graph(tiny_custom_voice, tmp_path, "predictor")
    _, ref_order = debug_parity._graph_info(out / "predictor.onnx")
    _, order = debug_parity._graph_info(path)
    ref_at = {pos: t for t, _, _, pos in ref_order if pos is not None}
    at = {pos: t for t, _, _, pos in order if pos is not None}
    assert set(ref_at) == set(at)
    renamed = [pos for pos in at if at[pos] != ref_at[pos]]
    assert renamed  # names alone would have paired these wrongly
    ops = {t: op for t, _, op, _ in ref_order}
    assert all(ops[ref_at[pos]] == pos[1] for pos in renamed)


def test_debug_parity_tells_a_changed_code_from_a_lost_layer(tiny_build, tiny_custom_voice, tmp_path):
    """The fp16 predictor against the fp32 one: within fp16's limit no layer leaves tolerance; where
    the in-graph TopK orders near-tied logits otherwise, what follows it is reported as following a
    choice, not as a layer out of tolerance. A limit far below fp16's error names a layer before it."""
    out, _ = tiny_build
    limits, path = _fp16_graph(tiny_custom_voice, tmp_path, "predictor")
    ref = out / "predictor.onnx"
    good = debug_parity.debug_graph(tiny_custom_voice, "predictor", limits, path, reference=ref)
    assert good["first"] is None and good["tensors_compared"] > 1000
    choice = good["first_choice"]
    if choice is not None:
        assert choice["op_type"] in ("TopK", "ArgMax") and 0 < choice["differing"] <= choice["of"]
    follows = debug_parity._downstream(path, [choice["tensor"]] if choice else [])
    assert good["diverging_after_choice"] <= len(follows)
    lines = []
    debug_parity.print_report(good, lines.append)
    assert "no layer leaves tolerance" in lines[0]
    bad = debug_parity.debug_graph(tiny_custom_voice, "predictor", limits, path, reference=ref, atol=1e-6, rtol=1e-6)
    assert bad["first"] is not None and bad["first"]["tensor"] not in follows


def test_debug_parity_on_fp16_good_and_failing(tiny_build, tiny_custom_voice, tmp_path):
    """An fp16 graph (exported here: ~6 s) against the fp32 build's graph: within fp16's limit no
    layer leaves tolerance; under a limit far below fp16's error, the first one is named."""
    out, _ = tiny_build
    limits, path = _fp16_graph(tiny_custom_voice, tmp_path)
    ref = out / "talker_decode.onnx"
    good = debug_parity.debug_graph(tiny_custom_voice, "talker_decode", limits, path, reference=ref)
    assert good["first"] is None and good["atol"] == build_mod.PARITY_LIMITS["fp16"]["talker_decode"]
    assert good["tensors_compared"] > 50  # names both graphs have (fp16 adds Casts)
    bad = debug_parity.debug_graph(tiny_custom_voice, "talker_decode", limits, path, reference=ref, atol=1e-6, rtol=1e-6)
    first = bad["first"]
    model = onnx.load(str(path), load_external_data=False)
    order = [n.name for n in model.graph.node]
    assert first is not None and first["node"] in order
    earlier = {d["node"] for d in bad["diverging"]}
    assert all(order.index(first["node"]) <= order.index(n) for n in earlier)


def test_inspect_prints_what_the_build_holds(tiny_build):
    out, manifest = tiny_build
    proc = cli("inspect", out)
    text = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    assert f"model {manifest['model']['name']}" in text
    assert f"weights {manifest['model']['weights']}" in text
    assert "gpu none (a CPU build)" in text and "tensorrt none" in text
    assert "limits precision fp32, codec fp32, max_context 256" in text
    for name in ENGINES:
        assert f"graph {name}: {name}.onnx, precision fp32, parity" in text
    assert "    input  inputs_embeds: float [1, " in text and "    output logits: float [" in text
    assert "TopK 15" in text  # the predictor's op histogram
    assert "tensorrt: not installed here" in text
    assert "[I]" not in text and "[W]" not in text  # no Polygraphy chatter


def test_inspect_damaged_build_is_a_clear_error(tiny_build, tmp_path):
    out, _ = tiny_build
    one_error_line(cli("inspect", tmp_path), "no manifest.json")
    copy = tmp_path / "build"
    shutil.copytree(out, copy)
    (copy / "codec.onnx").unlink()
    one_error_line(cli("inspect", copy), "codec.onnx is missing")


def test_help_imports_no_heavy_modules():
    import subprocess
    import sys

    code = ("import sys; from qwen3_tts_trt.commands.main import build_parser; build_parser(); "
            "print(sorted(m for m in ('torch', 'onnx', 'polygraphy', 'tensorrt') if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "polygraphy" not in got and "onnx'" not in got


def _polygraphy_names(path: Path) -> set[str]:
    """Every `polygraphy...` name a file imports: `from polygraphy.X import Y` as polygraphy.X.Y."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("polygraphy"):
            names |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("polygraphy")}
    return names


USES = {  # attributes used on imported Polygraphy objects
    "polygraphy.constants": ["MARK_ALL"],
    "polygraphy.logger.G_LOGGER": ["verbosity", "CRITICAL"],
    "polygraphy.comparator.Comparator": ["run", "compare_accuracy"],
    "polygraphy.comparator.CompareFunc": ["simple"],
    "polygraphy.comparator.RunResults": ["add"],
    "polygraphy.backend.trt.Profile": ["add"],
}


def test_every_polygraphy_name_used_exists():
    files = [ROOT / "export" / "parity.py", ROOT / "export" / "debug_parity.py", ROOT / "commands" / "inspect.py"]
    names = set().union(*map(_polygraphy_names, files))
    assert {"polygraphy.backend.onnxrt.OnnxrtRunner", "polygraphy.backend.trt.TrtRunner"} <= names
    for name in sorted(names | set(USES)):
        module, _, attr = name.rpartition(".")
        try:
            obj = importlib.import_module(name)
        except ImportError:
            # TensorRT runners import without tensorrt (Polygraphy loads it lazily)
            obj = getattr(importlib.import_module(module), attr)
        for member in USES.get(name, []):
            assert hasattr(obj, member), f"{name}.{member}"


def test_a_failing_fp16_build_names_its_first_layer(tiny_custom_voice, tmp_path, monkeypatch):
    """build.sh's own path: an fp16 build whose first graph is held to a limit far below fp16's
    error fails parity, and with --debug-parity the build log names the first layer out of
    tolerance and parity_debug.json lands beside where the manifest would be, before the build stops."""
    from qwen3_tts_trt.export.errors import BuildError

    monkeypatch.setitem(parity.PARITY_LIMITS["fp16"], "talker_prefill", 1e-9)
    lines = []
    with pytest.raises(BuildError, match="talker_prefill: ONNX Runtime differs from PyTorch"):
        build_mod.build(str(tiny_custom_voice), tmp_path, replace(LIMITS, precision="fp16"), log=lines.append,
                        debug_parity="failing")
    named = [line for line in lines if "first layer out of tolerance" in line]
    assert len(named) == 1 and named[0].lstrip().startswith("talker_prefill (fp16")
    report = json.loads((tmp_path / "cpu" / tiny_custom_voice.name / debug_parity.REPORT).read_text())
    first = report["graphs"]["talker_prefill"]["first"]
    assert first is not None and first["node"] in named[0] and report["graphs"]["talker_prefill"]["atol"] == 1e-9
