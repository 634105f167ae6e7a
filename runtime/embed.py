"""Host-side embedding tables: text track P(ids), codec track C(ids), and whole frames.

Every backend builds its talker inputs here, so prompt layout and per-frame inputs are computed
once, the same way, whatever engine runs the transformer. The 311M-parameter text table only
ever needs a gather over a few hundred ids per utterance, so it never enters an engine.
"""

from __future__ import annotations

import torch

from .model.predictor import Predictor
from .model.talker import Talker


class Embedder:
    def __init__(self, talker: Talker, predictor: Predictor):
        self.talker = talker
        self.predictor = predictor
        self.device = talker.codec_head.weight.device

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

        Codebook 0 uses the talker's table, codebooks 1.. the predictor's tables (facts §10.1.6).
        """
        codes = codes.to(self.device)
        return self.predictor.frame_embedding(self.talker.embed_codec(codes[..., 0]), codes[..., 1:])
