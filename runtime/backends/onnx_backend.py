"""ONNX Runtime backend: the exported graphs from a build directory, on the CPU (portable).

KV slots live in numpy arrays [rows, L, H_kv, D], read in place through ONNX Runtime's IO
binding: no copy of the cache per step. A one-stream decode step binds its row's first positions
in spans of BIND_SPAN (the graph masks those past the stream's own), so one binding serves 16
steps and a step only fills fixed input buffers and copies its new K/V entry into the row. A step
over several streams binds rows 0..n-1 whole and writes each row's new entry at its own position
afterwards (one small copy per tensor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import ModelConfig
from ..contract import ENGINES, WEIGHT_ONLY_BITS, EngineLimits, engine_specs
from ..errors import BackendUnavailableError, EngineMismatchError
from .base import Backend, KVSlots

import os

NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64}
SPIN = os.environ.get("QWEN3_TTS_ORT_SPIN", "0") == "1"
# Opt-in: one intra-op pool for the whole process. ORT then requires *every* session in the process
# to use it, so a library that makes its own session (Pipecat's Silero VAD, for one) fails with
# "use_per_session_threads must be false": only for processes that run nothing but these graphs.
GLOBAL_POOL = os.environ.get("QWEN3_TTS_ORT_GLOBAL_POOL", "0") == "1"
_POOL = {}
# Opt-in: one intra-op thread count for every engine, instead of the per-engine plan below.
THREADS = int(os.environ.get("QWEN3_TTS_ORT_THREADS", "0") or 0)
BIND_SPAN = 16  # a one-stream step binds its past in spans of this many positions (see _one_row_binding)


@dataclass
class _RowBinding:
    key: tuple  # (row, span, KV generation) it was made for
    binding: object
    embeds: np.ndarray
    position: np.ndarray
    logits: np.ndarray
    hidden: np.ndarray
    new: list


def engine_threads(engine: str, weight_only: bool, cores: int | None = None) -> int:
    """Intra-op threads of `engine`'s session (measured on two cores, docs/benchmarks.md).

    The prefill runs alone (the first audio waits for it) and takes every core. The step engines
    (talker_decode, predictor) and the codec run side by side, the codec on the last frames while
    the steps make the next ones (runtime/read_ahead.py). With weight-only int8/int4 graphs the
    predictor and the codec take half the cores each (one on two): the predictor gains nothing
    from a second thread (46 ms on one vs 58 on two at 0.6B int4: waking a pool's threads for each
    of its ~5,700 small operators per frame costs more than it gains). The talker step, 28 layers
    of larger MatMuls, does gain: with every core it made frames 10-23% faster in each of six
    interleaved rounds (docs/benchmarks.md), though it then shares a core with the codec while both
    run. fp32/fp16 steps stream 4-8x the bytes and need every core's share of memory bandwidth,
    so then every engine takes every core."""
    if THREADS:
        return THREADS
    cores = cores or os.cpu_count() or 1
    if engine in ("talker_prefill", "talker_decode") or not weight_only:
        return cores
    return max(1, cores // 2)


def ort_session(path: str | Path, threads: int = 0, spin: bool = SPIN):
    """A CPU session whose idle threads do not spin. Engines run one after another, and spinning
    threads (ORT's default) steal the cores from the host-side work between runs and from the
    other sessions' pools: with it, TTFC was 117 ms instead of 4 ms on the tiny checkpoint."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if GLOBAL_POOL:
        if "size" not in _POOL:  # ORT accepts this once per process
            from onnxruntime.capi._pybind_state import set_global_thread_pool_sizes

            set_global_thread_pool_sizes(threads or (os.cpu_count() or 1), 1)
            _POOL["size"] = threads
        opts.use_per_session_threads = False
    else:
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxBackend(Backend):
    name = "onnx"

    def __init__(self, config: ModelConfig, limits: EngineLimits, graph_dir: str | Path, threads: int = 0,
                 spin: bool = SPIN):
        super().__init__(config, limits)
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailableError("onnxruntime is not installed: pip install 'qwen3-tts-trt[onnx]'") from exc
        if limits.precision == "bf16" or limits.codec_precision == "bf16":
            raise BackendUnavailableError("ONNX Runtime has no CPU kernels for bf16 graphs; build fp32 or fp16")
        self.specs = engine_specs(config, limits)
        weight_only = limits.precision in WEIGHT_ONLY_BITS
        self.sessions = {}
        for name in ENGINES:
            path = Path(graph_dir) / f"{name}.onnx"
            if not path.is_file():
                raise EngineMismatchError(f"missing graph {path}: run build.sh for this model first")
            try:
                self.sessions[name] = ort_session(path, threads or engine_threads(name, weight_only), spin)
            except Exception as exc:  # onnxruntime's own error types: a damaged or foreign graph
                why = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
                raise EngineMismatchError(f"ONNX Runtime cannot load {path} ({why}): rebuild with build.sh --force") from exc
            got = [i.name for i in self.sessions[name].get_inputs()]
            if got != self.specs[name].input_names:
                raise EngineMismatchError(f"{path} inputs {got[:4]}... do not match the engine contract")
        t = config.talker
        act = NP_DTYPES[self.specs["talker_decode"].input("inputs_embeds").dtype]
        self.kv = KVSlots(lambda shape: np.zeros(shape, act), t.num_layers, limits.max_context,
                          t.num_kv_heads, t.head_dim, rows=limits.max_batch)
        self.act = act
        self._bindings: dict[int, _RowBinding] = {}  # per KV row: its one-stream step's binding

    def new_codec_state(self):
        return [np.zeros([1 if d == "B" else d for d in s.shape], NP_DTYPES[s.dtype])
                for s in self.specs["codec"].inputs[1:]]

    def _run(self, name: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        feeds = dict(zip(self.specs[name].input_names, arrays))
        with self.engine_time():
            return self.sessions[name].run(None, feeds)

    def prefill(self, embeds, row=0):
        logits, hidden, *kv = self._run("talker_prefill", [embeds.numpy().astype(self.act)])
        self.kv.store(kv, 0, row)
        return torch.from_numpy(logits), torch.from_numpy(hidden)

    def decode(self, embeds, position, row=0):
        self.kv.ensure(position + 1)
        step = self._one_row_binding(row, position)
        step.embeds[...] = embeds.numpy()
        step.position[0] = position
        with self.engine_time():
            self.sessions["talker_decode"].run_with_iobinding(step.binding)
        for slot, new in zip(self.kv.tensors, step.new):
            slot[row, position] = new[0, 0]
        return torch.from_numpy(step.logits.copy()), torch.from_numpy(step.hidden.copy())

    def _one_row_binding(self, row: int, position: int) -> "_RowBinding":
        """The IO binding of a one-stream step, made once per span of BIND_SPAN positions: its past
        inputs are the row's first `span` positions (>= position; the graph masks the rest), its
        other inputs and outputs fixed buffers. Binding 2 x 28 K/V inputs and outputs afresh each
        step was most of the host time per frame at 0.6B; now a step copies its inputs into the
        bound buffers and its new K/V (a few KiB per layer) into the row."""
        span = min(-(-position // BIND_SPAN) * BIND_SPAN, self.kv.length - 1)
        key = (row, span, self.kv.generation)
        cached = self._bindings.get(row)
        if cached is not None and cached.key == key:
            return cached
        spec, session = self.specs["talker_decode"], self.sessions["talker_decode"]
        t = self.config.talker
        step = _RowBinding(key, session.io_binding(), np.zeros((1, 1, t.hidden_size), self.act), np.zeros(1, np.int64),
                           np.zeros((1, t.vocab_size), np.float32), np.zeros((1, t.hidden_size), self.act),
                           [np.zeros((1, 1, t.num_kv_heads, t.head_dim), self.act) for _ in spec.output_names[2:]])
        b = step.binding
        b.bind_cpu_input("inputs_embeds", step.embeds)
        b.bind_cpu_input("positions", step.position)
        for name, block in zip(spec.input_names[2:], self.kv.views(0, span, row)):
            b.bind_cpu_input(name, block)  # no copy: ONNX Runtime reads the slots themselves
        for name, out in zip(spec.output_names, [step.logits, step.hidden, *step.new]):
            b.bind_output(name, "cpu", 0, out.dtype, out.shape, out.ctypes.data)
        self._bindings[row] = step
        return step

    def _decode_padded(self, embeds, positions):
        spec, session = self.specs["talker_decode"], self.sessions["talker_decode"]
        binding = session.io_binding()
        binding.bind_cpu_input("inputs_embeds", np.ascontiguousarray(embeds.numpy(), dtype=self.act))
        binding.bind_cpu_input("positions", np.asarray(positions, np.int64))
        for name, block in zip(spec.input_names[2:], self.kv.rows_prefix(len(positions))):
            binding.bind_cpu_input(name, block)  # rows 0..n-1 whole, read in place
        for name in spec.output_names:
            binding.bind_output(name, "cpu")
        with self.engine_time():
            session.run_with_iobinding(binding)
        logits, hidden, *new = [v.numpy() for v in binding.get_outputs()]
        return torch.from_numpy(logits), torch.from_numpy(hidden), *new

    def predict_frame(self, hidden, code0, noise, temperature, top_k, top_p):
        arrays = [hidden.numpy().astype(self.act), code0.numpy().astype(np.int64), noise.numpy().astype(np.float32),
                  temperature.numpy().astype(np.float32), top_k.numpy().astype(np.int64),
                  top_p.numpy().astype(np.float32)]
        codes, frame_embed = self._run("predictor", arrays)
        return torch.from_numpy(codes), torch.from_numpy(frame_embed)

    def codec_run(self, codes, state):
        pcm, *state = self._run("codec", [codes.numpy().astype(np.int64)] + state)
        return torch.from_numpy(pcm.astype(np.float32)), state
