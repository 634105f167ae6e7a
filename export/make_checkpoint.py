"""Write a random-weight Qwen3-TTS-12Hz checkpoint in the official layout.

No weights can be downloaded where this project is tested, so tests, the offline demo and the
build pipeline run on checkpoints written here: the same files, key names, shapes (for `0.6b`)
and special ids as the released ones, with random values. The official `qwen-tts` package loads
them as it loads the real ones, which is what makes parity tests against it meaningful.

    python -m qwen3_tts_trt.export.make_checkpoint --preset tiny --variant custom_voice --out ckpt/tiny-cv
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from qwen3_tts_trt.runtime.config import codec_encoder_config, parse_model_config
from qwen3_tts_trt.runtime.model.codec import CausalConv, CodecDecoder, SnakeBeta
from qwen3_tts_trt.runtime.model.codec_encoder import CodecEncoder
from qwen3_tts_trt.runtime.model.predictor import Predictor
from qwen3_tts_trt.runtime.model.talker import Talker

from .tokenizer_files import write_tokenizer_files

LANGUAGES = {"english": 2050, "german": 2053, "spanish": 2054, "chinese": 2055, "japanese": 2058,
             "french": 2061, "korean": 2064, "russian": 2069, "italian": 2070, "portuguese": 2071}
DIALECTS = {"sichuan_dialect": 2062, "beijing_dialect": 2074}
SPEAKERS = {"serena": 3066, "vivian": 3065, "uncle_fu": 3010, "ryan": 3061, "aiden": 2861,
            "ono_anna": 2873, "sohee": 2864, "eric": 2875, "dylan": 2878}
SPEAKER_DIALECT = {"eric": "sichuan_dialect", "dylan": "beijing_dialect"}

# Shapes per preset. `0.6b` and `1.7b` follow the published configs;
# `tiny` keeps every id, vocabulary and code-group count real and shrinks the widths.
PRESETS = {
    "tiny": dict(
        talker=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16, text_hidden_size=32),
        predictor=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, head_dim=16),
        codec=dict(codebook_dim=32, latent_dim=32, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, head_dim=16, decoder_dim=32),
        mimi=dict(hidden_size=32, num_filters=4, num_hidden_layers=1, intermediate_size=64,
                  num_attention_heads=2, num_key_value_heads=2, head_dim=16, codebook_dim=16,
                  vector_quantization_hidden_dimension=16, upsample_groups=32),
        speaker=dict(enc_channels=[32, 32, 32, 32, 96], enc_attention_channels=16, enc_se_channels=16),
        size="tiny",
    ),
    "0.6b": dict(
        talker=dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                    num_key_value_heads=8, head_dim=128, text_hidden_size=2048),
        predictor=dict(hidden_size=1024, intermediate_size=3072, num_hidden_layers=5, num_attention_heads=16,
                       num_key_value_heads=8, head_dim=128),
        codec=dict(codebook_dim=512, latent_dim=1024, hidden_size=512, intermediate_size=1024,
                   num_hidden_layers=8, num_attention_heads=16, head_dim=64, decoder_dim=1536),
        mimi=dict(),
        speaker=dict(enc_channels=[512, 512, 512, 512, 1536], enc_attention_channels=128, enc_se_channels=128),
        size="0b6",
    ),
}
PRESETS["1.7b"] = json.loads(json.dumps(PRESETS["0.6b"]))
PRESETS["1.7b"]["talker"].update(hidden_size=2048, intermediate_size=6144)
PRESETS["1.7b"]["size"] = "1b7"


# Bumped when the files written change; the test fixtures rewrite cached checkpoints of another
# layout (2: fitted Mimi encoder codebooks, written from runtime.model.codec_encoder).
CHECKPOINT_LAYOUT = 2


# The speech tokenizer's encoder_config as the official checkpoint's config.json spells it out: every
# model field of transformers 4.57's MimiConfig, written from this table (not from the installed
# transformers, whose 5.x config class has other fields), so other tools' converters find each key.
OFFICIAL_MIMI_CONFIG = dict(
    sampling_rate=24000, frame_rate=12.5, audio_channels=1, hidden_size=512, num_filters=64, num_residual_layers=1,
    upsampling_ratios=[8, 6, 5, 4], kernel_size=7, last_kernel_size=3, residual_kernel_size=3,
    dilation_growth_rate=2, use_causal_conv=True, pad_mode="constant", compress=2, trim_right_ratio=1.0,
    codebook_size=2048, codebook_dim=256, num_quantizers=32, use_conv_shortcut=False,
    vector_quantization_hidden_dimension=256, upsample_groups=512, num_hidden_layers=8, intermediate_size=2048,
    num_attention_heads=8, num_key_value_heads=8, hidden_act="gelu", max_position_embeddings=8000,
    initializer_range=0.02, norm_eps=1e-05, use_cache=False, use_streaming=False, rope_theta=10000.0,
    sliding_window=250, attention_dropout=0.0, head_dim=64, layer_scale_initial_scale=0.01, attention_bias=False,
    num_semantic_quantizers=1)


def build_configs(preset: str, variant: str) -> tuple[dict, dict, dict]:
    p = PRESETS[preset]
    t, pr, c = p["talker"], p["predictor"], p["codec"]
    custom = variant == "custom_voice"
    languages = dict(LANGUAGES, **(DIALECTS if custom else {}))
    code_predictor_config = dict(
        model_type="qwen3_tts_talker_code_predictor", vocab_size=2048, rms_norm_eps=1e-6, rope_theta=1000000,
        rope_scaling=None, max_position_embeddings=65536, hidden_act="silu", attention_bias=False,
        num_code_groups=16, layer_types=["full_attention"] * pr["num_hidden_layers"],
        use_sliding_window=False, sliding_window=None, max_window_layers=pr["num_hidden_layers"], **pr)
    talker_config = dict(
        model_type="qwen3_tts_talker", vocab_size=3072, text_vocab_size=151936, num_code_groups=16,
        rms_norm_eps=1e-6, rope_theta=1000000, hidden_act="silu", attention_bias=False,
        max_position_embeddings=32768, use_sliding_window=False, sliding_window=None,
        rope_scaling={"interleaved": True, "mrope_section": [24, 20, 20], "rope_type": "default"},
        position_id_per_seconds=13,
        codec_pad_id=2148, codec_bos_id=2149, codec_eos_token_id=2150, codec_think_id=2154,
        codec_nothink_id=2155, codec_think_bos_id=2156, codec_think_eos_id=2157,
        codec_language_id=languages,
        spk_id=dict(SPEAKERS) if custom else {},
        spk_is_dialect={k: SPEAKER_DIALECT.get(k, False) for k in SPEAKERS} if custom else {},
        code_predictor_config=code_predictor_config, **t)
    speaker_encoder_config = dict(mel_dim=128, enc_dim=t["hidden_size"], enc_kernel_sizes=[5, 3, 3, 3, 1],
                                  enc_dilations=[1, 2, 3, 4, 1], enc_res2net_scale=8, sample_rate=24000,
                                  **p["speaker"])
    config = dict(
        architectures=["Qwen3TTSForConditionalGeneration"], model_type="qwen3_tts",
        tokenizer_type="qwen3_tts_tokenizer_12hz", tts_model_size=p["size"], tts_model_type=variant,
        im_start_token_id=151644, im_end_token_id=151645, assistant_token_id=77091,
        tts_pad_token_id=151671, tts_bos_token_id=151672, tts_eos_token_id=151673,
        talker_config=talker_config, speaker_encoder_config=speaker_encoder_config,
        torch_dtype="bfloat16", transformers_version="4.57.3")
    generation = dict(do_sample=True, temperature=0.9, top_k=50, top_p=1.0, repetition_penalty=1.05,
                      subtalker_dosample=True, subtalker_temperature=0.9, subtalker_top_k=50,
                      subtalker_top_p=1.0, max_new_tokens=8192)
    mimi = dict(model_type="mimi", **dict(OFFICIAL_MIMI_CONFIG, **p["mimi"]))
    codec = dict(
        model_type="qwen3_tts_tokenizer_12hz", architectures=["Qwen3TTSTokenizerV2Model"],
        encoder_valid_num_quantizers=16, input_sample_rate=24000, output_sample_rate=24000,
        decode_upsample_rate=1920, encode_downsample_rate=1920, encoder_config=mimi,
        decoder_config=dict(codebook_size=2048, num_quantizers=16, num_semantic_quantizers=1,
                            semantic_codebook_size=4096, sliding_window=72, rope_theta=10000,
                            max_position_embeddings=8000, rms_norm_eps=1e-5, layer_scale_initial_scale=0.01,
                            hidden_act="silu", attention_bias=False, num_key_value_heads=c["num_attention_heads"],
                            upsample_rates=[8, 5, 4, 3], upsampling_ratios=[2, 2], attention_dropout=0.0, **c),
        transformers_version="4.57.3")
    return config, generation, codec


def _randomize(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Random values with a realistic scale: default-like fan-in init, norms around 1, heads wide
    enough that greedy argmax is decided by clear margins rather than rounding noise."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            if p.dim() == 1:
                base = 1.0 if name.endswith(("norm.weight", "layernorm.weight", "cluster_usage")) else 0.0
                spread = 0.1 if base else 0.05
                if name.endswith(".scale") or name.endswith("gamma"):
                    base, spread = 0.1, 0.02  # layer scale / ConvNeXt gamma
                if name.endswith("cluster_usage"):
                    spread = 0.5
                p.copy_(base + spread * (2 * torch.rand(p.shape, generator=gen) - 1))
            elif "embedding" in name and "codebook" not in name:
                p.copy_(torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                if name.startswith("codec_head") or name.startswith("lm_head"):
                    std = 1.6 / math.sqrt(p.shape[-1])
                else:
                    std = 1.0 / math.sqrt(fan_in)
                p.copy_(std * torch.randn(p.shape, generator=gen))


def _calibrate_codec(codec: CodecDecoder, gen: torch.Generator, target_rms: float = 0.15) -> None:
    """Scale the random vocoder so its output sits in a speech-like range instead of clipping.

    Random SnakeBeta/conv stacks grow the signal to tens and amplify fp32 rounding with it (the
    fp32 decode then differs from fp64 by 2e-5); a real vocoder's output sits well inside [-1, 1].
    Smaller SnakeBeta magnitudes (log-beta +1.5) and vocoder convs (x0.6) keep activations O(1)
    (fp32 vs fp64: 3e-7), and the last conv is rescaled so random codes decode to `target_rms`.
    """
    with torch.no_grad():
        for name, m in codec.named_modules():
            if isinstance(m, SnakeBeta):
                m.beta.add_(1.5)
            elif name.startswith("decoder.") and isinstance(m, CausalConv):
                m.conv.weight.mul_(0.6)
    captured = {}
    last = codec.decoder[-1]
    hook = last.register_forward_hook(lambda _m, _i, out: captured.setdefault("y", out))
    codes = torch.randint(0, codec.cfg.codebook_size, (1, codec.cfg.num_quantizers, 16), generator=gen)
    with torch.no_grad():
        codec.decode(codes)
        rms = float(captured["y"].pow(2).mean().sqrt())
        last.conv.weight.mul_(target_rms / rms)
        last.conv.bias.mul_(target_rms / rms)
    hook.remove()


def _random_tensors(shapes: dict[str, tuple], gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, shape in shapes.items():
        fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
        out[name] = (torch.randn(shape, generator=gen) / math.sqrt(fan_in)) if len(shape) > 1 else \
            0.05 * torch.randn(shape, generator=gen)
    return out


def speaker_encoder_shapes(sc: dict) -> dict[str, tuple]:
    """Parameter shapes of the official ECAPA-TDNN speaker encoder (Base checkpoints)."""
    ch, ks, mel = sc["enc_channels"], sc["enc_kernel_sizes"], sc["mel_dim"]
    se, att, scale = sc["enc_se_channels"], sc["enc_attention_channels"], sc["enc_res2net_scale"]
    shapes = {"blocks.0.conv.weight": (ch[0], mel, ks[0]), "blocks.0.conv.bias": (ch[0],)}
    for i in (1, 2, 3):
        c, w = ch[i], ch[i] // scale
        shapes.update({f"blocks.{i}.tdnn1.conv.weight": (c, ch[i - 1], 1), f"blocks.{i}.tdnn1.conv.bias": (c,)})
        for j in range(scale - 1):
            shapes.update({f"blocks.{i}.res2net_block.blocks.{j}.conv.weight": (w, w, ks[i]),
                           f"blocks.{i}.res2net_block.blocks.{j}.conv.bias": (w,)})
        shapes.update({f"blocks.{i}.tdnn2.conv.weight": (c, c, 1), f"blocks.{i}.tdnn2.conv.bias": (c,),
                       f"blocks.{i}.se_block.conv1.weight": (se, c, 1), f"blocks.{i}.se_block.conv1.bias": (se,),
                       f"blocks.{i}.se_block.conv2.weight": (c, se, 1), f"blocks.{i}.se_block.conv2.bias": (c,)})
    last = ch[-1]
    shapes.update({"mfa.conv.weight": (last, sum(ch[1:4]), ks[-1]), "mfa.conv.bias": (last,),
                   "asp.tdnn.conv.weight": (att, last * 3, 1), "asp.tdnn.conv.bias": (att,),
                   "asp.conv.weight": (last, att, 1), "asp.conv.bias": (last,),
                   "fc.weight": (sc["enc_dim"], last * 2, 1), "fc.bias": (sc["enc_dim"],)})
    return shapes


def mimi_encoder_state(codec_config: dict, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """The Mimi encoder half of the speech tokenizer, under its official names (`encoder.` dropped).

    Written from the runtime's own module, so the names do not depend on the installed
    transformers (5.x renamed Mimi's modules). Codebooks are fitted to the scale of what reaches
    them (noise plus tones through the random encoder), layer by layer, so every codebook's choice
    depends on the audio: zero or mis-scaled tables would make every code 0 and parity trivial.
    """
    cfg = codec_encoder_config(codec_config)
    enc = CodecEncoder(cfg)
    _randomize(enc, gen)
    n = 24000 * 2
    t = torch.arange(n) / 24000
    pcm = (0.3 * torch.sin(2 * math.pi * 180 * t) + 0.1 * torch.randn(n, generator=gen))[None]
    with torch.no_grad():
        x = enc.downsample(enc.encoder_transformer(enc.encoder(pcm[:, None]).transpose(1, 2)).transpose(1, 2))
        for rvq in (enc.quantizer.semantic_residual_vector_quantizer, enc.quantizer.acoustic_residual_vector_quantizer):
            residual = rvq.input_proj(x).transpose(1, 2).reshape(-1, cfg.codebook_dim)
            for layer in rvq.layers:
                cb = layer.codebook
                table = residual.std(0) * torch.randn(cfg.codebook_size, cfg.codebook_dim, generator=gen) \
                    + residual.mean(0)
                usage = 0.5 + torch.rand(cfg.codebook_size, generator=gen)
                cb.embed_sum.copy_(table * usage[:, None])
                cb.cluster_usage.copy_(usage)
                residual = residual - cb.table()[cb.nearest(residual[None])[0]]
    return {k: v.contiguous() for k, v in enc.state_dict().items()}


def official_main_state(talker: Talker, predictor: Predictor) -> dict[str, torch.Tensor]:
    state = {f"talker.{k}": v for k, v in talker.state_dict().items()}
    for k, v in predictor.state_dict().items():
        if k in ("model.codec_embedding", "lm_head"):
            for j in range(v.shape[0]):
                state[f"talker.code_predictor.{k}.{j}.weight"] = v[j]
        else:
            state[f"talker.code_predictor.{k}"] = v
    return state


def make_checkpoint(out: str | Path, preset: str = "tiny", variant: str = "custom_voice", seed: int = 0,
                    dtype: str = "float32") -> Path:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    if variant not in ("custom_voice", "base", "voice_design"):
        raise ValueError(f"unknown variant {variant!r}")
    out = Path(out)
    (out / "speech_tokenizer").mkdir(parents=True, exist_ok=True)
    config, generation, codec_config = build_configs(preset, variant)
    cfg = parse_model_config(config, generation, codec_config)
    gen = torch.Generator().manual_seed(seed)
    save_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]

    from safetensors.torch import save_file

    with torch.device("meta"):
        talker, predictor = Talker(cfg.talker), Predictor(cfg.predictor)
    talker, predictor = talker.to_empty(device="cpu"), predictor.to_empty(device="cpu")
    _randomize(talker, gen)
    _randomize(predictor, gen)
    main = official_main_state(talker, predictor)
    del talker, predictor
    if variant == "base":
        shapes = speaker_encoder_shapes(config["speaker_encoder_config"])
        main.update({f"speaker_encoder.{k}": v for k, v in _random_tensors(shapes, gen).items()})
    save_file({k: v.to(save_dtype).contiguous() for k, v in main.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    del main

    codec = CodecDecoder(cfg.codec)
    _randomize(codec, gen)
    _calibrate_codec(codec, gen)
    codec_state = {f"decoder.{k}": v for k, v in codec.state_dict().items()}
    dim = cfg.codec.codebook_dim
    for part in ("rvq_first", "rvq_rest"):  # present in the official file, never used by its decoder
        codec_state[f"decoder.quantizer.{part}.input_proj.weight"] = torch.randn(dim // 2, dim, 1, generator=gen)
    codec_state.update({f"encoder.{k}": v for k, v in mimi_encoder_state(codec_config, gen).items()})
    save_file({k: v.float().contiguous() for k, v in codec_state.items()},
              str(out / "speech_tokenizer" / "model.safetensors"), metadata={"format": "pt"})

    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2))
    (out / "speech_tokenizer" / "config.json").write_text(json.dumps(codec_config, indent=2))
    (out / "speech_tokenizer" / "configuration.json").write_text(json.dumps({"framework": "pytorch"}))
    feature = dict(feature_extractor_type="EncodecFeatureExtractor", feature_size=1, padding_side="right",
                   padding_value=0.0, return_attention_mask=True, sampling_rate=24000)
    (out / "speech_tokenizer" / "preprocessor_config.json").write_text(json.dumps(feature, indent=2))
    write_tokenizer_files(out)
    (out / "random_weights.json").write_text(json.dumps(
        {"preset": preset, "variant": variant, "seed": seed, "dtype": dtype, "layout": CHECKPOINT_LAYOUT,
         "note": "random weights written by export.make_checkpoint; not a trained model"}, indent=2))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--variant", default="custom_voice", choices=["custom_voice", "base", "voice_design"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="storage dtype of model.safetensors (the released files are bf16)")
    args = ap.parse_args(argv)
    path = make_checkpoint(args.out, args.preset, args.variant, args.seed, args.dtype)
    print(f"wrote random {args.preset} {args.variant} checkpoint to {path}")


if __name__ == "__main__":
    main()
