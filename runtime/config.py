"""Typed configuration of a Qwen3-TTS-12Hz checkpoint.

This module is the only place that knows the checkpoint's JSON keys and the special token ids.
Everything else (prompt building, sampling, export, backends) reads ids from a `ModelConfig`.
The defaults of the official config classes do NOT match the released checkpoints (20 layers,
ids 4196.., 32 code groups), so nothing here falls back to them: a missing key is an error.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError

MODEL_TYPE = "qwen3_tts"
CODEC_MODEL_TYPE = "qwen3_tts_tokenizer_12hz"
SUPPORTED_VARIANTS = ("base", "custom_voice", "voice_design")

# The prompt templates of the official wrapper ([W] L269-276). The slices that cut the role
# prefix and the suffix off these strings live in runtime/prompt.py.
ASSISTANT_TEMPLATE = "<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"
REF_TEMPLATE = "<|im_start|>assistant\n{text}<|im_end|>\n"
INSTRUCT_TEMPLATE = "<|im_start|>user\n{text}<|im_end|>\n"


@dataclass(frozen=True)
class DecoderStackConfig:
    """A Qwen3-style decoder stack (talker or code predictor)."""

    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    vocab_size: int


@dataclass(frozen=True)
class TalkerConfig(DecoderStackConfig):
    text_vocab_size: int
    text_hidden_size: int
    num_code_groups: int
    max_position_embeddings: int


@dataclass(frozen=True)
class PredictorConfig(DecoderStackConfig):
    num_code_groups: int
    talker_hidden_size: int  # width of its 15 embedding tables (and of its input)


@dataclass(frozen=True)
class CodecConfig:
    """The 12 Hz speech tokenizer's decoder (codes -> 24 kHz PCM)."""

    codebook_size: int
    codebook_dim: int
    num_quantizers: int
    latent_dim: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    head_dim: int
    sliding_window: int
    rope_theta: float
    rms_norm_eps: float
    upsample_rates: tuple[int, ...]
    upsampling_ratios: tuple[int, ...]
    decoder_dim: int
    sample_rate: int
    samples_per_frame: int


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    """The ECAPA-TDNN x-vector encoder of Base checkpoints (`speaker_encoder_config`)."""

    mel_dim: int
    enc_dim: int
    channels: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    dilations: tuple[int, ...]
    attention_channels: int
    res2net_scale: int
    se_channels: int
    sample_rate: int


@dataclass(frozen=True)
class CodecEncoderConfig:
    """The speech tokenizer's Mimi-style encoder (24 kHz PCM -> codes at 12.5 Hz), with the
    `MimiConfig` defaults the official loader fills in for keys the file leaves out."""

    sample_rate: int
    num_filters: int
    num_residual_layers: int
    upsampling_ratios: tuple[int, ...]
    kernel_size: int
    last_kernel_size: int
    residual_kernel_size: int
    dilation_growth_rate: int
    compress: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float
    norm_eps: float
    codebook_size: int
    codebook_dim: int
    vq_hidden_dim: int
    num_quantizers: int  # in the checkpoint
    num_semantic_quantizers: int
    valid_quantizers: int  # the first ones the 12 Hz tokenizer keeps (16)
    frame_rate: float
    samples_per_frame: int


# MimiConfig defaults (transformers 4.57) for the keys the official encoder_config leaves out.
MIMI_DEFAULTS = dict(sampling_rate=24000, num_filters=64, num_residual_layers=1, upsampling_ratios=[8, 6, 5, 4],
                     kernel_size=7, last_kernel_size=3, residual_kernel_size=3, dilation_growth_rate=2,
                     compress=2, hidden_size=512, intermediate_size=2048, num_hidden_layers=8,
                     num_attention_heads=8, num_key_value_heads=8, head_dim=None, rope_theta=10000.0,
                     norm_eps=1e-5, codebook_size=2048, codebook_dim=256, vector_quantization_hidden_dimension=256,
                     num_quantizers=32, num_semantic_quantizers=1, frame_rate=12.5, use_causal_conv=True,
                     pad_mode="constant", use_conv_shortcut=False, hidden_act="gelu", attention_bias=False)


@dataclass(frozen=True)
class TokenIds:
    """Every special id, text side and codec side."""

    im_start: int
    im_end: int
    assistant: int
    tts_pad: int
    tts_bos: int
    tts_eos: int
    codec_pad: int
    codec_bos: int
    codec_eos: int
    codec_think: int
    codec_nothink: int
    codec_think_bos: int
    codec_think_eos: int
    num_audio_codes: int  # codebook-0 ids 0..num_audio_codes-1 are audio; the rest are control ids


@dataclass(frozen=True)
class SamplingDefaults:
    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    subtalker_do_sample: bool = True
    subtalker_temperature: float = 0.9
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    max_new_tokens: int = 2048
    min_new_tokens: int = 2  # official: EOS is masked for the first 2 generated frames


@dataclass(frozen=True)
class ModelConfig:
    variant: str  # base | custom_voice | voice_design
    size: str  # 0b6 | 1b7 | whatever the checkpoint says
    talker: TalkerConfig
    predictor: PredictorConfig
    codec: CodecConfig
    ids: TokenIds
    sampling: SamplingDefaults
    languages: dict[str, int]  # lower-case name -> codec id; dialects included
    speakers: dict[str, int]  # lower-case name -> codec row
    speaker_dialects: dict[str, str | None]  # speaker -> dialect language name, or None
    config_hash: str = field(default="", compare=False)
    speaker_encoder: SpeakerEncoderConfig | None = None  # Base checkpoints only
    codec_encoder: CodecEncoderConfig | None = None

    @property
    def public_languages(self) -> list[str]:
        """Languages a user may name (dialects are reached through dialect speakers)."""
        return ["auto"] + sorted(k for k in self.languages if "dialect" not in k)

    @property
    def supports_instruct(self) -> bool:
        # The official wrapper drops the instruct for 0.6B CustomVoice ([W] L799-800).
        return self.variant == "voice_design" or (self.variant == "custom_voice" and self.size != "0b6")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} holds a JSON {type(data).__name__}, not an object: it is not this file")
        return data
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path} is not UTF-8 text (byte {exc.start}): it is damaged, or not this file") from exc
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc


def _need(d: dict[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise CheckpointError(f"{where} has no key '{key}'")
    return d[key]


def _stack_fields(d: dict[str, Any], where: str) -> dict[str, Any]:
    return dict(
        hidden_size=_need(d, "hidden_size", where),
        intermediate_size=_need(d, "intermediate_size", where),
        num_layers=_need(d, "num_hidden_layers", where),
        num_heads=_need(d, "num_attention_heads", where),
        num_kv_heads=_need(d, "num_key_value_heads", where),
        head_dim=d.get("head_dim", d["hidden_size"] // d["num_attention_heads"]),
        rms_norm_eps=float(_need(d, "rms_norm_eps", where)),
        rope_theta=float(_need(d, "rope_theta", where)),
        vocab_size=_need(d, "vocab_size", where),
    )


def parse_model_config(cfg: dict[str, Any], gen: dict[str, Any], codec_cfg: dict[str, Any]) -> ModelConfig:
    """Build a ModelConfig from the three JSON documents of a checkpoint."""
    if cfg.get("model_type") != MODEL_TYPE:
        raise CheckpointError(
            f"config.json has model_type={cfg.get('model_type')!r}; expected {MODEL_TYPE!r} (a Qwen3-TTS checkpoint)"
        )
    variant = cfg.get("tts_model_type")
    if variant not in SUPPORTED_VARIANTS:
        raise CheckpointError(f"unsupported tts_model_type {variant!r}; expected one of {SUPPORTED_VARIANTS}")
    if codec_cfg.get("model_type") != CODEC_MODEL_TYPE:
        raise CheckpointError(
            f"speech_tokenizer/config.json has model_type={codec_cfg.get('model_type')!r}; "
            f"expected {CODEC_MODEL_TYPE!r} (only the 12 Hz tokenizer is supported)"
        )
    tc = _need(cfg, "talker_config", "config.json")
    pc = _need(tc, "code_predictor_config", "talker_config")
    talker = TalkerConfig(
        **_stack_fields(tc, "talker_config"),
        text_vocab_size=_need(tc, "text_vocab_size", "talker_config"),
        text_hidden_size=_need(tc, "text_hidden_size", "talker_config"),
        num_code_groups=_need(tc, "num_code_groups", "talker_config"),
        max_position_embeddings=tc.get("max_position_embeddings", 32768),
    )
    predictor = PredictorConfig(
        **_stack_fields(pc, "code_predictor_config"),
        num_code_groups=_need(pc, "num_code_groups", "code_predictor_config"),
        talker_hidden_size=talker.hidden_size,
    )
    if predictor.num_code_groups != talker.num_code_groups:
        raise CheckpointError("talker and code predictor disagree on num_code_groups")
    dc = _need(codec_cfg, "decoder_config", "speech_tokenizer/config.json")
    codec = CodecConfig(
        codebook_size=_need(dc, "codebook_size", "decoder_config"),
        codebook_dim=_need(dc, "codebook_dim", "decoder_config"),
        num_quantizers=_need(dc, "num_quantizers", "decoder_config"),
        latent_dim=_need(dc, "latent_dim", "decoder_config"),
        hidden_size=_need(dc, "hidden_size", "decoder_config"),
        intermediate_size=_need(dc, "intermediate_size", "decoder_config"),
        num_layers=_need(dc, "num_hidden_layers", "decoder_config"),
        num_heads=_need(dc, "num_attention_heads", "decoder_config"),
        head_dim=dc.get("head_dim", dc["hidden_size"] // dc["num_attention_heads"]),
        sliding_window=_need(dc, "sliding_window", "decoder_config"),
        rope_theta=float(_need(dc, "rope_theta", "decoder_config")),
        rms_norm_eps=float(_need(dc, "rms_norm_eps", "decoder_config")),
        upsample_rates=tuple(_need(dc, "upsample_rates", "decoder_config")),
        upsampling_ratios=tuple(_need(dc, "upsampling_ratios", "decoder_config")),
        decoder_dim=_need(dc, "decoder_dim", "decoder_config"),
        sample_rate=codec_cfg.get("output_sample_rate", 24000),
        samples_per_frame=_need(codec_cfg, "decode_upsample_rate", "speech_tokenizer/config.json"),
    )
    if codec.num_quantizers != talker.num_code_groups:
        raise CheckpointError("codec num_quantizers differs from the talker's num_code_groups")
    ids = TokenIds(
        im_start=_need(cfg, "im_start_token_id", "config.json"),
        im_end=_need(cfg, "im_end_token_id", "config.json"),
        assistant=cfg.get("assistant_token_id", 77091),
        tts_pad=_need(cfg, "tts_pad_token_id", "config.json"),
        tts_bos=_need(cfg, "tts_bos_token_id", "config.json"),
        tts_eos=_need(cfg, "tts_eos_token_id", "config.json"),
        codec_pad=_need(tc, "codec_pad_id", "talker_config"),
        codec_bos=_need(tc, "codec_bos_id", "talker_config"),
        codec_eos=_need(tc, "codec_eos_token_id", "talker_config"),
        codec_think=_need(tc, "codec_think_id", "talker_config"),
        codec_nothink=_need(tc, "codec_nothink_id", "talker_config"),
        codec_think_bos=_need(tc, "codec_think_bos_id", "talker_config"),
        codec_think_eos=_need(tc, "codec_think_eos_id", "talker_config"),
        num_audio_codes=predictor.vocab_size,
    )
    sampling = SamplingDefaults(
        **{
            ours: gen[theirs]
            for ours, theirs in (
                ("do_sample", "do_sample"),
                ("temperature", "temperature"),
                ("top_k", "top_k"),
                ("top_p", "top_p"),
                ("repetition_penalty", "repetition_penalty"),
                ("subtalker_do_sample", "subtalker_dosample"),
                ("subtalker_temperature", "subtalker_temperature"),
                ("subtalker_top_k", "subtalker_top_k"),
                ("subtalker_top_p", "subtalker_top_p"),
                ("max_new_tokens", "max_new_tokens"),
            )
            if theirs in gen
        }
    )
    speakers = {str(k): int(v) for k, v in (tc.get("spk_id") or {}).items()}
    dialects = {str(k): (v or None) for k, v in (tc.get("spk_is_dialect") or {}).items()}
    for name in speakers:
        if name != name.lower():
            # The official lookup lower-cases only the request; a capitalised key can never match.
            raise CheckpointError(f"speaker key {name!r} in talker_config.spk_id must be lower case")
    canonical = json.dumps([cfg, gen, codec_cfg], sort_keys=True).encode()
    speaker_encoder = _speaker_encoder_config(cfg.get("speaker_encoder_config")) if variant == "base" else None
    return ModelConfig(
        variant=variant,
        size=str(cfg.get("tts_model_size", "")),
        talker=talker,
        predictor=predictor,
        codec=codec,
        ids=ids,
        sampling=sampling,
        languages={str(k).lower(): int(v) for k, v in (tc.get("codec_language_id") or {}).items()},
        speakers=speakers,
        speaker_dialects={k: dialects.get(k) for k in speakers},
        config_hash=hashlib.sha256(canonical).hexdigest()[:16],
        speaker_encoder=speaker_encoder,
        codec_encoder=codec_encoder_config(codec_cfg),
    )


def _speaker_encoder_config(sc: dict[str, Any] | None) -> SpeakerEncoderConfig:
    if not sc:
        raise CheckpointError("config.json of a Base checkpoint has no speaker_encoder_config")
    where = "speaker_encoder_config"
    cfg = SpeakerEncoderConfig(
        mel_dim=_need(sc, "mel_dim", where), enc_dim=_need(sc, "enc_dim", where),
        channels=tuple(_need(sc, "enc_channels", where)), kernel_sizes=tuple(_need(sc, "enc_kernel_sizes", where)),
        dilations=tuple(_need(sc, "enc_dilations", where)),
        attention_channels=_need(sc, "enc_attention_channels", where),
        res2net_scale=_need(sc, "enc_res2net_scale", where), se_channels=_need(sc, "enc_se_channels", where),
        sample_rate=sc.get("sample_rate", 24000))
    if not len(cfg.channels) == len(cfg.kernel_sizes) == len(cfg.dilations):
        raise CheckpointError(f"{where}: enc_channels, enc_kernel_sizes and enc_dilations differ in length")
    return cfg


def codec_encoder_config(codec_cfg: dict[str, Any]) -> CodecEncoderConfig | None:
    ec = codec_cfg.get("encoder_config")
    if ec is None:
        return None
    m = dict(MIMI_DEFAULTS, **ec)
    for key, wanted in (("use_causal_conv", True), ("pad_mode", "constant"), ("use_conv_shortcut", False),
                        ("hidden_act", "gelu"), ("attention_bias", False)):
        if m[key] != wanted:
            raise CheckpointError(f"encoder_config.{key}={m[key]!r} is not supported (the 12 Hz tokenizer uses {wanted!r})")
    return CodecEncoderConfig(
        sample_rate=m["sampling_rate"], num_filters=m["num_filters"], num_residual_layers=m["num_residual_layers"],
        upsampling_ratios=tuple(m["upsampling_ratios"]), kernel_size=m["kernel_size"],
        last_kernel_size=m["last_kernel_size"], residual_kernel_size=m["residual_kernel_size"],
        dilation_growth_rate=m["dilation_growth_rate"], compress=m["compress"], hidden_size=m["hidden_size"],
        intermediate_size=m["intermediate_size"], num_layers=m["num_hidden_layers"],
        num_heads=m["num_attention_heads"], num_kv_heads=m["num_key_value_heads"],
        head_dim=m["head_dim"] or m["hidden_size"] // m["num_attention_heads"], rope_theta=float(m["rope_theta"]),
        norm_eps=float(m["norm_eps"]), codebook_size=m["codebook_size"], codebook_dim=m["codebook_dim"],
        vq_hidden_dim=m["vector_quantization_hidden_dimension"], num_quantizers=m["num_quantizers"],
        num_semantic_quantizers=m["num_semantic_quantizers"],
        valid_quantizers=codec_cfg.get("encoder_valid_num_quantizers", 16), frame_rate=float(m["frame_rate"]),
        samples_per_frame=codec_cfg.get("encode_downsample_rate", 1920))


def load_model_config(model_dir: str | Path) -> ModelConfig:
    """Read config.json, generation_config.json and speech_tokenizer/config.json of a local directory."""
    root = Path(model_dir)
    if not root.is_dir():
        raise CheckpointError(f"checkpoint directory not found: {root}")
    cfg = _read_json(root / "config.json")
    gen_path = root / "generation_config.json"
    gen = _read_json(gen_path) if gen_path.exists() else {}
    codec_cfg = _read_json(root / "speech_tokenizer" / "config.json")
    return parse_model_config(cfg, gen, codec_cfg)
