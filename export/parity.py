"""build.sh's parity check (ONNX Runtime against the PyTorch module) through Polygraphy's comparator.

The feeds are the project's own (`ReferenceData`: the two shape settings `ort_parity` has
always used), the reference side is the PyTorch module's outputs handed to Polygraphy as a stored
run (`RunResults`), the other side is Polygraphy's ONNX Runtime runner on the CPU (or its TensorRT
runner on an engine, where TensorRT is present: a code path that is never run on a machine without
it), and the tolerance is the graph's PARITY_LIMITS entry as Polygraphy's `atol` with `rtol` 0 and
the `max` statistic, so a graph passes exactly when max |ONNX Runtime - PyTorch| <= its limit, as
before. Outputs are compared in float64 (integer codes too: a code that differs is a difference
>= 1). The codec encoder keeps its own measure (the share of frames whose codes differ), so it
stays on `ort_parity`; so does every graph when Polygraphy is not installed.

Polygraphy is imported lazily: importing this module costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from qwen3_tts_trt.runtime.contract import CODEC_ENCODER, EngineLimits

from . import onnx_graphs

# Largest |ONNX Runtime - PyTorch| each graph may show before the build fails. fp32: about 5x the
# worst seen (1.8e-4 for talker_prefill on an official-code 0.6B checkpoint: logits of magnitude
# ~10 through 28 layers; 1.4e-5 at 0.6B random, 2e-6 tiny); the codec's PCM has seen 3e-7. A
# predictor code that differs counts as a difference >= 1 and always fails. fp16: one fp16 ulp at
# |x| ~ 16 is 1.6e-2, so 5e-2 (the graph is compared with the fp16 PyTorch module).
PARITY_LIMITS = {
    "fp32": {"talker_prefill": 1e-3, "talker_decode": 1e-3, "predictor": 1e-3, "codec": 1e-4},
    "fp16": {"talker_prefill": 5e-2, "talker_decode": 5e-2, "predictor": 5e-2, "codec": 5e-2},
}

# The voice encoders: the x-vector to the 1e-4 (seen: 1e-6). For the codec encoder the
# figure is the share of frames whose codes differ: ONNX Runtime's embeddings sit as close to fp64
# as PyTorch's (5e-7), but a residual within ~1e-6 of two codewords may go either way under another
# kernel (seen: 1 frame of 154 on 12 s of test audio, 0 on shorter clips).
VOICE_PARITY_LIMITS = {"speaker_encoder": 1e-4, "codec_encoder": 0.05}


def parity_limit(graph: str, limits: EngineLimits) -> float | None:
    if graph in VOICE_PARITY_LIMITS:  # always fp32
        return VOICE_PARITY_LIMITS[graph]
    precision = limits.codec_precision if graph == "codec" else limits.precision
    return PARITY_LIMITS.get(precision, {}).get(graph)


def ort_parity(module: torch.nn.Module, spec, path: Path, max_batch: int = 1) -> float:
    """Max |ONNX Runtime - PyTorch| over every output, at two shape settings inside the profile (the
    second with several rows where the graph has a batch axis)."""
    import numpy as np

    from qwen3_tts_trt.runtime.backends.onnx_backend import ort_session

    sess = ort_session(path)
    worst = 0.0
    for sizes in (dict(B=1, S=7, P=9, T=1, N=24000, frames=0), dict(B=min(3, max_batch), S=2, P=3, T=4, N=37123, frames=5)):
        args = onnx_graphs.example_inputs(spec, sizes)
        with torch.inference_mode():
            expected = module(*args)
        got = sess.run(None, {t.name: a.numpy() for t, a in zip(spec.inputs, args)})
        for g, e in zip(got, expected):
            if g.size and spec.name == CODEC_ENCODER:  # [B, 16, frames]: share of frames that differ
                worst = max(worst, float((g != e.numpy()).any(axis=1).mean()))
            elif g.size:
                worst = max(worst, float(np.abs(g.astype(np.float64) - e.float().numpy()).max()))
    return worst

SIZES = (dict(B=1, S=7, P=9, T=1, N=24000, frames=0), dict(B=3, S=2, P=3, T=4, N=37123, frames=5))
TORCH_RUNNER = "pytorch"


def reference_sizes(max_batch: int = 1) -> list[dict]:
    """The shape settings parity runs at (the second with several rows where the graph batches)."""
    return [dict(SIZES[0]), dict(SIZES[1], B=min(3, max_batch))]


class ReferenceData:
    """A Polygraphy data loader (any iterable of feed dicts): the inputs `ort_parity` feeds, one
    iteration per shape setting; `cast` maps input names to the numpy dtype a graph wants (an fp16
    graph's float inputs)."""

    def __init__(self, spec, max_batch: int = 1, cast: dict | None = None, sizes: list[dict] | None = None):
        self.spec, self.cast = spec, cast or {}
        self.sizes = sizes if sizes is not None else reference_sizes(max_batch)

    def args(self):
        from . import onnx_graphs

        for sizes in self.sizes:
            yield onnx_graphs.example_inputs(self.spec, sizes)

    def __iter__(self):
        for args in self.args():
            feed = {t.name: a.numpy() for t, a in zip(self.spec.inputs, args)}
            yield {k: v.astype(self.cast[k]) if k in self.cast else v for k, v in feed.items()}

    def __len__(self):
        return len(self.sizes)


def torch_outputs(module, data: ReferenceData) -> list[dict]:
    """The PyTorch module's outputs for each iteration of `data`, by output name, as numpy."""
    import torch

    out = []
    for args in data.args():
        with torch.inference_mode():
            got = module(*args)
        got = got if isinstance(got, (tuple, list)) else (got,)
        out.append({n: (t.float() if t.is_floating_point() else t).numpy()
                    for n, t in zip(data.spec.output_names, got)})
    return out


def _float64(iterations: list[dict]) -> list[dict]:
    """Every non-empty output as float64 (empty ones are skipped, as `ort_parity` skips them)."""
    import numpy as np

    return [{k: np.asarray(v).astype(np.float64) for k, v in it.items() if np.asarray(v).size} for it in iterations]


def exact_name(output_name, index, iter_result):
    """Polygraphy's `find_output_func` matching by name only (its default falls back to position)."""
    return [output_name] if output_name in iter_result else None


def onnxrt_runner(path: Path | str, name: str | None = None):
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx

    return OnnxrtRunner(SessionFromOnnx(str(path), providers=["cpu"]), name=name)


def trt_runner(engine_path: Path | str, name: str | None = None):
    """Polygraphy's TensorRT runner on a built engine (GPU with TensorRT only; never run here)."""
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return TrtRunner(EngineFromBytes(BytesFromPath(str(engine_path))), name=name)


def compare_with_reference(reference: list[dict], runner, data, atol: float, *, reference_name: str = TORCH_RUNNER):
    """Run `runner` on `data` through Polygraphy's Comparator and compare its outputs with the
    stored `reference` outputs (one dict per iteration). Returns (max |diff| over every output and
    iteration, Polygraphy's verdict with atol=`atol`, rtol=0, the `max` statistic)."""
    from polygraphy.comparator import Comparator, CompareFunc, RunResults
    from polygraphy.logger import G_LOGGER

    with G_LOGGER.verbosity(G_LOGGER.CRITICAL):
        ran = Comparator.run([runner], data_loader=data)
        results = RunResults()
        results.add(_float64(reference), runner_name=reference_name)
        for name, iterations in ran.items():
            results.add(_float64([dict(it) for it in iterations]), runner_name=name)
        compare = CompareFunc.simple(atol=math.inf if atol is None else atol, rtol=0.0, check_error_stat="max",
                                     find_output_func=exact_name)
        accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    worst = 0.0
    for result in accuracy:
        for iterations in result.values():
            for outputs in iterations:
                for out in outputs.values():
                    diff = getattr(out, "max_absdiff", None)
                    if diff is not None:
                        worst = max(worst, float(diff)) if not math.isnan(float(diff)) else math.nan
    return worst, bool(accuracy)


def polygraphy_parity(module, spec, path: Path, max_batch: int = 1, limit: float | None = None,
                      engine: Path | None = None) -> tuple[float, bool]:
    """Max |runner - PyTorch| over every output at both shape settings, and whether it is within
    `limit` (no limit: always within). The runner is ONNX Runtime on `path` (CPU), or TensorRT on
    `engine` where one is given (code path only on machines without TensorRT)."""
    data = ReferenceData(spec, max_batch)
    runner = trt_runner(engine) if engine is not None else onnxrt_runner(path)
    return compare_with_reference(torch_outputs(module, data), runner, data, limit)


def have_polygraphy() -> bool:
    try:
        import polygraphy  # noqa: F401
    except ImportError:
        return False
    return True


def graph_parity(module, spec, path: Path, max_batch: int = 1, limit: float | None = None) -> tuple[float, bool]:
    """What build.sh records and checks for one graph: (max difference, within the limit)."""
    if spec.name == CODEC_ENCODER or not have_polygraphy():
        worst = ort_parity(module, spec, path, max_batch)
        return worst, limit is None or worst <= limit
    return polygraphy_parity(module, spec, path, max_batch, limit)
