"""What build.sh runs: checkpoint -> ONNX graphs -> checks -> TensorRT engines -> manifest.

    build.sh MODEL [--precision fp32|fp16|bf16|int8|int4] [--max-context N] [--max-batch N] [--require-trt] ...

Stages, each reported as it runs: resolve the checkpoint, pick builds/<gpu-slug>/<model>/,
refuse a folder that holds another model's or GPU's build, check free disk, export each graph
(skipped when its inputs are unchanged), check it (onnx.checker, shape inference, TensorRT
op/dtype table), compare it in ONNX Runtime against the PyTorch module, build its TensorRT engine
when TensorRT and a GPU are here, write manifest.json, print a summary table.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from qwen3_tts_trt.runtime.checkpoint import load_networks, resolve_checkpoint
from qwen3_tts_trt.runtime.config import load_model_config
from qwen3_tts_trt.runtime.contract import (CODEC, CODEC_PRECISIONS, PRECISIONS, TALKER_DECODE, TALKER_PREFILL,
                              PREDICTOR, WEIGHT_ONLY_BITS, EngineLimits, dim_ranges, engine_specs, onnx_runtime_only,
                              specs_to_json)
from qwen3_tts_trt.runtime.device_info import detect_gpu, tensorrt_version
from qwen3_tts_trt.runtime.errors import EngineMismatchError, Qwen3TTSError
from qwen3_tts_trt.runtime.identity import weights_identity
from qwen3_tts_trt.runtime.manifest import MANIFEST, SCHEMA, limits_of

from . import onnx_graphs, quantize
from .errors import BuildError
from .parity import PARITY_LIMITS, VOICE_PARITY_LIMITS, ort_parity, parity_limit  # noqa: F401  (build_mod.X for callers)
from .op_support import check_model
from .parity import graph_parity

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["runtime/model", "runtime/contract.py", "runtime/sampling.py", "export/onnx_graphs.py"]
# int8/int4 graphs are exported in fp32 first, then quantized: the fp32 files are what must fit.
BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 4, "int4": 4}
QUANTIZED_GRAPHS = (TALKER_PREFILL, TALKER_DECODE, PREDICTOR)  # what --precision int8|int4 quantizes


def _quantizes(graph: str, limits: EngineLimits) -> bool:
    """Whether `graph` is quantized after export under `limits` (--precision, --codec-precision)."""
    if graph == CODEC:
        return limits.codec_precision == "int8"
    return graph in QUANTIZED_GRAPHS and limits.precision in WEIGHT_ONLY_BITS
@dataclass
class GraphResult:
    name: str
    onnx_bytes: int = 0
    reused: bool = False
    parity: float | None = None
    parity_limit: float | None = None
    parity_note: str = ""
    op_problems: list[str] = field(default_factory=list)
    engine: str | None = None
    engine_note: str = ""


def _sha256(path: Path, limit: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        remaining = limit
        while chunk := f.read(1 << 20 if remaining is None else min(1 << 20, remaining)):
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining <= 0:
                    break
    return h.hexdigest()


def source_fingerprint() -> str:
    return _fingerprint([ROOT / rel for rel in SOURCES])


def _fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(f.relative_to(ROOT).as_posix().encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


def estimate_bytes(nets_params: int, codec_params: int, limits: EngineLimits, trt: bool) -> int:
    """ONNX files (+ engines when TensorRT builds) for the talker/predictor weights and the codec,
    with 15% headroom; the talker's graphs share weights across prefill and decode files."""
    lm = nets_params * BYTES[limits.precision] * 2  # prefill and decode each carry the talker
    codec = codec_params * BYTES[limits.codec_precision]
    return int((lm + codec) * (2 if trt else 1) * 1.15)


def model_name(source: str, model_dir: Path) -> str:
    return Path(source).name if Path(source).expanduser().is_dir() else source.rstrip("/").split("/")[-1] or model_dir.name


def _files(path: Path) -> list[Path]:
    return [p for p in (path, path.with_name(path.name + ".data")) if p.exists()]


def _file_hashes(path: Path) -> dict[str, str]:
    """sha256 of a graph and its external-data file (gigabytes at 0.6B: hashed once per build)."""
    return {p.name: _sha256(p) for p in _files(path)}


def build(source: str, out_root: Path, limits: EngineLimits, *, require_trt=False, force=False, parity=True,
          opt_level=3, log=print, debug_parity: str | None = None) -> dict:
    t_start = time.time()
    log(f"[1/6] checkpoint: {source}")
    model_dir = resolve_checkpoint(source)
    cfg = load_model_config(model_dir)
    name = model_name(source, model_dir)
    log(f"      {cfg.variant} {cfg.size}, talker {cfg.talker.num_layers}x{cfg.talker.hidden_size}, config {cfg.config_hash}")

    gpu = detect_gpu()
    trt_ver, trt_why = tensorrt_version()
    slug = gpu["slug"] if gpu else "cpu"
    out_dir = Path(out_root) / slug / name
    log(f"[2/6] output: {out_dir} (GPU: {gpu['name'] if gpu else 'none'}; TensorRT: {trt_ver or 'not available'})")
    weights = weights_identity(model_dir)
    old = _previous_manifest(out_dir, cfg.config_hash, weights, gpu, force)

    nets = load_networks(model_dir)
    lm_params = sum(p.numel() for m in (nets.talker, nets.predictor) for p in m.parameters())
    codec_params = sum(p.numel() for p in nets.codec.parameters())
    can_trt = gpu is not None and trt_ver is not None
    need = estimate_bytes(lm_params, codec_params, limits, can_trt)
    out_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out_dir).free
    if free < need:
        raise BuildError(f"not enough disk in {out_dir}: about {need / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free")

    specs = engine_specs(cfg, limits)
    modules = onnx_graphs.engine_modules(nets, limits)
    modules.update(onnx_graphs.voice_encoder_modules(model_dir))  # Base: speaker and codec encoders
    key_base = dict(config=cfg.config_hash, weights=weights, limits=limits.to_dict(),
                    opset=onnx_graphs.OPSET, source=source_fingerprint(), torch=torch.__version__)
    ort_only = onnx_runtime_only(limits)
    if ort_only and require_trt:
        raise BuildError(f"--require-trt: {ort_only}")
    if require_trt and not can_trt:  # before any export: a build that cannot succeed leaves the folder as it was
        why = trt_why if trt_ver is None else "no NVIDIA GPU is visible"
        raise BuildError(f"--require-trt: engines were not built because {why}")
    results, entries = [], {}
    log(f"[3/6] export + checks ({len(specs)} graphs, opset {onnx_graphs.OPSET}, {limits.precision})")
    # A bar on the terminal while the graphs export (minutes each at 0.6B); tqdm hides it when
    # stderr is not a terminal (CI logs, tests), where the per-graph lines below say the same.
    progress = tqdm(total=len(specs), unit="graph", desc="      graphs", disable=None, leave=False,
                    bar_format="{desc} {n_fmt}/{total_fmt} [{elapsed}] {postfix}")
    for graph in specs:
        res = GraphResult(graph)
        path = out_dir / f"{graph}.onnx"
        quantized = _quantizes(graph, limits)
        key = _graph_key(key_base, graph, quantized)
        prev = (old or {}).get("engines", {}).get(graph, {})
        files = _file_hashes(path) if prev.get("key") == key else {}
        if files and files == prev.get("files") and not force:  # same inputs, untouched files
            res.reused, res.parity, res.op_problems = True, prev.get("parity_max_abs"), prev.get("op_problems", [])
            res.parity_limit, res.parity_note = prev.get("parity_limit"), prev.get("parity_note", "")
            quant = prev.get("quantized")
            log(f"      {graph}: unchanged, reused")
        else:
            t0 = time.time()
            progress.set_postfix_str(f"{graph}: exporting")
            onnx_graphs.export_engine(graph, modules[graph], specs[graph], limits, path)
            _check_graph(path)
            res.op_problems = check_model(path).problems  # before quantizing: MatMulNBits is ONNX Runtime's own
            quant = None
            if quantized:
                progress.set_postfix_str(f"{graph}: quantizing")
                quant = _quantize_logged(graph, path, path, limits, cfg, log)
                _check_graph(path)
            if quantized and parity:
                # Quantized weights differ from the checkpoint by design; their measure is the
                # quality gate (tests/test_quality_gate.py, docs/benchmarks.md), not a max-abs limit.
                res.parity_note = _quantized_parity_note(graph, limits)
            elif parity and limits.precision != "bf16" and limits.codec_precision != "bf16":
                progress.set_postfix_str(f"{graph}: comparing with PyTorch")
                res.parity_limit = parity_limit(graph, limits)
                res.parity, within = graph_parity(modules[graph], specs[graph], path, dim_ranges(limits, graph)["B"][2],
                                                  res.parity_limit)  # Polygraphy's comparator (export/parity.py)
                if not within:
                    if debug_parity:  # where in the graph it goes wrong, before the build stops
                        _debug_parity_logged(out_dir, graph, limits, path, model_dir, log)
                    raise BuildError(f"{graph}: ONNX Runtime differs from PyTorch by {res.parity:.1e}, more than the "
                                     f"{res.parity_limit:.0e} this graph is allowed: the exported graph is not "
                                     "faithful; report it with the build log (--skip-parity builds anyway, unchecked)")
            elif parity:
                res.parity_note = "bf16: ONNX Runtime has no CPU kernels; compare on the GPU"
            log(f"      {graph}: exported in {time.time() - t0:.1f} s, ops {'OK' if not res.op_problems else res.op_problems}"
                + (f", parity {res.parity:.1e}" if res.parity is not None else ""))
            files = _file_hashes(path)
        res.onnx_bytes = sum(p.stat().st_size for p in _files(path))
        entries[graph] = dict(key=key, onnx=path.name, files=files, sizes={p.name: p.stat().st_size for p in _files(path)},
                              parity_max_abs=res.parity, parity_limit=res.parity_limit, parity_note=res.parity_note,
                              op_problems=res.op_problems, quantized=quant, engine=None, not_built_reason=None)
        results.append((res, prev))
        progress.update()
    progress.close()

    log("[4/6] TensorRT engines")
    if not can_trt or ort_only:
        why = (trt_why if trt_ver is None else "no NVIDIA GPU is visible") if not can_trt else ort_only
        for res, _ in results:
            res.engine_note = f"not built: {why}"
            entries[res.name]["not_built_reason"] = why
        log(f"      engines were not built: {why}")
        if require_trt:
            raise BuildError(f"--require-trt: engines were not built because {why}")
    else:
        from .trt_build import build_engine

        for res, prev in results:
            engine_path = out_dir / f"{res.name}.engine"
            entry = entries[res.name]
            if res.reused and prev.get("engine") and engine_path.exists() and prev.get("engine_key") == entry["key"]:
                entry.update(engine=engine_path.name, engine_sha256=prev.get("engine_sha256"), engine_key=entry["key"],
                             engine_bytes=engine_path.stat().st_size)
                res.engine = "reused"
                continue
            build_engine(out_dir / entry["onnx"], engine_path, specs[res.name], dim_ranges(limits, res.name),
                         out_dir.parent / "timing.cache",
                         opt_level=opt_level, log=log)
            entry.update(engine=engine_path.name, engine_sha256=_sha256(engine_path), engine_key=entry["key"],
                         engine_bytes=engine_path.stat().st_size)
            res.engine = f"{engine_path.stat().st_size / 1e6:.1f} MB"

    log("[5/6] manifest")
    manifest = dict(
        schema=SCHEMA,
        model=dict(name=name, source=str(source), variant=cfg.variant, size=cfg.size, config_hash=cfg.config_hash,
                   weights=weights),
        gpu=gpu,
        versions=dict(tensorrt=trt_ver, torch=torch.__version__, onnx=_version("onnx"),
                      onnxruntime=_version("onnxruntime"), python=platform.python_version()),
        limits=limits.to_dict(), opset=onnx_graphs.OPSET, min_tensorrt="10.0",
        contract=json.loads(specs_to_json(specs)), engines=entries,
        built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), build_seconds=round(time.time() - t_start, 1),
    )
    text = json.dumps(manifest, indent=1)
    (out_dir / MANIFEST).write_text(text)
    log("[6/6] summary")
    log(summary_table([r for r, _ in results]))
    if debug_parity not in (None, "failing"):  # on demand: a graph's name, or "all"
        for graph in (specs if debug_parity == "all" else [debug_parity]):
            _debug_parity_logged(out_dir, graph, limits, out_dir / f"{graph}.onnx", model_dir, log)
    return json.loads(text)  # exactly what the file holds


def _debug_parity_logged(out_dir: Path, graph: str, limits: EngineLimits, path: Path, model_dir: Path, log) -> None:
    """--debug-parity: every layer of `graph` against its fp32 export (export/debug_parity.py)."""
    from .debug_parity import debug_graph, print_report, write_report

    log(f"      {graph}: --debug-parity: comparing every layer with the fp32 export")
    engine = out_dir / f"{graph}.engine"  # TensorRT where it is here and built one (GPU only)
    on_gpu = engine.exists() and detect_gpu() is not None and tensorrt_version()[0] is not None
    report = debug_graph(model_dir, graph, limits, path, engine=engine if on_gpu else None)
    write_report(out_dir, {graph: report})
    print_report(report, log)


def _graph_key(key_base: dict, graph: str, quantized: bool) -> str:
    """What a graph file depends on; an unchanged key and untouched files let a rebuild reuse it."""
    parts = dict(key_base, graph=graph)
    if quantized:
        parts.update(quantizer=_fingerprint([Path(quantize.__file__)]), block=quantize.BLOCK_SIZE)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _quantize_logged(graph: str, src: Path, dst: Path, limits: EngineLimits, cfg, log) -> dict:
    """Quantize one graph, log what it did, and return its manifest entry's `quantized` record."""
    t0 = time.time()
    if graph == CODEC:
        report = quantize.quantize_codec(src, dst, cfg.codec.codebook_size, limits.max_chunk)
        log(f"      {graph}: {report.convs} Convs to int8 in {time.time() - t0:.1f} s, "
            f"{report.bytes_before / 1e6:.0f} -> {report.bytes_after / 1e6:.0f} MB")
        return dict(bits=8, convs=report.convs, activations="uint8, calibrated (MinMax)", weights_per_channel=True,
                    calibration=dict(utterances=quantize.CODEC_CALIBRATION_UTTERANCES,
                                     frames=quantize.CODEC_CALIBRATION_FRAMES, codes="uniform random, seed 0"),
                    fp32_bytes=report.bytes_before)
    report = quantize.quantize_graph(src, dst, limits.precision)
    log(f"      {graph}: {report.matmuls} MatMuls to {limits.precision} in {time.time() - t0:.1f} s, "
        f"{report.bytes_before / 1e6:.0f} -> {report.bytes_after / 1e6:.0f} MB")
    return dict(bits=WEIGHT_ONLY_BITS[limits.precision], block_size=quantize.BLOCK_SIZE, symmetric=True,
                accuracy_level=quantize.ACCURACY_LEVEL, matmuls=report.matmuls, weights=report.weights,
                fp32_bytes=report.bytes_before)


def _quantized_parity_note(graph: str, limits: EngineLimits) -> str:
    if graph == CODEC:
        return "int8 codec: see the quality gate (SNR)"
    return f"{limits.precision} weights: see the quality gate"


def quantize_build(fp32_dir: Path, out_dir: Path, precision: str = "fp32", log=print, *,
                   codec_precision: str = "fp32", model: str | Path | None = None) -> dict:
    """An int8/int4 build (and/or one with the int8 codec) made from an fp32 build without
    exporting again (minutes saved at 0.6B): the graphs that `precision` / `codec_precision`
    quantize are quantized, the others copied, and the manifest equals what `build(...)` writes
    for the same inputs, so a later build.sh into `out_dir` reuses it. `model` is the checkpoint
    (default: the one the fp32 build recorded); the int8 codec's calibration reads its config."""
    fp32_dir, out_dir = Path(fp32_dir), Path(out_dir)
    src = json.loads((fp32_dir / MANIFEST).read_text())
    if src["limits"]["precision"] != "fp32" or src["limits"]["codec_precision"] != "fp32":
        raise BuildError(f"{fp32_dir} is a {src['limits']['precision']}/{src['limits']['codec_precision']} build; "
                         "quantize an fp32 build")
    if precision not in ("fp32", *WEIGHT_ONLY_BITS) or codec_precision not in ("fp32", "int8"):
        raise BuildError(f"precision must be fp32 or one of {', '.join(WEIGHT_ONLY_BITS)}, codec precision fp32 or int8")
    if precision == "fp32" and codec_precision == "fp32":
        raise BuildError("nothing to quantize: pass precision int8/int4 or codec_precision int8")
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(json.dumps(src))
    manifest["limits"].update(precision=precision, codec_precision=codec_precision)
    limits = limits_of(manifest)
    cfg = load_model_config(resolve_checkpoint(model or src["model"]["source"])) if codec_precision == "int8" else None
    old_base = dict(config=src["model"]["config_hash"], weights=src["model"]["weights"], limits=src["limits"],
                    opset=src["opset"], source=source_fingerprint(), torch=torch.__version__)
    key_base = dict(old_base, limits=manifest["limits"])
    for graph, entry in manifest["engines"].items():
        if src["engines"][graph].get("key") != _graph_key(old_base, graph, False):
            raise BuildError(f"{fp32_dir}: {graph} was exported by other code or versions; rebuild it first")
        path = out_dir / entry["onnx"]
        quantized = _quantizes(graph, limits)
        if quantized:
            entry.update(quantized=_quantize_logged(graph, fp32_dir / entry["onnx"], path, limits, cfg, log),
                         parity_max_abs=None, parity_limit=None, parity_note=_quantized_parity_note(graph, limits))
        else:
            for f in _files(fp32_dir / entry["onnx"]):
                shutil.copyfile(f, out_dir / f.name)
        entry.update(key=_graph_key(key_base, graph, quantized), files=_file_hashes(path),
                     sizes={p.name: p.stat().st_size for p in _files(path)}, engine=None,
                     not_built_reason=onnx_runtime_only(limits))
    manifest["built_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return manifest


def _previous_manifest(out_dir: Path, config_hash: str, weights: str, gpu: dict | None, force: bool) -> dict | None:
    path = out_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # unreadable: rebuild everything
    if force:
        return None
    old_model = old.get("model", {})
    if old_model.get("config_hash") != config_hash:
        raise EngineMismatchError(
            f"{out_dir} holds a build of another model ({old_model.get('name')!r}, config {old_model.get('config_hash')}); "
            "pass --force to replace it or choose another --out")
    if old_model.get("weights") not in (None, weights):  # same config, other weights: another checkpoint
        raise EngineMismatchError(
            f"{out_dir} holds a build of another checkpoint with the same config but other weights (built from "
            f"{old_model.get('source')!r}); pass --force to replace it or choose another --out")
    old_gpu = (old.get("gpu") or {}).get("name")
    if old_gpu != (gpu or {}).get("name"):
        raise EngineMismatchError(
            f"{out_dir} holds engines built on {old_gpu or 'a machine without GPU'}, this machine has "
            f"{(gpu or {}).get('name') or 'no GPU'}; pass --force to replace them or choose another --out")
    return old


def _check_graph(path: Path) -> None:
    import onnx

    onnx.checker.check_model(str(path), full_check=False)  # the path form works past 2 GB
    onnx.shape_inference.infer_shapes_path(str(path), str(path) + ".inferred")
    Path(str(path) + ".inferred").unlink()


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except ImportError:
        return None


def summary_table(results: list[GraphResult]) -> str:
    rows = [("graph", "onnx", "parity max|diff| (limit)", "TensorRT ops", "engine")]
    for r in results:
        parity = (f"{r.parity:.1e}" + (f" (<= {r.parity_limit:.0e})" if r.parity_limit is not None else "")
                  if r.parity is not None else (r.parity_note or "skipped"))
        ops = "OK" if not r.op_problems else f"{len(r.op_problems)} problem(s)"
        onnx_size = f"{r.onnx_bytes / 1e6:.1f} MB" + (" (reused)" if r.reused else "")
        rows.append((r.name, onnx_size, parity, ops, r.engine or r.engine_note))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        prog="build.sh", description="Export Qwen3-TTS-12Hz to ONNX and build TensorRT engines for this GPU.",
        epilog="Engines go to OUT/<gpu-slug>/<model-name>/ with manifest.json. Without TensorRT or a GPU the ONNX "
               "graphs are exported and checked, and the manifest says why engines were not built.")
    ap.add_argument("model", help="checkpoint directory or hub id (e.g. Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice)")
    ap.add_argument("--out", default="builds", help="root of the builds tree (default: builds)")
    ap.add_argument("--precision", default="fp32", choices=list(PRECISIONS),
                    help="talker and predictor: fp32/fp16/bf16, or weight-only int8/int4 graphs for ONNX Runtime on "
                         "the CPU (see the README: which precision on CPU)")
    ap.add_argument("--codec-precision", default="fp32", choices=list(CODEC_PRECISIONS),
                    help="the codec: fp32/fp16/bf16, or int8 convolutions for ONNX Runtime on the CPU (faster, "
                         "not exact: see the README)")
    ap.add_argument("--max-context", type=int, default=2048, help="talker positions (prompt + frames)")
    ap.add_argument("--max-prompt", type=int, default=512, help="prefill positions")
    ap.add_argument("--max-chunk", type=int, default=10, help="codec frames per call")
    ap.add_argument("--max-batch", type=int, default=1,
                    help="streams one engine serves at once (the step loop's KV rows; `serve --streams`); 1 by "
                         "default, since extra rows cost a lone stream time on the CPU (docs/benchmarks.md)")
    ap.add_argument("--opt-level", type=int, default=3, choices=range(6), help="TensorRT builder optimization level")
    ap.add_argument("--require-trt", action="store_true", help="fail unless TensorRT engines were built")
    ap.add_argument("--skip-parity", action="store_true", help="skip the ONNX Runtime vs PyTorch comparison")
    ap.add_argument("--force", action="store_true", help="rebuild everything; replace another model's build")
    ap.add_argument("--debug-parity", nargs="?", const="failing", default=None, metavar="GRAPH",
                    help="when a graph fails parity, mark every layer's output and name the first one (in "
                         "topological order) where this build's graph leaves tolerance against the fp32 export "
                         "of the same graph; with GRAPH (or 'all'), do it for that graph after the build even "
                         "if it passes. Prints it and writes parity_debug.json beside manifest.json")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        limits = EngineLimits(max_context=args.max_context, max_prompt=args.max_prompt, max_chunk=args.max_chunk,
                              max_batch=args.max_batch, precision=args.precision, codec_precision=args.codec_precision,
                              chunk_ramp=tuple(c for c in EngineLimits().chunk_ramp if c <= args.max_chunk))
        build(args.model, Path(args.out), limits, require_trt=args.require_trt, force=args.force,
              parity=not args.skip_parity, opt_level=args.opt_level, debug_parity=args.debug_parity)
    except (Qwen3TTSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
