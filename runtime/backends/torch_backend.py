"""PyTorch backend: the same engine modules that are exported, run eagerly (CPU or GPU).

KV slots are [rows, L, H_kv, D] tensors; the decode module reads a stream's live prefix
[row, :position] and its new slice is written at `position`, exactly as an engine backend does.
"""

from __future__ import annotations

import torch

from ..checkpoint import Networks
from ..contract import WEIGHT_ONLY_BITS, EngineLimits
from ..errors import BackendUnavailableError
from ..model.engines import PRECISION_DTYPES, build_engine_modules
from .base import Backend, KVSlots


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, nets: Networks, limits: EngineLimits, device: str | torch.device = "cpu"):
        if limits.precision in WEIGHT_ONLY_BITS:  # the int graphs exist only as ONNX files
            raise BackendUnavailableError(
                f"the PyTorch backend runs the checkpoint, not the build's {limits.precision} graphs: use "
                "--backend onnx for them, or run PyTorch without --build-dir (fp32)")
        if limits.codec_precision == "int8":
            raise BackendUnavailableError(
                "the PyTorch backend runs the checkpoint, not the build's int8 codec graph: use --backend onnx for "
                "it, or run PyTorch without --build-dir (fp32)")
        super().__init__(nets.config, limits)
        self.device = torch.device(device)
        for m in (nets.talker, nets.predictor, nets.codec):
            m.to(self.device)
        self.modules = build_engine_modules(nets.talker, nets.predictor, nets.codec,
                                            limits.precision, limits.codec_precision)
        t = nets.config.talker
        dtype = PRECISION_DTYPES[limits.precision]
        self.kv = KVSlots(lambda shape: torch.zeros(shape, dtype=dtype, device=self.device), t.num_layers,
                          limits.max_context, t.num_kv_heads, t.head_dim, rows=limits.max_batch)
        self.codec = nets.codec

    def new_codec_state(self):
        return self.codec.init_state(1, self.device)

    @torch.inference_mode()
    def prefill(self, embeds, row=0):
        x = embeds.to(self.device, self.kv.dtype)
        with self.engine_time():
            logits, hidden, *kv = self._sync(self.modules["talker_prefill"](x))
        self.kv.store(kv, 0, row)
        return logits, hidden

    @torch.inference_mode()
    def decode(self, embeds, position, row=0):
        self.kv.ensure(position + 1)
        logits, hidden, *kv = self._step(embeds, [position], self.kv.views(0, position, row))
        self.kv.store(kv, position, row)
        return logits, hidden

    @torch.inference_mode()
    def _decode_padded(self, embeds, positions):
        return self._step(embeds, positions, self.kv.rows_prefix(len(positions)))

    def _step(self, embeds, positions, past):
        pos = torch.tensor(positions, dtype=torch.long, device=self.device)
        x = embeds.to(self.device, self.kv.dtype)
        with self.engine_time():
            return self._sync(self.modules["talker_decode"](x, pos, *past))

    @torch.inference_mode()
    def predict_frame(self, hidden, code0, noise, temperature, top_k, top_p):
        args = [x.to(self.device) for x in (hidden, code0, noise, temperature, top_k, top_p)]
        with self.engine_time():
            return self._sync(self.modules["predictor"](*args))

    @torch.inference_mode()
    def codec_run(self, codes, state):
        codes = codes.to(self.device)
        with self.engine_time():
            pcm, *state = self._sync(self.modules["codec"](codes, *state))
        return pcm.float(), state

    def _sync(self, outputs):
        if self.device.type == "cuda":  # count the GPU work, not just its launch
            torch.cuda.synchronize(self.device)
        return outputs
