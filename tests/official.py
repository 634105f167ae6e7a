"""Load the official `qwen-tts` 0.1.1 package as the correctness reference.

qwen-tts pulls torchaudio, but the only wheel the registry has is built for another torch, and
importing it fails. torchaudio (with sox and onnxruntime) is imported only by the 25 Hz tokenizer
(`qwen_tts/core/tokenizer_25hz/vq/speech_vq.py`), which the 12 Hz models never run. So the test
setup installs qwen-tts with `--no-deps` (its other dependencies come from the `test` extra) and,
when torchaudio is absent, gives this process a stand-in `torchaudio.compliance.kaldi` module that
raises if anything calls into it. Nothing the 12 Hz path uses is replaced: the talker, code
predictor, codec decoder, tokenizer and generation code are the official ones.
transformers is imported first so that its own torchaudio probe sees the real situation.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from functools import lru_cache

import transformers  # noqa: F401  (import before the stand-in; see above)
import transformers.modeling_utils  # noqa: F401


def _install_torchaudio_standin() -> None:
    if "torchaudio" in sys.modules or importlib.util.find_spec("torchaudio") is not None:
        return

    def _unavailable(*_a, **_k):
        raise RuntimeError("torchaudio stand-in: the 25 Hz tokenizer is not available in tests")

    ta = types.ModuleType("torchaudio")
    compliance = types.ModuleType("torchaudio.compliance")
    kaldi = types.ModuleType("torchaudio.compliance.kaldi")
    kaldi.fbank = _unavailable
    for mod in (ta, compliance, kaldi):  # later find_spec() probes need a spec
        mod.__spec__ = importlib.machinery.ModuleSpec(mod.__name__, None)
    ta.compliance, compliance.kaldi = compliance, kaldi
    sys.modules.update({"torchaudio": ta, "torchaudio.compliance": compliance,
                        "torchaudio.compliance.kaldi": kaldi})


def official_available() -> bool:
    return importlib.util.find_spec("qwen_tts") is not None


@lru_cache(maxsize=4)
def load_official(model_dir: str):
    """The official wrapper (Qwen3TTSModel) on CPU, fp32, eager attention."""
    import torch

    _install_torchaudio_standin()
    from qwen_tts import Qwen3TTSModel

    return Qwen3TTSModel.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager",
                                         device_map="cpu")
