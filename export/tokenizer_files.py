"""Tokenizer files for random checkpoints: a small byte-level BPE with the real Qwen2 id layout.

The layout is what matters to the model: ids 0..255 are the 256 byte symbols in GPT-2 order
(so "\\n" is 198, as in the real vocabulary), learned merges follow, unused filler entries pad
the vocabulary to 151643, and the special tokens sit at their real ids (151643.., with
<|im_start|> 151644, <tts_pad> 151671, <tts_text_bos> 151672, <tts_text_eod> 151673).
The files are the ones the released checkpoints ship: vocab.json, merges.txt, tokenizer_config.json.
"""

from __future__ import annotations

import json
from pathlib import Path

FIRST_SPECIAL_ID = 151643
# Qwen2/Qwen3 special tokens from 151643 on; the four TTS entries after <think> tokens follow the
# published Qwen3-TTS config (151669/151670 names are not confirmed; nothing reads them).
SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
    "</tool_response>", "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>",
    "<tts_text_bos>", "<tts_text_eod>",
]

CORPUS = [
    "Hello, this is a test of the streaming text to speech runtime.",
    "The quick brown fox jumps over the lazy dog. Numbers: 0123456789, 3.14, 2026.",
    "Voice agents answer in real time; the first audio must arrive within milliseconds.",
    "What would you like to hear today? I can speak English, German, French and Spanish.",
    "Ich bin ein Berliner. Bonjour tout le monde. Hola, ¿cómo estás? Ciao, come stai?",
    "我叫通义千问，是阿里云的开源大模型。今天天气很好。你好，世界！",
    "こんにちは、世界。안녕하세요. Привет, мир! Olá, tudo bem?",
    "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
]
# Role words of the prompt templates, with their real Qwen2 ids: the prompt slices rely on
# "<|im_start|>assistant\n" being exactly three tokens [151644, 77091, 198].
ROLE_TOKENS = {"assistant": 77091, "user": 872}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, in its id order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars)))


def _learn_merges(num_merges: int) -> list[tuple[str, str]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=256 + num_merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS * 4 + [" ".join(ROLE_TOKENS)] * 50, trainer)
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in merges]


def write_tokenizer_files(out: Path, num_merges: int = 400) -> None:
    tokens = list(bytes_to_unicode().values())  # dict order is GPT-2 id order
    merges = []
    for a, b in _learn_merges(num_merges):
        if a in tokens and b in tokens and a + b not in tokens:
            tokens.append(a + b)
            merges.append(f"{a} {b}")
    missing = [w for w in ROLE_TOKENS if w not in tokens]
    if missing:
        raise RuntimeError(f"BPE training did not produce the role tokens {missing}")
    fixed = {ROLE_TOKENS[t]: t for t in tokens if t in ROLE_TOKENS}
    free = iter(t for t in tokens if t not in ROLE_TOKENS)
    vocab = {}
    for i in range(FIRST_SPECIAL_ID):
        token = fixed.get(i) or next(free, None) or f"<|unused_{i}|>"  # fillers keep specials at real ids
        vocab[token] = i
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    added = {str(FIRST_SPECIAL_ID + i): dict(content=t, lstrip=False, normalized=False, rstrip=False,
                                            single_word=False, special=True)
             for i, t in enumerate(SPECIAL_TOKENS)}
    config = dict(
        add_bos_token=False, add_prefix_space=False, added_tokens_decoder=added, bos_token=None,
        clean_up_tokenization_spaces=False, eos_token="<|im_end|>", errors="replace",
        model_max_length=131072, pad_token="<|endoftext|>", split_special_tokens=False,
        tokenizer_class="Qwen2Tokenizer", unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8")

