"""A checkpoint's weights identity: which weights a build was made from, checked at every load.

The identity is a sha256 over each weights file's size, its safetensors header (every tensor's
name, dtype, shape and byte range) and a 4 KiB slice from the middle of every tensor. That reads a
few MiB per checkpoint (one slice per tensor: about 1,000 at 0.6B), so it costs milliseconds at
every load, where a full hash of the 1.8 GB (0.6B) or 3.8 GB (1.7B) weights would cost seconds.
Training changes nearly every element of a tensor it touches, so any fine-tune, even one that
freezes most tensors (the 311M-entry text embedding usually stays), changes the slices of the
tensors it trained. What it cannot see is an edit confined to a few elements outside every slice,
which no training produces. File times are left out on purpose: a copied or moved checkpoint
keeps its identity.
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

from .errors import CheckpointError

WEIGHT_FILES = ("model.safetensors", "speech_tokenizer/model.safetensors")
SLICE_BYTES = 4096


def file_identity(path: Path) -> str:
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        try:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > min(size - 8, 1 << 28):
                raise ValueError("header length past the end of the file")
            header_bytes = f.read(header_len)
            header = json.loads(header_bytes)
            ranges = sorted((int(v["data_offsets"][0]), int(v["data_offsets"][1]))
                            for k, v in header.items() if k != "__metadata__")
        except (struct.error, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
            raise CheckpointError(f"cannot read {path} (corrupt or truncated safetensors?): {exc}") from exc
        h.update(header_bytes)
        start = 8 + header_len
        for begin, end in ranges:
            n = min(SLICE_BYTES, end - begin)
            f.seek(start + begin + (end - begin - n) // 2)
            h.update(f.read(n))
    return h.hexdigest()[:16]


def weights_identity(model_dir: str | Path) -> str:
    """One short hex string for all the checkpoint's weights files (see the module docstring)."""
    parts = []
    for rel in WEIGHT_FILES:
        path = Path(model_dir) / rel
        if not path.is_file():
            raise CheckpointError(f"missing file: {path}")
        parts.append(f"{rel}:{file_identity(path)}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
