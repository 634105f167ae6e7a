"""Local directory or hub id -> config + the three PyTorch networks with their weights.

Weights are routed by prefix and loaded strictly: every name the networks expect must be there,
every name the files hold must be used (or be on the short list of parts this runtime does not
run), and shapes must agree. Mismatches are reported by their official names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .config import ModelConfig, load_model_config
from .errors import CheckpointError
from .model.codec import CodecDecoder
from .model.predictor import Predictor, stack_official_tables
from .model.talker import Talker

MAIN_WEIGHTS = "model.safetensors"
CODEC_WEIGHTS = "speech_tokenizer/model.safetensors"

# Parts of the official files this runtime does not run (yet), by prefix, with the reason.
UNUSED_PREFIXES = {
    "speaker_encoder.": "ECAPA x-vector encoder (Base): loaded by load_voice_encoders, not by generation",
    "encoder.": "Mimi encoder of the speech tokenizer: loaded by load_voice_encoders, not by generation",
    "decoder.quantizer.rvq_first.input_proj.": "defined but never called by the official decoder",
    "decoder.quantizer.rvq_rest.input_proj.": "defined but never called by the official decoder",
}


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """A local directory as is; otherwise a hub id, fetched with huggingface_hub (cache first)."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    text = str(name_or_path)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        raise CheckpointError(f"checkpoint directory not found: {text}")
    if path.parent.is_dir():  # "checkpoints/tiny-custom-voce": a local folder exists, so a typo, not a hub id
        near = sorted(p.name for p in path.parent.iterdir() if p.is_dir())[:8]
        raise CheckpointError(f"checkpoint directory not found: {text} (the folder {path.parent}/ exists"
                              + (f" and holds: {', '.join(near)}" if near else "") + "; a hub id would not name a "
                              "local folder)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=text))
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for the user
        raise CheckpointError(
            f"{text!r} is not a local directory and could not be fetched from the hub: {exc}"
        ) from exc


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"missing file: {path}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"cannot read {path} (corrupt or truncated safetensors?): {exc}") from exc


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], prefix: str, where: str) -> None:
    expected = module.state_dict()
    missing = sorted(prefix + k for k in expected.keys() - state.keys())
    unexpected = sorted(prefix + k for k in state.keys() - expected.keys())
    bad_shape = sorted(
        f"{prefix}{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    )
    if missing or unexpected or bad_shape:
        def show(names):
            return ", ".join(names[:8]) + (f" ... (+{len(names) - 8} more)" if len(names) > 8 else "")

        parts = []
        if missing:
            parts.append(f"missing {len(missing)}: {show(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)}: {show(unexpected)}")
        if bad_shape:
            parts.append(f"shape mismatch {len(bad_shape)}: {show(bad_shape)}")
        raise CheckpointError(f"weights in {where} do not match the config: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)


def _split(state: dict[str, torch.Tensor], routes: list[str]) -> tuple[dict, dict]:
    """Group keys by the first matching prefix in `routes`; return (groups, leftovers)."""
    groups: dict[str, dict[str, torch.Tensor]] = {r: {} for r in routes}
    rest = {}
    for key, value in state.items():
        if key.startswith(tuple(UNUSED_PREFIXES)):
            continue
        for r in routes:
            if key.startswith(r):
                groups[r][key[len(r):]] = value
                break
        else:
            rest[key] = value
    return groups, rest


@dataclass
class Networks:
    config: ModelConfig
    talker: Talker
    predictor: Predictor
    codec: CodecDecoder
    model_dir: Path


def load_networks(name_or_path, dtype: torch.dtype = torch.float32, codec_dtype: torch.dtype = torch.float32,
                  device: str | torch.device = "cpu") -> Networks:
    root = resolve_checkpoint(name_or_path)
    cfg = load_model_config(root)
    main = read_safetensors(root / MAIN_WEIGHTS)
    groups, rest = _split(main, ["talker.code_predictor.", "talker."])
    if rest:
        names = sorted(rest)
        raise CheckpointError(f"weights in {MAIN_WEIGHTS} do not match the config: unexpected {len(names)}: "
                              + ", ".join(names[:8]))
    with torch.device("meta"):
        talker, predictor, codec = Talker(cfg.talker), Predictor(cfg.predictor), CodecDecoder(cfg.codec)
    talker, predictor, codec = (m.to_empty(device="cpu") for m in (talker, predictor, codec))
    _load_strict(talker, groups["talker."], "talker.", MAIN_WEIGHTS)
    pred_state = stack_official_tables(groups["talker.code_predictor."], cfg.predictor.num_code_groups - 1)
    _load_strict(predictor, pred_state, "talker.code_predictor.", MAIN_WEIGHTS)

    codec_state = read_safetensors(root / CODEC_WEIGHTS)
    cgroups, crest = _split(codec_state, ["decoder."])
    if crest:
        raise CheckpointError(f"weights in {CODEC_WEIGHTS} do not match the config: unexpected "
                              + ", ".join(sorted(crest)[:8]))
    _load_strict(codec, cgroups["decoder."], "decoder.", CODEC_WEIGHTS)
    return Networks(
        config=cfg,
        talker=talker.to(device=device, dtype=dtype).eval(),
        predictor=predictor.to(device=device, dtype=dtype).eval(),
        codec=codec.to(device=device, dtype=codec_dtype).eval(),
        model_dir=root,
    )


@dataclass
class VoiceEncoderNetworks:
    """The two networks that turn a reference recording into a clone prompt (Base checkpoints)."""

    config: ModelConfig
    speaker_encoder: "torch.nn.Module"
    codec_encoder: "torch.nn.Module"
    model_dir: Path


def load_voice_encoders(name_or_path, device: str | torch.device = "cpu") -> VoiceEncoderNetworks:
    """`speaker_encoder.*` from model.safetensors and `encoder.*` from the speech tokenizer, strictly
    (fp32: they run once per voice, and the x-vector must match the official one to 1e-4)."""
    from .model.codec_encoder import CodecEncoder
    from .model.speaker_encoder import SpeakerEncoder

    root = resolve_checkpoint(name_or_path)
    cfg = load_model_config(root)
    if cfg.speaker_encoder is None:
        raise CheckpointError(f"{root} is a {cfg.variant} checkpoint; voices are cloned with a Base checkpoint "
                              "(its speaker encoder makes the x-vector)")
    if cfg.codec_encoder is None:
        raise CheckpointError(f"{root / 'speech_tokenizer/config.json'} has no encoder_config")
    speaker, codec = SpeakerEncoder(cfg.speaker_encoder), CodecEncoder(cfg.codec_encoder)
    main = read_safetensors(root / MAIN_WEIGHTS)
    p = "speaker_encoder."
    _load_strict(speaker, {k[len(p):]: v.float() for k, v in main.items() if k.startswith(p)}, p, MAIN_WEIGHTS)
    del main
    tok = read_safetensors(root / CODEC_WEIGHTS)
    p = "encoder."
    _load_strict(codec, {k[len(p):]: v.float() for k, v in tok.items() if k.startswith(p)}, p, CODEC_WEIGHTS)
    return VoiceEncoderNetworks(cfg, speaker.to(device).eval(), codec.to(device).eval(), root)
