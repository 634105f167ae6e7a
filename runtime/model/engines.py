"""The four engines as PyTorch modules: exactly what is exported to ONNX and what the PyTorch
backend runs. Inputs and outputs follow `runtime.contract` in order, name and shape.

Each wraps the model modules without a second copy of their logic: the talker graphs pass a
`ConcatKV` (past in, new slice out), the predictor graph unrolls the same `predict_frame` loop
with the noise sampler, and the codec graph is `stream_step` with its state flattened.
"""

from __future__ import annotations

import torch
from torch import nn

from ..sampling import sample_with_noise
from .codec import CodecDecoder
from .layers import ConcatKV
from .predictor import Predictor
from .talker import Talker


# int8/int4 are weight-only precisions of the ONNX graphs (and int8 the codec's int8 convolutions):
# the modules are exported in fp32 and quantized afterwards (export/quantize.py).
PRECISION_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
                    "int8": torch.float32, "int4": torch.float32}


def build_engine_modules(talker: Talker, predictor: Predictor, codec: CodecDecoder,
                         precision: str = "fp32", codec_precision: str = "fp32") -> dict[str, nn.Module]:
    """The four engine modules, keyed by contract name, cast to the requested precision."""
    act, codec_dtype = PRECISION_DTYPES[precision], PRECISION_DTYPES[codec_precision]
    talker, predictor, codec = talker.to(act), predictor.to(act), codec.to(codec_dtype)
    return {
        "talker_prefill": TalkerPrefill(talker).eval(),
        "talker_decode": TalkerDecode(talker).eval(),
        "predictor": PredictorFrame(predictor, talker.model.codec_embedding).eval(),
        "codec": CodecStep(codec).eval(),
    }


def _interleave(keys: list[torch.Tensor], values: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t for pair in zip(keys, values) for t in pair]


class TalkerPrefill(nn.Module):
    """inputs_embeds [B, S, H] at positions 0..S-1 -> logits, hidden (last position), present K/V."""

    def __init__(self, talker: Talker):
        super().__init__()
        self.talker = talker

    def forward(self, inputs_embeds: torch.Tensor):
        b, s, _ = inputs_embeds.shape
        positions = torch.arange(s, device=inputs_embeds.device)[None].expand(b, s)
        kv = ConcatKV(self.talker.cfg.num_layers)
        logits, hidden = self.talker(inputs_embeds, positions, kv)
        return (logits[:, -1].float(), hidden[:, -1], *_interleave(kv.new_k, kv.new_v))


class TalkerDecode(nn.Module):
    """One position per row: inputs_embeds [B, 1, H], positions [B], past K/V [B, P, Hkv, D] per layer
    -> logits, hidden, and the new K/V [B, 1, Hkv, D] that the runtime writes at `positions`."""

    def __init__(self, talker: Talker):
        super().__init__()
        self.talker = talker

    def forward(self, inputs_embeds: torch.Tensor, positions: torch.Tensor, *past: torch.Tensor):
        pos = positions[:, None]
        past_k, past_v = list(past[0::2]), list(past[1::2])
        kv = ConcatKV(self.talker.cfg.num_layers, past_k, past_v,
                      ConcatKV.past_positions_for(pos, past_k[0].shape[1]))
        logits, hidden = self.talker(inputs_embeds, pos, kv)
        return (logits[:, -1].float(), hidden[:, -1], *_interleave(kv.new_k, kv.new_v))


class PredictorFrame(nn.Module):
    """A whole frame in one call: 15 sequential steps with sampling inside.

    talker_hidden [B, H], code0 [B], noise [B, 15, K], temperature/top_k/top_p [B]
    -> codes [B, 15] (codebooks 1..15), frame_embed [B, H] (the talker's next codec input).
    """

    def __init__(self, predictor: Predictor, talker_codec_embedding: nn.Embedding):
        super().__init__()
        self.predictor = predictor
        self.codec_embedding = talker_codec_embedding

    def forward(self, talker_hidden, code0, noise, temperature, top_k, top_p):
        code0_embed = self.codec_embedding(code0)

        def choose(logits, step):
            return sample_with_noise(logits, noise[:, step - 1], temperature, top_k, top_p)

        codes = self.predictor.predict_frame(talker_hidden, code0_embed, choose)
        return codes, self.predictor.frame_embedding(code0_embed, codes)


class CodecStep(nn.Module):
    """codes [B, 16, T] + state -> pcm [B, T*1920] + next state (exact streaming)."""

    def __init__(self, codec: CodecDecoder):
        super().__init__()
        self.codec = codec

    def forward(self, codes: torch.Tensor, *state: torch.Tensor):
        pcm, new_state = self.codec.stream_step(codes, list(state))
        return (pcm, *new_state)
