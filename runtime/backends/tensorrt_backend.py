"""TensorRT backend: the engines in builds/<gpu>/<model>/, run with torch-owned CUDA buffers.

Kept thin on purpose: TensorRT calls only (deserialize, bind, set shapes, enqueue); buffers, KV
slots and the codec state are torch tensors, laid out by the same contract the other backends
use. A one-stream decode reads the live prefix of its KV row (a zero-copy view: rows are
[rows, L, H_kv, D]) and writes its new K/V straight into the row at `position`: the output
addresses point into the cache, so no copy follows. A step over several streams reads rows
0..n-1 whole and its new entries are copied to each row's own position. No GPU machine with TensorRT was available
to this project's CI; see README "What was verified where".
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..config import ModelConfig
from ..contract import ENGINES, engine_specs
from ..device_info import detect_gpu, tensorrt_version
from ..errors import BackendUnavailableError
from ..manifest import check_manifest, load_manifest
from .base import Backend, KVSlots

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64}


class _Engine:
    """One deserialized engine and its execution context."""

    def __init__(self, runtime, path: Path, spec):
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise BackendUnavailableError(f"TensorRT could not load {path} (built by another TensorRT or GPU?)")
        self.engine, self.context, self.spec = engine, engine.create_execution_context(), spec

    def run(self, inputs: dict[str, torch.Tensor], outputs: dict[str, torch.Tensor], stream: torch.cuda.Stream):
        ctx = self.context
        for name, t in inputs.items():
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        for name, t in outputs.items():
            ctx.set_tensor_address(name, t.data_ptr())
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT failed to run {self.spec.name}")
        stream.synchronize()


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, config: ModelConfig, build_dir: str | Path):
        version, why = tensorrt_version()
        if version is None:
            raise BackendUnavailableError(why)
        gpu = detect_gpu()
        manifest = load_manifest(build_dir)
        limits = check_manifest(manifest, config, gpu=gpu, tensorrt=version, need_engines=True, where=str(build_dir))
        super().__init__(config, limits)
        import tensorrt as trt

        self.device = torch.device("cuda")
        self.stream = torch.cuda.Stream()
        logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(logger)
        self.specs = engine_specs(config, limits)
        self.engines = {name: _Engine(runtime, Path(build_dir) / manifest["engines"][name]["engine"], self.specs[name])
                        for name in ENGINES}
        t = config.talker
        act = TORCH_DTYPES[self.specs["talker_decode"].input("inputs_embeds").dtype]
        self.kv = KVSlots(lambda shape: torch.zeros(shape, dtype=act, device=self.device), t.num_layers,
                          limits.max_context, t.num_kv_heads, t.head_dim, rows=limits.max_batch)
        self.act = act

    def _empty(self, spec, sizes):
        return torch.empty([sizes[d] if isinstance(d, str) else d for d in spec.shape],
                           dtype=TORCH_DTYPES[spec.dtype], device=self.device)

    def new_codec_state(self):
        return [self._empty(s, {"B": 1}).zero_() for s in self.specs["codec"].inputs[1:]]

    def _talker(self, name, inputs, new_kv, batch=1):
        spec = self.specs[name]
        outputs = {"logits": self._empty(spec.outputs[0], {"B": batch}),
                   "hidden": self._empty(spec.outputs[1], {"B": batch})}
        outputs.update(zip(spec.output_names[2:], new_kv))
        with self.engine_time():
            self.engines[name].run(inputs, outputs, self.stream)
        return outputs["logits"], outputs["hidden"]

    def prefill(self, embeds, row=0):
        x = embeds.to(self.device, self.act).contiguous()
        self.kv.ensure(x.shape[1])
        # new K/V land in their slots directly
        return self._talker("talker_prefill", {"inputs_embeds": x}, self.kv.views(0, x.shape[1], row))

    def _step_inputs(self, embeds, positions, past):
        inputs = {"inputs_embeds": embeds.to(self.device, self.act).contiguous(),
                  "positions": torch.tensor(positions, dtype=torch.long, device=self.device)}
        inputs.update(zip(self.specs["talker_decode"].input_names[2:], past))
        return inputs

    def decode(self, embeds, position, row=0):
        self.kv.ensure(position + 1)
        # the live prefix, no copy; the new K/V straight into its slot
        inputs = self._step_inputs(embeds, [position], self.kv.views(0, position, row))
        return self._talker("talker_decode", inputs, self.kv.views(position, position + 1, row))

    def _decode_padded(self, embeds, positions):
        n = len(positions)
        inputs = self._step_inputs(embeds, positions, self.kv.rows_prefix(n))
        spec = self.specs["talker_decode"]
        new = [self._empty(t, {"B": n}) for t in spec.outputs[2:]]
        logits, hidden = self._talker("talker_decode", inputs, new, batch=n)
        return (logits, hidden, *new)

    def predict_frame(self, hidden, code0, noise, temperature, top_k, top_p):
        spec = self.specs["predictor"]
        values = (hidden.to(self.act), code0, noise, temperature, top_k, top_p)
        inputs = {t.name: v.to(self.device, TORCH_DTYPES[t.dtype]).contiguous() for t, v in zip(spec.inputs, values)}
        outputs = {t.name: self._empty(t, {"B": hidden.shape[0]}) for t in spec.outputs}
        with self.engine_time():
            self.engines["predictor"].run(inputs, outputs, self.stream)
        return outputs["codes"], outputs["frame_embed"]

    def codec_run(self, codes, state):
        spec = self.specs["codec"]
        frames = codes.shape[-1]
        inputs = {"codes": codes.to(self.device, torch.long).contiguous()}
        inputs.update({t.name: s for t, s in zip(spec.inputs[1:], state)})
        outputs = {"pcm": torch.empty((codes.shape[0], frames * self.config.codec.samples_per_frame),
                                      dtype=torch.float32, device=self.device)}
        new_state = [torch.empty_like(s) for s in state]
        outputs.update({t.name: s for t, s in zip(spec.outputs[1:], new_state)})
        with self.engine_time():
            self.engines["codec"].run(inputs, outputs, self.stream)
        return outputs["pcm"], new_state
