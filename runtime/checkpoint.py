"""Local directory or hub id -> config + the three PyTorch networks with their weights.

Weights are routed by prefix and loaded strictly: every name the networks expect must be there,
every name the files hold must be used (or be on the short list of parts this runtime does not
run), and shapes must agree. Mismatches are reported by their official names.
"""

from __future__ import annotations

import json
import os
import struct
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
    """A local directory as is; otherwise a hub id, fetched with huggingface_hub (cache first).
    Either way its files are checked (check_checkpoint_files): every entry point opens a checkpoint
    through here, so a missing or damaged file is one clear line before anything loads."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        check_checkpoint_files(path)
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

        root = Path(snapshot_download(repo_id=text))
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for the user
        raise CheckpointError(
            f"{text!r} is not a local directory and could not be fetched from the hub: {exc}"
        ) from exc
    check_checkpoint_files(root, repo_id=text)  # a cached snapshot can be damaged too
    return root


# -- the files a checkpoint needs ---------------------------------------------------------------------
# Every file the loaders open, with what it is (for the error). The text tokenizer (runtime/text.py,
# transformers' Qwen2 tokenizer) reads tokenizer_config.json and either tokenizer.json or the pair
# vocab.json + merges.txt that the released checkpoints ship. Without one of the pair transformers
# fails with a TypeError, without tokenizer_config.json it calls qwen3_tts an unknown architecture,
# and an empty merges.txt even loads, and then splits every word wrongly.
CONFIG_FILES = {"config.json": "the model config", "speech_tokenizer/config.json": "the speech tokenizer's config"}
OPTIONAL_FILES = {"generation_config.json": "the sampling defaults"}  # read when present
TOKENIZER_CONFIG = {"tokenizer_config.json": "the text tokenizer's settings"}
TOKENIZER_PAIR = {"vocab.json": "the text tokenizer's vocabulary", "merges.txt": "the text tokenizer's merges"}
TOKENIZER_JSON = {"tokenizer.json": "the text tokenizer"}
WEIGHTS = {MAIN_WEIGHTS: "the talker's weights", CODEC_WEIGHTS: "the speech tokenizer's weights"}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library refuses longer headers


def needed_files(root: Path) -> dict[str, str]:
    """Checkpoint-relative path -> what it is, for every file the loaders will open in `root`."""
    tokenizer = TOKENIZER_JSON if (root / "tokenizer.json").exists() else TOKENIZER_PAIR
    present = {rel: what for rel, what in OPTIONAL_FILES.items() if (root / rel).exists()}
    return {**CONFIG_FILES, **present, **TOKENIZER_CONFIG, **tokenizer, **WEIGHTS}


def check_checkpoint_files(root: Path, repo_id: str | None = None) -> None:
    """Raise CheckpointError, one line naming the file and what to do, if a file the loaders open
    is missing, unreadable, empty, or (weights) not a whole safetensors file. Cheap enough for every
    open: a stat per file and the weights' headers, never their data. It runs before the build's
    weights identity is compared, so a cut-off download is named as such, not as other weights."""
    root = Path(root)
    fix = "download " + (f"the checkpoint again (hf download {repo_id} --force-download)" if repo_id else
                         "or copy the checkpoint again")
    needed = needed_files(root)
    missing = [rel for rel in needed if not (root / rel).is_file()]
    if missing:
        named = ", ".join(f"{rel} ({needed[rel]})" for rel in missing)
        raise CheckpointError(f"checkpoint {root} is missing file{'s' if len(missing) > 1 else ''} {named}: {fix}")
    for rel in needed:
        try:
            why = file_damage(root / rel)
        except OSError as exc:  # permissions, an I/O error: the file is there, so say what stops it
            raise CheckpointError(f"checkpoint {root}: {rel} cannot be read ({exc.strerror or exc}): make it "
                                  f"readable for this user, or {fix}") from exc
        if why:
            raise CheckpointError(f"checkpoint {root}: {rel} is damaged ({why}): {fix}")


def file_damage(path: Path) -> str | None:
    """Why the file at `path` cannot be what it should be, or None. JSON and text files are parsed
    by their loaders, which name a syntax error; here only an empty one is caught (merges.txt loads
    empty, and silently splits words wrongly)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if path.suffix == ".safetensors":
            return safetensors_damage(f, size)
        return None if f.read(1) else "empty"


def safetensors_damage(f, size: int) -> str | None:
    """Why a safetensors file is not whole, from its header alone (its data may be gigabytes): the
    format is 8 bytes of little-endian header length, a JSON header giving each tensor's byte range,
    then the tensors back to back up to the file's last byte."""
    head = f.read(8)
    if len(head) < 8:
        return f"truncated: {size} bytes, less than a header"
    (header_len,) = struct.unpack("<Q", head)
    if header_len > MAX_HEADER_BYTES:
        return f"not a safetensors file: its first 8 bytes give a header of {header_len} bytes"
    if 8 + header_len > size:
        return f"truncated: header says at least {8 + header_len} bytes, file has {size}"
    try:
        header = json.loads(f.read(header_len))
        spans = sorted((int(v["data_offsets"][0]), int(v["data_offsets"][1]))
                       for k, v in header.items() if k != "__metadata__")
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):  # UnicodeDecodeError is a ValueError
        return "its header is not a valid safetensors header"
    end = 0
    for begin, stop in spans:  # the library refuses gaps and overlaps, so they are damage too
        if begin != end or stop < begin:
            return f"its header's byte ranges are not back to back (a tensor at {begin} after one ending at {end})"
        end = stop
    expected = 8 + header_len + end
    if size != expected:
        kind = "truncated" if size < expected else "extra bytes at its end"
        return f"{kind}: header says {expected} bytes, file has {size}"
    return None


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
