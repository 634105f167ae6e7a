"""The streaming synthesizer over the ONNX Runtime and PyTorch backends (tiny checkpoint)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from qwen3_tts_trt.runtime.backends import open_backend
from qwen3_tts_trt.runtime.checkpoint import load_networks
from qwen3_tts_trt.runtime.errors import EngineMismatchError, PromptError
from qwen3_tts_trt.runtime.prompt import PromptBuilder
from qwen3_tts_trt.runtime.voice import Voice
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer
from support import LIMITS, TEXT, edited_checkpoint

VOICE = Voice(speaker="ryan", language="english")
GREEDY = SamplingParams.greedy(max_new_tokens=48)


@pytest.fixture(scope="module")
def torch_synth(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    return Synthesizer.open(tiny_custom_voice, out, "torch")


def _codes_of(synth, text, voice, params):
    """Frames the synthesizer generated, captured at the codec (what it vocoded, in order)."""
    seen = []
    inner = synth.backend.codec_run

    def spy(codes, state):
        seen.append(codes[0].T.cpu())
        return inner(codes, state)

    synth.backend.codec_run = spy
    try:
        pcm = np.concatenate([c.samples for c in synth.stream(text, voice, params)])
    finally:
        synth.backend.codec_run = inner
    return torch.cat(seen), pcm


@pytest.mark.parametrize("which", ["onnx_synth", "torch_synth"])
def test_greedy_stream_equals_reference_codes_and_whole_decode(which, request, tiny_custom_voice):
    synth = request.getfixturevalue(which)
    ref = Reference.load(tiny_custom_voice, max_context=LIMITS.max_context)
    oracle = ref.generate(TEXT, VOICE, GREEDY).codes
    codes, pcm = _codes_of(synth, TEXT, VOICE, GREEDY)
    assert torch.equal(codes, oracle) and codes.shape[0] >= 40
    whole = ref.decode(oracle).numpy()
    assert pcm.shape == whole.shape
    assert np.abs(pcm - whole).max() <= 1e-4
    m = synth.last_metrics
    assert m.frames == oracle.shape[0] and m.end_reason == "max_new_tokens" and m.ttfc_ms > 0
    assert m.audio_seconds == pytest.approx(len(pcm) / 24000)


def test_chunk_ramp_first_chunk_is_one_frame(onnx_synth):
    sizes = [c.frames for c in onnx_synth.stream(TEXT, VOICE, GREEDY)]
    assert sizes[:5] == [1, 2, 4, 8, 10] and all(s == 10 for s in sizes[5:-1]) and sum(sizes) == 47
    assert onnx_synth.last_metrics.chunks == len(sizes)


def test_chunks_are_float32_with_pcm16_bytes(onnx_synth):
    chunk = next(iter(onnx_synth.stream(TEXT, VOICE, GREEDY)))
    assert chunk.samples.dtype == np.float32 and chunk.samples.shape == (1920,)
    pcm = chunk.pcm16_bytes()
    assert len(pcm) == 2 * 1920
    expected = np.round(np.clip(chunk.samples, -1, 1) * 32767).astype("<i2")
    assert np.array_equal(np.frombuffer(pcm, dtype="<i2"), expected)


def test_sampling_with_seed_is_reproducible(onnx_synth):
    params = onnx_synth.default_params(max_new_tokens=30, seed=11)
    a = onnx_synth.synthesize(TEXT, VOICE, params)
    b = onnx_synth.synthesize(TEXT, VOICE, params)
    c = onnx_synth.synthesize(TEXT, VOICE, onnx_synth.default_params(max_new_tokens=30, seed=12))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_async_stream_matches_sync(onnx_synth):
    sync = onnx_synth.synthesize(TEXT, VOICE, GREEDY)

    async def collect():
        return [c async for c in onnx_synth.astream(TEXT, VOICE, GREEDY)]

    chunks = asyncio.run(collect())
    assert np.array_equal(np.concatenate([c.samples for c in chunks]), sync)


def test_cancel_mid_stream_then_normal_request(onnx_synth):
    stream = onnx_synth.stream(TEXT, VOICE, SamplingParams.greedy(max_new_tokens=400))
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    assert onnx_synth.last_metrics.end_reason == "cancelled"
    assert onnx_synth.last_metrics.frames < 20
    full = onnx_synth.synthesize(TEXT, VOICE, GREEDY)
    assert onnx_synth.last_metrics.frames == 47 and len(full) == 47 * 1920
    # an abandoned (never closed) stream does not block the next request either
    abandoned = onnx_synth.stream(TEXT, VOICE, SamplingParams.greedy(max_new_tokens=400))
    next(abandoned)
    assert len(onnx_synth.synthesize(TEXT, VOICE, GREEDY)) == 47 * 1920


def test_async_cancel_frees_the_synthesizer(onnx_synth):
    async def run():
        agen = onnx_synth.astream(TEXT, VOICE, SamplingParams.greedy(max_new_tokens=400))
        async for chunk in agen:
            if chunk.index == 1:
                break
        await agen.aclose()
        return [c async for c in onnx_synth.astream(TEXT, VOICE, GREEDY)]

    chunks = asyncio.run(run())
    assert sum(c.frames for c in chunks) == 47


def test_cancel_from_another_thread(onnx_synth):
    import threading

    stream = onnx_synth.stream(TEXT, VOICE, SamplingParams.greedy(max_new_tokens=400))
    got = []

    def consume():
        for chunk in stream:
            got.append(chunk)
            if chunk.index == 1:
                onnx_synth.cancel()

    t = threading.Thread(target=consume)
    t.start()
    t.join(timeout=60)
    assert not t.is_alive() and onnx_synth.last_metrics.end_reason == "cancelled"
    assert len(onnx_synth.synthesize(TEXT, VOICE, GREEDY)) == 47 * 1920


def test_runaway_generation_hits_the_frame_cap(tiny_custom_voice, tmp_path):
    """A model that never says EOS (its EOS logit pushed far down) is stopped by the guard. The
    guard is the Synthesizer's, the same over every backend: PyTorch spares this model a build."""
    def no_eos(state):  # EOS logit 0, far below the top-50 audio logits (std 1.6): never sampled
        state["talker.codec_head.weight"][2150] = 0.0

    ckpt = edited_checkpoint(tiny_custom_voice, tmp_path / "no-eos", no_eos)
    options = StreamOptions(base_frames=20, frames_per_token=1.0)
    synth = Synthesizer.open(ckpt, None, "torch", options=options)
    pcm = synth.synthesize("Hi there.", VOICE, synth.default_params(seed=3))
    m = synth.last_metrics
    tokens = len(synth.prompts.build("Hi there.", VOICE).text_ids)
    assert m.end_reason == "frame_cap" and m.frames == 20 + tokens
    assert len(pcm) == m.frames * 1920


def test_long_text_is_split_and_streamed_as_one(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    synth = Synthesizer.open(tiny_custom_voice, out, "onnx", options=StreamOptions(base_frames=10, frames_per_token=1))
    sentence = "This sentence is one of many in a long paragraph. "
    text = sentence * 25
    single = synth.prompts.build(text, VOICE)
    assert single.length + single.trailing.shape[1] >= LIMITS.max_context  # too long for one context
    codes, pcm = _codes_of(synth, text, VOICE, SamplingParams.greedy())
    m = synth.last_metrics
    assert m.segments > 1 and m.frames == codes.shape[0] and len(pcm) == m.frames * 1920
    pieces = synth.prepare(text, VOICE, SamplingParams.greedy())
    assert len(pieces) == m.segments
    # one codec stream: the audio equals decoding all frames together
    with torch.inference_mode():
        whole = load_networks(tiny_custom_voice).codec.decode(codes.T[None])[0].numpy()
    assert np.abs(pcm - whole).max() <= 1e-4


def test_a_one_piece_text_builds_its_prompt_once_and_as_a_fresh_builder_would(onnx_synth):
    # Before the first audio: the split's prompt is the stream's (not built twice), and the
    # vectors every prompt shares are made once; neither may change what the prompt holds.
    built = []
    real_build = onnx_synth.prompts.build

    def counting_build(text, voice=Voice()):
        built.append(text)
        return real_build(text, voice)

    onnx_synth.prompts.build = counting_build
    try:
        codes, _ = _codes_of(onnx_synth, TEXT, VOICE, GREEDY)
    finally:
        del onnx_synth.prompts.build
    assert built.count(TEXT) == 1, built
    fresh = PromptBuilder(onnx_synth.config, onnx_synth.prompts.tok, onnx_synth.prompts.emb)
    for voice in (VOICE, Voice(speaker="ryan", language="english", non_streaming_text=True)):
        a, b = onnx_synth.prompts.build(TEXT, voice), fresh.build(TEXT, voice)
        assert all(torch.equal(x, y) for x, y in ((a.embeds, b.embeds), (a.trailing, b.trailing), (a.pad, b.pad)))
    assert torch.equal(codes, _codes_of(onnx_synth, TEXT, VOICE, GREEDY)[0])


def test_clear_errors_before_streaming(onnx_synth):
    with pytest.raises(PromptError, match="empty"):
        onnx_synth.stream("   ", VOICE)
    with pytest.raises(PromptError, match="unknown speaker"):
        onnx_synth.stream(TEXT, Voice(speaker="nobody"))
    with pytest.raises(PromptError, match="unknown language"):
        onnx_synth.stream(TEXT, Voice(speaker="ryan", language="elvish"))
    assert len(onnx_synth.synthesize(TEXT, VOICE, GREEDY)) == 47 * 1920  # still usable


def test_mismatched_engines_are_refused(tiny_build, tiny_base):
    out, _ = tiny_build
    with pytest.raises(EngineMismatchError, match="not for this checkpoint"):
        Synthesizer.open(tiny_base, out, "onnx")
    with pytest.raises(EngineMismatchError, match="not for this checkpoint"):
        open_backend("torch", tiny_base, out)


def test_cli_say_and_bench(tiny_build, tiny_custom_voice, tmp_path, capsys):
    import soundfile as sf

    from qwen3_tts_trt.commands.main import main

    out, _ = tiny_build
    wav = tmp_path / "hello.wav"
    assert main(["say", "Hello there.", "-m", str(tiny_custom_voice), "--build-dir", str(out), "--speaker", "ryan",
                 "--max-new-tokens", "30", "--greedy", "-o", str(wav)]) == 0
    data, sr = sf.read(wav, dtype="int16")
    assert sr == 24000 and len(data) == 29 * 1920 and np.abs(data).max() > 0
    report = tmp_path / "bench.json"
    assert main(["bench", "-m", str(tiny_custom_voice), "--build-dir", str(out), "--speaker", "ryan", "--runs", "3",
                 "--max-new-tokens", "20", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["runs"] == 3 and data["host_us_per_frame"] > 0 and data["ttfc_ms_p95"] >= data["ttfc_ms_p50"]
    assert "host overhead per frame" in capsys.readouterr().out
    assert main(["say", "", "-m", str(tiny_custom_voice), "--build-dir", str(out), "--speaker", "ryan"]) == 2
