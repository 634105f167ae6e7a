"""The engine I/O contract: per engine, its tensors' names, symbolic shapes and dtypes.

Export writes graphs from it, every backend checks against it, and the build manifest records
it. Shapes use symbols for the dynamic axes; `EngineLimits` bounds them:

    B  batch: streams served by one call. Dynamic (1..max_batch) in the two per-frame graphs,
       talker_decode and predictor, and in the codec (`BATCHED_ENGINES`): chunks of one length
       from several streams go through it in one call; the prefill runs one stream per call
       (prompts differ in length), so its B is 1.
                                                          S  prompt positions (prefill)
    P  past positions (decode)                           T  codec frames per chunk
    N  reference audio samples at 24 kHz (voice encoders, Base checkpoints only)

KV tensors are [B, positions, kv_heads, head_dim]: a stream's first P positions are one
contiguous block, so an engine reads exactly the live prefix and writes a new position in place.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from .config import ModelConfig

REF_SAMPLE_RATE = 24000  # the voice encoders' input rate
ACTIVATION_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# Weight-only precisions of the talker and predictor graphs (build.sh --precision int8|int4): the
# graphs are exported in fp32 and their MatMul weights quantized afterwards (export/quantize.py), so
# activations, KV cache and every engine input stay float32. ONNX Runtime only (MatMulNBits).
WEIGHT_ONLY_BITS = {"int8": 8, "int4": 4}
PRECISIONS = (*ACTIVATION_DTYPES, *WEIGHT_ONLY_BITS)
# The codec may also run its convolutions in int8 (build.sh --codec-precision int8): exported in
# fp32, then quantized with calibrated activation scales (export/quantize.py); its inputs, state
# and PCM stay float32. ONNX Runtime only.
CODEC_PRECISIONS = (*ACTIVATION_DTYPES, "int8")


def onnx_runtime_only(limits: "EngineLimits") -> str | None:
    """Why a build's graphs run on ONNX Runtime (CPU) only, or None when TensorRT can build them."""
    if limits.precision in WEIGHT_ONLY_BITS:
        return (f"{limits.precision} weight-only graphs run on ONNX Runtime only (TensorRT: --precision bf16, "
                "fp16 or fp32)")
    if limits.codec_precision == "int8":
        return "the int8 codec runs on ONNX Runtime only (TensorRT: --codec-precision fp32, fp16 or bf16)"
    return None


def chunk_frames(index: int, ramp: tuple[int, ...], max_chunk: int) -> int:
    """Frames in a stream's chunk number `index`: the ramp's sizes in turn, then its last size, never
    more than the codec takes in one call."""
    return min(ramp[min(index, len(ramp) - 1)], max_chunk)


def activation_dtype(precision: str) -> str:
    return ACTIVATION_DTYPES.get(precision, "float32")

TALKER_PREFILL = "talker_prefill"
TALKER_DECODE = "talker_decode"
PREDICTOR = "predictor"
CODEC = "codec"
ENGINES = (TALKER_PREFILL, TALKER_DECODE, PREDICTOR, CODEC)
# The graphs a step over several streams runs with B > 1 (runtime/scheduler.py).
BATCHED_ENGINES = (TALKER_DECODE, PREDICTOR, CODEC)
# Run once per voice, not per frame (runtime/voice.py); Base checkpoints only; always fp32.
SPEAKER_ENCODER = "speaker_encoder"
CODEC_ENCODER = "codec_encoder"
VOICE_ENGINES = (SPEAKER_ENCODER, CODEC_ENCODER)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints and symbol names
    dtype: str  # numpy-style name


@dataclass(frozen=True)
class EngineSpec:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass(frozen=True)
class EngineLimits:
    """Build-time bounds of the dynamic axes and sampling, recorded in the manifest."""

    max_context: int = 2048  # talker positions: prompt + frames
    max_prompt: int = 512  # prefill positions
    max_chunk: int = 10  # codec frames per call
    max_batch: int = 1
    top_k_max: int = 50  # K of the in-graph top-k; top_k above it is refused
    precision: str = "fp32"  # talker and predictor: fp32/fp16/bf16, or weight-only int8/int4
    codec_precision: str = "fp32"  # fp32/fp16/bf16, or int8 (convolutions, ONNX Runtime only)
    chunk_ramp: tuple[int, ...] = field(default=(1, 2, 4, 8, 10))
    min_ref_seconds: float = 1.0  # reference audio the voice encoders take (runtime/voice.py says why)
    max_ref_seconds: float = 30.0

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
        if self.codec_precision not in CODEC_PRECISIONS:
            raise ValueError(f"codec precision must be one of {', '.join(CODEC_PRECISIONS)}")
        if not 1 <= self.max_prompt < self.max_context:
            raise ValueError("need 1 <= max_prompt < max_context")
        if not 1 <= self.max_batch <= 256:
            raise ValueError("max_batch must be in 1..256")
        if max(self.chunk_ramp) > self.max_chunk:
            raise ValueError("chunk_ramp exceeds max_chunk")

    def to_dict(self) -> dict:
        return asdict(self)


def kv_names(layers: int, prefix: str) -> list[str]:
    return [f"{prefix}_{kind}_{i}" for i in range(layers) for kind in ("key", "value")]


def codec_state_specs(cfg: ModelConfig, dtype: str = "float32") -> list[TensorSpec]:
    """Names and shapes of the streaming codec state, in the order the codec consumes it."""
    import torch

    from .model.codec import CodecDecoder

    with torch.device("meta"):
        codec = CodecDecoder(cfg.codec)
    return [TensorSpec(name, ("B", *shape), "int64" if shape == () else dtype)
            for name, shape in codec.state_layout()]


def engine_specs(cfg: ModelConfig, limits: EngineLimits) -> dict[str, EngineSpec]:
    t, p = cfg.talker, cfg.predictor
    act = activation_dtype(limits.precision)
    kv_shape = ("B", "{}", t.num_kv_heads, t.head_dim)

    def kv(prefix: str, length: str) -> list[TensorSpec]:
        shape = tuple(length if d == "{}" else d for d in kv_shape)
        return [TensorSpec(n, shape, act) for n in kv_names(t.num_layers, prefix)]

    groups = p.num_code_groups - 1
    heads = [TensorSpec("logits", ("B", t.vocab_size), "float32"), TensorSpec("hidden", ("B", t.hidden_size), act)]
    state = codec_state_specs(cfg, activation_dtype(limits.codec_precision))
    specs = {
        TALKER_PREFILL: EngineSpec(
            TALKER_PREFILL,
            inputs=(TensorSpec("inputs_embeds", ("B", "S", t.hidden_size), act),),
            outputs=tuple(heads + kv("present", "S")),
        ),
        TALKER_DECODE: EngineSpec(
            TALKER_DECODE,
            inputs=tuple([TensorSpec("inputs_embeds", ("B", 1, t.hidden_size), act),
                          TensorSpec("positions", ("B",), "int64")] + kv("past", "P")),
            outputs=tuple(heads + kv("new", 1)),
        ),
        PREDICTOR: EngineSpec(
            PREDICTOR,
            inputs=(TensorSpec("talker_hidden", ("B", t.hidden_size), act),
                    TensorSpec("code0", ("B",), "int64"),
                    TensorSpec("noise", ("B", groups, limits.top_k_max), "float32"),
                    TensorSpec("temperature", ("B",), "float32"),
                    TensorSpec("top_k", ("B",), "int64"),
                    TensorSpec("top_p", ("B",), "float32")),
            outputs=(TensorSpec("codes", ("B", groups), "int64"),
                     TensorSpec("frame_embed", ("B", t.hidden_size), act)),
        ),
        CODEC: EngineSpec(
            CODEC,
            inputs=tuple([TensorSpec("codes", ("B", cfg.codec.num_quantizers, "T"), "int64")] + state),
            outputs=tuple([TensorSpec("pcm", ("B", "T*%d" % cfg.codec.samples_per_frame), "float32")]
                          + [TensorSpec(s.name + "_out", s.shape, s.dtype) for s in state]),
        ),
    }
    if cfg.speaker_encoder is not None and cfg.codec_encoder is not None:
        pcm = (TensorSpec("pcm", ("B", "N"), "float32"),)
        specs[SPEAKER_ENCODER] = EngineSpec(
            SPEAKER_ENCODER, inputs=pcm, outputs=(TensorSpec("xvector", ("B", cfg.speaker_encoder.enc_dim), "float32"),))
        frames = "ceil(N/%d)" % cfg.codec_encoder.samples_per_frame
        specs[CODEC_ENCODER] = EngineSpec(
            CODEC_ENCODER, inputs=pcm,
            outputs=(TensorSpec("codes", ("B", cfg.codec_encoder.valid_quantizers, frames), "int64"),))
    return specs


def dim_ranges(limits: EngineLimits, engine: str | None = None) -> dict[str, tuple[int, int, int]]:
    """(min, opt, max) of every symbolic axis of `engine` (any engine when None): what the export's
    dynamic axes and TensorRT's optimization profiles use. B is dynamic only in the batched graphs,
    where a step reads whole KV rows: P then reaches the context (`KVSlots.rows_prefix`)."""
    batched = limits.max_batch > 1 and (engine is None or engine in BATCHED_ENGINES)
    return {
        "B": (1, min(4, limits.max_batch), limits.max_batch) if batched else (1, 1, 1),
        "S": (1, min(64, limits.max_prompt), limits.max_prompt),
        "P": (1, min(256, limits.max_context - 1), limits.max_context - (0 if batched else 1)),
        "T": (1, min(4, limits.max_chunk), limits.max_chunk),
        "N": (int(limits.min_ref_seconds * REF_SAMPLE_RATE), int(min(10, limits.max_ref_seconds) * REF_SAMPLE_RATE),
              int(limits.max_ref_seconds * REF_SAMPLE_RATE)),
    }


def specs_to_json(specs: dict[str, EngineSpec]) -> str:
    return json.dumps({k: asdict(v) for k, v in specs.items()}, indent=1)
