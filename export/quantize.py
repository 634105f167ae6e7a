"""Weight-only int8 / int4 graphs for ONNX Runtime on the CPU (build.sh --precision int8|int4).

At batch 1 a frame costs what it takes to stream the weights from memory: the talker's once and
the code predictor's once per codebook (15 times), ~6.5 GB per frame in fp32 at 0.6B. Storing the
MatMul weights in 8 or 4 bits cuts those bytes 4x or 8x. ONNX Runtime's `MatMulNBits` keeps the
activations in fp32 and dequantizes block by block inside the kernel; `accuracy_level` 4 lets it
quantize the activation row to int8 per block and use integer dot products, about 2x faster than
fp32 compute on this CPU class (docs/benchmarks.md).

Only the MatMuls whose right-hand side is a weight are quantized; the graph's inputs, outputs,
KV cache, embedding tables (Gather), norms and the in-graph sampling stay fp32, so the engine
contract does not change and the same runtime code runs every precision. Weights that the
exporter shares between MatMuls (the predictor reuses its layers for all 15 codebook steps) stay
shared after quantization.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from qwen3_tts_trt.runtime.contract import WEIGHT_ONLY_BITS

# 128 weights per scale: the probe on this machine class found
# int4 blocks of 32/128/256 at 31/26/24 ms per frame; 128 keeps four times finer scales than 256
# for 10% more time. Symmetric blocks need no zero points (fewer bytes, one less operation).
BLOCK_SIZE = 128
ACCURACY_LEVEL = 4  # int8 activations inside the kernel; accuracy 0 (fp32 compute) was ~2x slower


@dataclass
class QuantizeReport:
    matmuls: int  # MatMul nodes rewritten to MatMulNBits
    weights: int  # distinct weight tensors quantized
    bytes_before: int  # graph + external data
    bytes_after: int


def graph_bytes(path: Path) -> int:
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)


def _expose_weights(model) -> int:
    """Give every weight MatMul a plain initializer as its right-hand side. The quantizer rewrites
    only MatMuls whose right-hand side is an initializer; the exporter's constant folding leaves
    the transposes of large weights in place (the 0.6B predictor's, shared by its 15 steps), and
    the predictor picks each step's output head out of one stacked [15, V, H] tensor with a Gather
    at a constant index. ONNX Runtime folds both at load time for fp32; here they are folded in the
    file so the quantizer sees the weights."""
    import numpy as np
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    folded = []
    for node in list(model.graph.node):  # in order: a Gather's output may feed a Transpose
        if not node.input or node.input[0] not in inits:
            continue
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Transpose":
            perm = list(attrs["perm"].ints) if "perm" in attrs else None
            value = numpy_helper.to_array(inits[node.input[0]]).transpose(perm)
        elif node.op_type == "Gather" and len(node.input) == 2 and node.input[1] in inits:
            axis = attrs["axis"].i if "axis" in attrs else 0
            index = numpy_helper.to_array(inits[node.input[1]])
            value = np.take(numpy_helper.to_array(inits[node.input[0]]), index, axis=axis)
            if value.ndim != 2:  # only whole weight matrices; embedding lookups stay Gathers
                continue
        else:
            continue
        init = numpy_helper.from_array(np.ascontiguousarray(value), node.output[0])
        model.graph.initializer.append(init)
        inits[init.name] = init
        folded.append(node)
    for node in folded:
        model.graph.node.remove(node)
    _gemms_as_matmuls(model, inits)
    used = {name for n in model.graph.node for name in n.input} | {o.name for o in model.graph.output}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)  # weights read only through a folded node
    return len(folded)


def _gemms_as_matmuls(model, inits: dict) -> None:
    """`Gemm(a, W, transB=1)` (how the exporter writes the predictor's output heads) becomes
    `MatMul(a, W^T)` (+ `Add(c)`): the quantizer rewrites MatMuls only."""
    import numpy as np
    from onnx import helper, numpy_helper

    for index, node in reversed(list(enumerate(model.graph.node))):
        if node.op_type != "Gemm" or node.input[1] not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
            continue
        weight = numpy_helper.to_array(inits[node.input[1]])
        if attrs.get("transB", 0):
            weight = np.ascontiguousarray(weight.T)
        name = node.input[1] + "_kn"
        model.graph.initializer.append(numpy_helper.from_array(weight, name))
        inits[name] = model.graph.initializer[-1]
        has_bias = len(node.input) > 2 and node.input[2]
        product = node.output[0] + "_matmul" if has_bias else node.output[0]
        new = [helper.make_node("MatMul", [node.input[0], name], [product], name=node.name + "_matmul")]
        if has_bias:
            new.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=node.name + "_bias"))
        model.graph.node.remove(node)
        for offset, n in enumerate(new):
            model.graph.node.insert(index + offset, n)


def _quiet_import(module: str):
    """Import one of ONNX Runtime's quantization modules without its side effect: the package calls
    `logging.basicConfig(level=INFO)`, after which every library's INFO lines (thousands from the
    ONNX optimizer) reach the build's output. The root logger is put back as it was."""
    import importlib

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return importlib.import_module(module)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _save_replacing(model, dst: Path, mode_of: Path | None = None) -> None:
    """Write `model` as `dst` + `dst.data`, beside `dst` under a temporary name, then moved over it: a
    failed write leaves the old graph whole. The external data file keeps the final name the graph
    refers to. The graph takes `mode_of`'s file mode when given; the data file takes the graph's
    (onnx writes it private, 0600)."""
    import onnx

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp:
        staged = Path(tmp) / dst.name
        onnx.save_model(model, str(staged), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=dst.name + ".data", size_threshold=1024)
        data = staged.with_name(dst.name + ".data")
        if mode_of is not None:
            shutil.copymode(mode_of, staged)
        shutil.copymode(staged, data)
        os.replace(data, dst.with_name(dst.name + ".data"))
        os.replace(staged, dst)


def quantize_graph(src: str | os.PathLike, dst: str | os.PathLike, precision: str,
                   block_size: int = BLOCK_SIZE, symmetric: bool = True) -> QuantizeReport:
    """Write `dst` (+ `dst.data`): `src` with its weight MatMuls as `MatMulNBits` of `precision`'s bits.
    `dst` may equal `src`; it is replaced only once the quantized graph is written whole."""
    import onnx

    MatMulNBitsQuantizer = _quiet_import("onnxruntime.quantization.matmul_nbits_quantizer").MatMulNBitsQuantizer
    if precision not in WEIGHT_ONLY_BITS:
        raise ValueError(f"weight-only precision must be one of {', '.join(WEIGHT_ONLY_BITS)}, not {precision!r}")
    src, dst = Path(src), Path(dst)
    before = graph_bytes(src)
    model = onnx.load(str(src))  # with its external data
    _expose_weights(model)
    quant_log = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = quant_log.level
    quant_log.setLevel(logging.WARNING)  # it logs one INFO line per node it skips (thousands)
    try:
        quantizer = MatMulNBitsQuantizer(model, bits=WEIGHT_ONLY_BITS[precision], block_size=block_size,
                                         is_symmetric=symmetric, accuracy_level=ACCURACY_LEVEL)
        quantizer.process()
    finally:
        quant_log.setLevel(level)
    out = quantizer.model.model
    nodes = [n for n in out.graph.node if n.op_type == "MatMulNBits"]
    _save_replacing(out, dst)
    return QuantizeReport(matmuls=len(nodes), weights=len({n.input[1] for n in nodes}),
                          bytes_before=before, bytes_after=graph_bytes(dst))


# -- the codec: int8 convolutions (build.sh --codec-precision int8) -----------------------------
# The codec is compute-bound, not memory-bound: 61% of its time is Conv, 16% ConvTranspose, 10% the
# SnakeBeta sine (ONNX Runtime's profiler, 0.6B, one thread), so weight-only quantization does not
# reach it. Its Convs run in int8 instead (QDQ: per-channel int8 weights, uint8 activations with
# scales fixed by calibration), which ONNX Runtime's CPU kernels run with integer dot products:
# 1.8x faster on this CPU class. The transposed convolutions stay fp32: quantized, they ran slower
# (no integer kernel) and lost 2.5 dB more. docs/benchmarks.md has the figures and the SNR gate.
CODEC_CALIBRATION_FRAMES = 40  # per utterance, in chunks of the engine's usual size
CODEC_CALIBRATION_UTTERANCES = 2


@dataclass
class CodecQuantizeReport:
    convs: int  # Conv nodes now running in int8
    bytes_before: int
    bytes_after: int


def codec_calibration_feeds(session, codebook_size: int, chunk: int, seed: int = 0,
                            utterances: int = CODEC_CALIBRATION_UTTERANCES, frames: int = CODEC_CALIBRATION_FRAMES):
    """Inputs of the fp32 codec over streams of seeded random codes, state carried chunk to chunk as
    a stream does. Every code is a real codebook entry; a trained model's codes are not uniform,
    so the activation ranges are a stand-in: the SNR gate on your checkpoint is the check."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = session.get_inputs()
    for _ in range(utterances):
        codes = rng.integers(0, codebook_size, (1, 16, frames)).astype(np.int64)
        state = [np.zeros([d if isinstance(d, int) else 1 for d in i.shape],  # one stream: its batch axis is 1
                          np.int64 if i.type == "tensor(int64)" else np.float32) for i in inputs[1:]]
        for start in range(0, frames, chunk):
            feeds = dict(zip([i.name for i in inputs], [codes[:, :, start:start + chunk], *state]))
            yield feeds
            state = session.run(None, feeds)[1:]


class _PreprocessingAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


@contextlib.contextmanager
def _without_preprocessing_advice():
    """`quantize_static` logs twice on the root logger that the graph was not pre-processed
    (`quant_pre_process`: shape inference and ORT's own optimizations, for graphs with unknown
    shapes). The codec graph is exported with its shapes and ORT optimizes it when it loads, so
    the advice would only be noise in build.sh's output; every other line still comes through."""
    advice = _PreprocessingAdvice()
    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_codec(src: str | os.PathLike, dst: str | os.PathLike, codebook_size: int, chunk: int,
                   seed: int = 0) -> CodecQuantizeReport:
    """Write `dst` (+ `dst.data`): the fp32 codec graph `src` with its Convs in int8 (QDQ), their
    activation scales calibrated on the fp32 graph's own streams. `dst` may equal `src`; it is
    replaced only once the new graph is written whole."""
    import onnx

    from qwen3_tts_trt.runtime.backends.onnx_backend import ort_session

    q = _quiet_import("onnxruntime.quantization")

    src, dst = Path(src), Path(dst)
    before = graph_bytes(src)
    reference = ort_session(src, threads=1)

    class Feeds(q.CalibrationDataReader):
        def __init__(self):
            self._it = codec_calibration_feeds(reference, codebook_size, chunk, seed)

        def get_next(self):
            return next(self._it, None)

    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent) as tmp, _without_preprocessing_advice():
        raw = Path(tmp) / "raw.onnx"
        q.quantize_static(str(src), str(raw), Feeds(), quant_format=q.QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                          per_channel=True, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                          use_external_data_format=True, calibrate_method=q.CalibrationMethod.MinMax)
        model = onnx.load(str(raw))  # with its external data, before the folder goes
    _save_replacing(model, dst, mode_of=src)
    nodes = onnx.load(str(dst), load_external_data=False).graph.node
    made_by = {out: n.op_type for n in nodes for out in n.output}
    convs = sum(1 for n in nodes if n.op_type == "Conv" and made_by.get(n.input[1]) == "DequantizeLinear")
    return CodecQuantizeReport(convs=convs, bytes_before=before, bytes_after=graph_bytes(dst))
