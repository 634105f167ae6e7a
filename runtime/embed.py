"""Host-side embedding tables: text track P(ids), codec track C(ids), and whole frames.

Every backend builds its talker inputs here, so prompt layout and per-frame inputs are computed
once, the same way, whatever engine runs the transformer. The 311M-parameter text table only
ever needs a gather over a few hundred ids per utterance, so it never enters an engine.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import MAIN_WEIGHTS
from .config import ModelConfig
from .errors import CheckpointError
from .model.predictor import Predictor
from .model.talker import Talker

# The only weights the host needs (official names under `talker.`); engines hold the rest.
TALKER_TABLES = ("model.text_embedding.weight", "model.codec_embedding.weight", "text_projection.linear_fc1.weight",
                 "text_projection.linear_fc1.bias", "text_projection.linear_fc2.weight", "text_projection.linear_fc2.bias")


class Embedder:
    def __init__(self, talker: Talker, predictor: Predictor):
        self.talker = talker
        self.predictor = predictor
        self.device = talker.model.codec_embedding.weight.device

    @classmethod
    def from_checkpoint(cls, model_dir: str | Path, cfg: ModelConfig, device="cpu") -> "Embedder":
        """Load just the embedding tables and the text projection (no transformer layers), for
        backends whose engines hold the rest. Everything else stays on the meta device."""
        from safetensors import SafetensorError, safe_open

        path = Path(model_dir) / MAIN_WEIGHTS
        groups = cfg.predictor.num_code_groups - 1
        with torch.device("meta"):
            talker, predictor = Talker(cfg.talker), Predictor(cfg.predictor)
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as f:
                talker_state = {k: f.get_tensor(f"talker.{k}").float() for k in TALKER_TABLES}
                tables = torch.stack([f.get_tensor(f"talker.code_predictor.model.codec_embedding.{j}.weight").float()
                                      for j in range(groups)])
        except (SafetensorError, OSError, KeyError) as exc:
            raise CheckpointError(f"cannot read the embedding tables from {path}: {exc}") from exc
        talker.load_state_dict(talker_state, strict=False, assign=True)
        predictor.model.load_state_dict({"codec_embedding": tables}, strict=False, assign=True)
        return cls(talker, predictor)

    def _ids(self, ids) -> torch.Tensor:
        return torch.as_tensor(ids, dtype=torch.long, device=self.device).reshape(1, -1)

    @torch.inference_mode()
    def text(self, ids) -> torch.Tensor:
        """[1, n, H] text-track vectors (text_projection of text_embedding)."""
        return self.talker.embed_text(self._ids(ids))

    @torch.inference_mode()
    def codec(self, ids) -> torch.Tensor:
        """[1, n, H] codec-track rows (codebook-0 codes, control ids, languages, speakers)."""
        return self.talker.embed_codec(self._ids(ids))

    @torch.inference_mode()
    def frames(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, F, G] -> [B, F, H]: sum of all G codebook embeddings per frame.

        Codebook 0 uses the talker's table, codebooks 1.. the predictor's tables.
        """
        codes = codes.to(self.device)
        return self.predictor.frame_embedding(self.talker.embed_codec(codes[..., 0]), codes[..., 1:])
