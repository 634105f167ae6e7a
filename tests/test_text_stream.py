"""Text that arrives while speech is made: incremental tokenization and `Synthesizer.stream_text`.

The oracle is the one-shot `stream()` of the whole text, which the parity tests tie to the
official implementation's streaming text layout.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time

import pytest
import torch

from qwen3_tts_trt.runtime.config import ASSISTANT_TEMPLATE
from qwen3_tts_trt.runtime.errors import PromptError
from qwen3_tts_trt.runtime.prompt import ASSISTANT_SUFFIX_LEN, ROLE_LEN
from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer
from qwen3_tts_trt.runtime.text import TextTokenizer
from qwen3_tts_trt.runtime.text_stream import IncrementalTokenizer, TextInput
from qwen3_tts_trt.runtime.voice import Voice

TEXTS = {
    "english": "Hello world, this is a streaming test of the voice runtime.",
    "chinese": "你好，世界！今天天气很好，我们去公园散步吧。",
    "mixed": "Mixed 中文 and English, 123 numbers 4567, don't stop!",
    "emoji": "Emoji 👨‍👩‍👧 family 🎉🎉 party, café cafe\u0301 naïve.",
    "spacing": "  leading spaces\n\nnew lines\tand tabs, \"quoted\" (paren) a-b c--d ...!?",
}
VOICE = Voice(speaker="ryan", language="english")


def whole_ids(tok, text):
    return tok.encode(ASSISTANT_TEMPLATE.format(text=text))[ROLE_LEN:-ASSISTANT_SUFFIX_LEN]


def fragmentations(text, tok, rng, random_cuts=8):
    """One piece, per character, per token, and random cuts."""
    yield [text]
    yield list(text)
    per_token = [tok._tok.decode([i]) for i in whole_ids(tok, text)]
    if "".join(per_token) == text:
        yield per_token
    for _ in range(random_cuts):
        k = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 15))))
        yield [text[a:b] for a, b in zip([0] + k, k + [len(text)])]


@pytest.fixture(scope="module")
def tok(tiny_custom_voice):
    return TextTokenizer(tiny_custom_voice)


@pytest.mark.parametrize("name", list(TEXTS))
def test_incremental_ids_equal_the_whole_texts_over_random_cuts(tok, name):
    text, rng = TEXTS[name], random.Random(name)
    whole = whole_ids(tok, text)
    for cuts in fragmentations(text, tok, rng, random_cuts=40):
        inc = IncrementalTokenizer(tok)
        early = []
        for piece in cuts:
            early += inc.feed(piece)
        assert early + inc.close() == whole, cuts
        assert early == whole[:len(early)]


def test_ids_are_released_before_the_text_ends(tok):
    inc = IncrementalTokenizer(tok)
    released = [len(inc.feed(piece)) for piece in ["one", " two", " three", " four"]]
    assert released[0] == 0  # "one" may still grow ("ones", "one's")
    assert all(n > 0 for n in released[1:])  # each later word settles the one before it
    assert len(inc.close()) > 0  # "four" only when the text ends


LONG = ("The first sentence is short. Then comes a longer one, with a clause or two, that runs on for a while! "
        "Is this the third? 第四句是中文。 And a fifth, ending the paragraph.\n") * 6


def segments_of(tok, text, cuts, max_ids, window):
    live = TextInput(tok)
    live.limit(max_ids, window)
    for piece in cuts:
        live.push(piece)
    live.close()
    assert live.error is None
    return live.segments


@pytest.mark.parametrize("kind", ["sentences", "run_on", "one_word"])
def test_long_arriving_text_is_cut_into_segments_that_each_fit(tok, kind):
    """Each segment holds at most max_ids ids, equal to tokenizing its text alone (as stream() does
    one piece), ends at a sentence end where the text has one, and no text is lost or repeated."""
    text = {"sentences": LONG, "run_on": " ".join(["word"] * 150) + ".", "one_word": "x" * 400}[kind]
    rng = random.Random(kind)
    randomly = [sorted(rng.sample(range(1, len(text)), 40)) for _ in range(3)]
    for cuts in [[text], list(text), re.findall(r"\S+\s*", text)] + [
            [text[a:b] for a, b in zip([0] + k, k + [len(text)])] for k in randomly]:
        # ids: about one per character with this tokenizer; the window is longer than any sentence
        segs = [s for s in segments_of(tok, text, cuts, max_ids=80, window=50) if s.text]
        assert len(segs) > 1
        assert "".join(s.text for s in segs).replace(" ", "").replace("\n", "") == \
            text.replace(" ", "").replace("\n", "")
        for seg in segs:
            assert seg.feed.closed and seg.feed.ids == whole_ids(tok, seg.text) and len(seg.feed.ids) <= 80
        if kind == "sentences":  # every cut at a sentence end
            assert all(s.text.rstrip().endswith((".", "!", "?", "。")) for s in segs[:-1]), [s.text for s in segs]
            if cuts == re.findall(r"\S+\s*", text):  # word by word: each segment runs into the window
                assert all(len(s.feed.ids) >= 80 - 50 - 10 for s in segs[:-1]), [len(s.feed.ids) for s in segs]
        if kind == "run_on":
            assert all(s.text.rstrip().endswith("word") for s in segs[:-1])


@pytest.fixture(scope="module")
def torch_synth(tiny_custom_voice):
    return Synthesizer.open(tiny_custom_voice, None, "torch")


def codes_of(chunks) -> torch.Tensor:
    return torch.cat([c.codes for c in chunks])


def speak_while_writing(synth, cuts, voice, params):
    """Push the fragments from another thread; once the first id is final, hold the rest back until
    the first audio has left, so that generation really runs while the text is still arriving."""
    live = synth.text_input()
    first_audio = threading.Event()
    before, taken = synth.prompts.streaming_layout(voice)
    need = max(taken - len(before), 1)  # text ids the prefill takes

    def write():
        waited = False
        for piece in cuts:
            live.push(piece)
            if len(live.feed.ids) >= need and not waited:
                first_audio.wait(60)
                waited = True
        live.close()

    writer = threading.Thread(target=write)
    writer.start()
    chunks = []
    for chunk in synth.stream_text(live, voice, params):
        chunks.append(chunk)
        first_audio.set()
    first_audio.set()
    writer.join()
    return codes_of(chunks)


@pytest.mark.parametrize("which", ["onnx_synth", "torch_synth"])
@pytest.mark.parametrize("name", ["english", "chinese", "mixed", "emoji"])
def test_stream_text_codes_equal_the_one_shot_stream(which, name, request, tok):
    synth = request.getfixturevalue(which)
    text, rng = TEXTS[name], random.Random(name)
    params = synth.greedy_params(max_new_tokens=40)
    oneshot = codes_of(synth.stream(text, VOICE, params))
    for cuts in list(fragmentations(text, tok, rng, random_cuts=2 if which == "torch_synth" else 4)):
        got = speak_while_writing(synth, cuts, VOICE, params)
        assert torch.equal(got, oneshot), cuts
        assert synth.last_metrics.segments == 1


def test_slow_text_stalls_and_still_equals_the_one_shot_stream(onnx_synth):
    synth, text = onnx_synth, TEXTS["english"]
    params = synth.greedy_params(max_new_tokens=60)
    oneshot = codes_of(synth.stream(text, VOICE, params))
    words = text.split(" ")

    def typed_slowly():  # one word every 200 ms: far slower than the model reads
        for i, word in enumerate(words):
            time.sleep(0.2)
            yield word + (" " if i < len(words) - 1 else "")

    chunks = []
    t0 = time.perf_counter()
    for chunk in synth.stream_text(typed_slowly(), VOICE, params):
        chunks.append((time.perf_counter() - t0, chunk))
    m = synth.last_metrics
    assert torch.equal(codes_of(c for _, c in chunks), oneshot)
    assert m.text_stall_ms > 200  # it waited for words instead of reading padding
    assert chunks[0][0] < 0.2 * (len(words) - 1)  # first audio long before the last word was written


def test_sampled_stream_text_with_a_seed_equals_the_one_shot_stream(onnx_synth, tok):
    synth, text = onnx_synth, TEXTS["mixed"]
    params = synth.default_params(max_new_tokens=40, seed=11)
    oneshot = codes_of(synth.stream(text, VOICE, params))
    cuts = next(c for i, c in enumerate(fragmentations(text, tok, random.Random(3))) if i == 3)
    assert torch.equal(speak_while_writing(synth, cuts, VOICE, params), oneshot)


def test_cancel_while_waiting_for_text_ends_the_stream(onnx_synth):
    synth = onnx_synth
    live = synth.text_input()
    live.push("Hello there, and ")  # never closed: the loop waits for more
    stream = synth.stream_text(live, VOICE, synth.greedy_params(max_new_tokens=200))
    first = next(stream)
    threading.Timer(0.2, synth.cancel).start()
    rest = list(stream)
    m = synth.last_metrics
    assert first.frames >= 1 and m.end_reason == "cancelled" and m.frames_after_cancel <= 1
    assert first.frames + sum(c.frames for c in rest) <= m.frames  # frames held at the cancel are dropped
    assert next(iter(synth.stream("Hi.", VOICE, synth.greedy_params(max_new_tokens=5)))).frames == 1  # free again


def test_stream_text_errors_are_clear(onnx_synth):
    synth = onnx_synth
    with pytest.raises(PromptError, match="non-streaming text layout"):
        synth.stream_text(["Hello"], Voice(speaker="ryan", non_streaming_text=True))
    with pytest.raises(PromptError, match="iterable of text fragments"):
        synth.stream_text("Hello there.", VOICE)
    with pytest.raises(PromptError, match="unknown speaker"):
        synth.stream_text(["Hello"], Voice(speaker="nobody"))

    def broken_source():
        yield "Hello there, "
        raise ConnectionError("the LLM went away")

    with pytest.raises(PromptError, match="text source raised ConnectionError"):
        list(synth.stream_text(broken_source(), VOICE, synth.greedy_params(max_new_tokens=20)))
    with pytest.raises(PromptError, match="text is empty"):
        list(synth.stream_text(["", "  "], VOICE))


def test_control_tokens_arriving_mid_stream_are_refused_not_fed(onnx_synth):
    """Text that is still being written is checked as whole text is: a control token that arrives
    after the frames have started ends the stream with the same error, never reaching the model."""
    synth = onnx_synth
    live = synth.text_input()
    live.push("Say this, ")
    stream = synth.stream_text(live, VOICE, synth.greedy_params(max_new_tokens=40))
    next(stream)  # frames are being made from the first words
    live.push("then <|im_start|> that.")
    live.close()
    with pytest.raises(PromptError, match=r"text holds the model's control token\(s\) <\|im_start\|>"):
        list(stream)
    with pytest.raises(PromptError, match="lone surrogate"):
        list(synth.stream_text(["Hello ", "\ud800 there."], VOICE, synth.greedy_params(max_new_tokens=20)))


def test_icl_clone_stream_text_equals_the_one_shot_stream(tiny_base):
    synth = Synthesizer.open(tiny_base, None, "torch")
    hidden = synth.config.talker.hidden_size
    g = torch.Generator().manual_seed(0)
    voice = Voice(xvector=torch.randn(hidden, generator=g), ref_codes=torch.randint(0, 2048, (6, 16), generator=g),
                  ref_text="A short reference.", language="english")
    text = TEXTS["english"]
    params = synth.greedy_params(max_new_tokens=30)
    oneshot = codes_of(synth.stream(text, voice, params))
    cuts = [w + " " for w in text.split(" ")[:-1]] + [text.split(" ")[-1]]
    assert torch.equal(speak_while_writing(synth, cuts, voice, params), oneshot)


@pytest.mark.slow  # ~30-45 s: CI's slow step keeps the default run under 20 minutes
def test_cli_says_standard_input_as_it_arrives(tiny_build, tiny_custom_voice, tmp_path):
    import subprocess
    import sys

    import numpy as np
    import soundfile as sf

    out, _ = tiny_build
    text = TEXTS["english"]
    common = ["-m", str(tiny_custom_voice), "--build-dir", str(out), "--backend", "onnx", "--speaker", "ryan",
              "--language", "english", "--greedy", "--max-new-tokens", "40", "--no-warmup", "-q"]
    cli = [sys.executable, "-m", "qwen3_tts_trt.commands", "say"]
    whole = tmp_path / "whole.wav"
    run = subprocess.run(cli + [text, "-o", str(whole)] + common, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    streamed = tmp_path / "streamed.wav"
    proc = subprocess.Popen(cli + ["--stdin-stream", "-o", str(streamed)] + common, stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    words = text.split(" ")
    for i, word in enumerate(words):  # a slow writer, as an LLM piping its tokens
        proc.stdin.write((word + (" " if i < len(words) - 1 else "")).encode())
        proc.stdin.flush()
        time.sleep(0.05)
    proc.stdin.close()
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()
    a, _ = sf.read(str(whole), dtype="int16")
    b, _ = sf.read(str(streamed), dtype="int16")
    assert len(a) == len(b) > 0 and np.abs(a.astype(int) - b.astype(int)).max() <= 2  # same codes, other chunks


@pytest.mark.slow  # ~30 s: CI's slow step keeps the default run under 20 minutes
def test_long_text_while_writing_is_spoken_segment_by_segment(tiny_build, tiny_custom_voice):
    """Text longer than one context, arriving word by word: cut at sentence ends into segments that
    each speak exactly as stream() speaks that text, on one codec stream; never ended by the context."""
    out, _ = tiny_build
    synth = Synthesizer.open(tiny_custom_voice, out, "onnx", options=StreamOptions(base_frames=10, frames_per_token=1))
    text = "This sentence is one of many in a long paragraph. " * 25
    assert synth.prepare(text, VOICE, synth.greedy_params()).__len__() > 1  # too long for one context
    params = synth.greedy_params()
    live = synth.text_input()
    words = [w + " " for w in text.split()]
    got = []
    writer = threading.Thread(target=lambda: ([live.push(w) or time.sleep(0.002) for w in words], live.close()))
    writer.start()
    for chunk in synth.stream_text(live, VOICE, params):
        got.append(chunk)
    writer.join()
    m = synth.last_metrics
    segs = [s for s in live.segments if s.text.strip()]
    assert m.segments == len(segs) > 1 and m.end_reason != "context"
    assert all(s.text.rstrip().endswith(".") for s in segs)
    expected = torch.cat([codes_of(synth.stream(s.text, VOICE, params)) for s in segs])
    assert torch.equal(codes_of(got), expected)


async def test_astream_text_takes_an_async_token_stream(onnx_synth):
    synth, text = onnx_synth, TEXTS["english"]
    params = synth.greedy_params(max_new_tokens=40)
    oneshot = codes_of(synth.stream(text, VOICE, params))
    words = text.split(" ")

    async def llm_tokens():
        for i, word in enumerate(words):
            await asyncio.sleep(0.01)
            yield word + (" " if i < len(words) - 1 else "")

    got = [chunk async for chunk in synth.astream_text(llm_tokens(), VOICE, params)]
    assert torch.equal(codes_of(got), oneshot)

    async def endless():
        while True:
            await asyncio.sleep(0.01)
            yield "more words "

    speech = synth.astream_text(endless(), VOICE, synth.greedy_params(max_new_tokens=500))
    assert (await speech.__anext__()).frames >= 1
    await speech.aclose()  # leaving early stops the reading and the generation
    assert synth.last_metrics.end_reason == "cancelled" and synth.last_metrics.frames_after_cancel <= 1
