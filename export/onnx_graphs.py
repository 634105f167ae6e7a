"""Export the four engine modules to ONNX, with names, shapes and dtypes from `runtime.contract`.

The dynamo exporter (torch >= 2.9 default) at opset 18: every op it emits for these graphs is in
TensorRT 10.0+'s ONNX parser (checked by export/op_support.py), attention stays decomposed
(MatMul/Softmax), and weights go to an external-data file next to each graph, which is required
past 2 GB and harmless below.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import warnings
from pathlib import Path

import torch

from qwen3_tts_trt.runtime.checkpoint import Networks
from qwen3_tts_trt.runtime.contract import VOICE_ENGINES, EngineLimits, EngineSpec, dim_ranges, engine_specs
from qwen3_tts_trt.runtime.model.engines import build_engine_modules

OPSET = 18
TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
                "int64": torch.int64}


def engine_modules(nets: Networks, limits: EngineLimits) -> dict[str, torch.nn.Module]:
    return build_engine_modules(nets.talker, nets.predictor, nets.codec, limits.precision, limits.codec_precision)


def voice_encoder_modules(model_dir) -> dict[str, torch.nn.Module]:
    """The speaker and codec encoders of a Base checkpoint (always fp32), keyed by contract name;
    none for other variants."""
    from qwen3_tts_trt.runtime.checkpoint import load_voice_encoders
    from qwen3_tts_trt.runtime.config import load_model_config
    from qwen3_tts_trt.runtime.contract import CODEC_ENCODER, SPEAKER_ENCODER

    if load_model_config(model_dir).speaker_encoder is None:
        return {}
    nets = load_voice_encoders(model_dir)
    return {SPEAKER_ENCODER: nets.speaker_encoder, CODEC_ENCODER: nets.codec_encoder}


def example_inputs(spec: EngineSpec, sizes: dict[str, int]) -> tuple[torch.Tensor, ...]:
    """Inputs of the right dtype with the symbolic axes set to `sizes` (values valid for the graph)."""
    gen = torch.Generator().manual_seed(0)
    out = []
    for t in spec.inputs:
        shape = [sizes[d] if isinstance(d, str) else d for d in t.shape]
        dtype = TORCH_DTYPES[t.dtype]
        if t.name == "positions":
            x = torch.full(shape, sizes["P"], dtype=dtype)
        elif t.name == "code0":
            x = torch.randint(0, 2048, shape, generator=gen)
        elif t.name == "codes":
            x = torch.randint(0, 2048, shape, generator=gen)
        elif t.name == "top_k":
            x = torch.full(shape, 50, dtype=dtype)
        elif t.name in ("temperature", "top_p"):
            x = torch.full(shape, 0.9 if t.name == "temperature" else 1.0, dtype=dtype)
        elif t.name == "pcm":  # reference audio: a tone in noise, in [-1, 1] like real audio
            n = torch.arange(shape[-1])
            x = (0.3 * torch.sin(n * 0.0577) + 0.1 * torch.randn(shape, generator=gen)).to(dtype)
        elif t.name == "noise":
            x = torch.rand(shape, generator=gen)
        elif dtype == torch.int64:  # codec frame counters
            x = torch.full(shape, sizes.get("frames", 0), dtype=dtype)
        else:
            x = torch.randn(shape, generator=gen).to(dtype)
        out.append(x)
    return tuple(out)


EXPORT_SIZES = {"B": 1, "S": 5, "P": 4, "T": 3, "N": 37123, "frames": 0}


def export_sizes(name: str, limits: EngineLimits) -> dict[str, int]:
    """Example sizes to trace `name` with: a dynamic batch axis needs an example of 2 (an axis traced
    at 1 is specialised to 1)."""
    return dict(EXPORT_SIZES, B=2) if dim_ranges(limits, name)["B"][2] > 1 else EXPORT_SIZES


def _dynamic_shapes(spec: EngineSpec, limits: EngineLimits, module: torch.nn.Module):
    ranges = dim_ranges(limits, spec.name)
    dims = {}
    for sym in ("B", "S", "P", "T", "N"):
        lo, _, hi = ranges[sym]
        if hi > lo:
            dims[sym] = torch.export.Dim(sym, min=lo, max=hi)
    shapes = []
    for t in spec.inputs:
        axes = {i: dims[d] for i, d in enumerate(t.shape) if isinstance(d, str) and d in dims}
        shapes.append(axes or None)
    # In forward() parameter order; inputs behind a `*args` parameter form one tuple.
    params = list(inspect.signature(module.forward).parameters.values())
    out = []
    for i, p in enumerate(params):
        out.append(tuple(shapes[i:]) if p.kind == p.VAR_POSITIONAL else shapes[i])
    return tuple(out)


def optimize_graph(model) -> None:
    """onnxscript's default optimizer, in the order that makes it cheap, less one costly rule.

    The exporter's `optimize=True` runs the pattern rewriter over the unfolded graph twice, which took
    ~200 s of the ~250 s export of the predictor (15 unrolled steps, ~2,900 nodes) on 2 CPU cores.
    Folding constants first leaves a graph the rules scan in ~1 s, and `SlicesSplit` (15 s, nothing to
    rewrite in these graphs) is left out. The graphs come out node for node as `optimize=True` made
    them (checked on all four at tiny and 0.6B shapes when this was written).
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common
    from onnxscript import rewriter
    from onnxscript.optimizer import _constant_folding

    rules = [r for r in rewriter._DEFAULT_REWRITE_RULES if getattr(r, "name", "") != "SlicesSplit"]
    fold = _constant_folding.FoldConstantsPass(
        shape_inference=True, input_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_INPUT_SIZE_LIMIT,
        output_size_limit=_constant_folding.DEFAULT_CONSTANT_FOLD_OUTPUT_SIZE_LIMIT)
    ir.passes.Sequential(
        common.InlinePass(),
        ir.passes.PassManager([fold, common.RemoveUnusedNodesPass()], steps=2, early_stop=True),
        ir.passes.PassManager([rewriter.RewritePass(rules), fold, common.RemoveUnusedNodesPass(),
                               common.RemoveUnusedFunctionsPass(), common.RemoveUnusedOpsetsPass()],
                              steps=2, early_stop=True),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.LiftSubgraphInitializersToMainGraphPass(),
        common.DeduplicateInitializersPass(),
        common.CommonSubexpressionEliminationPass(),
        common.OutputFixPass(),
        common.NameFixPass(),
    )(model)


def export_engine(name: str, module: torch.nn.Module, spec: EngineSpec, limits: EngineLimits, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The exporter logs one warning per torchvision op it cannot register; torchvision is not used.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    args = example_inputs(spec, export_sizes(name, limits))
    sink = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(sink), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        # torch.export first (the ONNX front end rewrites nested dynamic_shapes tuples into lists,
        # which torch.export then rejects for `*args` inputs), then translate the program.
        # The voice encoders' frame counts are ceil(N / stride) expressions that the shape solver
        # cannot prove > 1 when it checks a view; their guards become runtime asserts instead.
        exported = torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(spec, limits, module),
                                       strict=False, prefer_deferred_runtime_asserts_over_guards=name in VOICE_ENGINES)
        program = torch.onnx.export(exported, args, dynamo=True, opset_version=OPSET, input_names=spec.input_names,
                                    output_names=spec.output_names, optimize=False, verbose=False)
        optimize_graph(program.model)
    program.save(str(path), external_data=True)
    return path


def export_all(nets: Networks, limits: EngineLimits, out_dir: Path, only: list[str] | None = None) -> dict[str, Path]:
    specs = engine_specs(nets.config, limits)
    modules = engine_modules(nets, limits)
    paths = {}
    for name, module in modules.items():
        if only and name not in only:
            continue
        paths[name] = export_engine(name, module, specs[name], limits, Path(out_dir) / f"{name}.onnx")
    return paths
