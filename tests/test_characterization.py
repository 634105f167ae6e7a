"""What the Synthesizer does, recorded: each chunk's codes and frame count and the metrics without
timing fields, for a matrix of cases, compared with `tests/data/characterization.json`.

A refactor of the streaming path must leave this record unchanged. After a change that is meant to
alter behaviour, write the record again with QWEN3_TTS_RECORD=1 and say why in the commit.

Fields that depend on thread timing are left out of the record and checked as properties instead:
where a cancelled stream stops (the read-ahead may be a chunk ahead), and where arriving text's
stalls cut its chunks (the audio made before a stall is flushed then).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
import torch
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.stream import StreamOptions, Synthesizer
from qwen3_tts_trt.runtime.voice import Voice, VoiceMaker
from support import REF_TEXT, TEXT, edited_checkpoint, write_wav

RECORD = Path(__file__).parent / "data" / "characterization.json"
VOICE = Voice(speaker="ryan", language="english")
UNTIMED = ("end_reason", "segments", "chunks", "frames", "frames_after_cancel", "backend", "fallback")


def _digest(codes: torch.Tensor) -> str:
    return hashlib.sha256(codes.to(torch.int64).contiguous().numpy().tobytes()).hexdigest()[:16]


def _metrics(synth: Synthesizer) -> dict:
    m = synth.last_metrics.to_dict()
    return {k: m[k] for k in UNTIMED}


def _chunks(synth: Synthesizer, chunks) -> dict:
    got = [(c.frames, c.codes) for c in chunks]
    return {"chunks": [[n, _digest(codes)] for n, codes in got],
            "codes": _digest(torch.cat([c for _, c in got])) if got else None,
            "metrics": _metrics(synth)}


@pytest.fixture(scope="module")
def synth(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    return Synthesizer.open(tiny_custom_voice, out, "onnx")


def case_short_text(synth, **_):
    return _chunks(synth, synth.stream(TEXT, VOICE, synth.greedy_params(max_new_tokens=48)))


def case_short_text_sampled(synth, **_):
    return _chunks(synth, synth.stream(TEXT, VOICE, synth.default_params(max_new_tokens=40, seed=7)))


def case_long_text_split(tiny_build, tiny_custom_voice, **_):
    out, _ = tiny_build
    long_synth = Synthesizer.open(tiny_custom_voice, out, "onnx",
                                  options=StreamOptions(base_frames=10, frames_per_token=1))
    text = "This sentence is one of many in a long paragraph. " * 25
    return _chunks(long_synth, long_synth.stream(text, VOICE, SamplingParams.greedy()))


def case_frame_cap_runaway(tiny_custom_voice, tmp_path, **_):
    def no_eos(state):
        state["talker.codec_head.weight"][2150] = 0.0

    ckpt = edited_checkpoint(tiny_custom_voice, tmp_path / "no-eos", no_eos)
    runaway = Synthesizer.open(ckpt, None, "torch", options=StreamOptions(base_frames=20, frames_per_token=1.0))
    return _chunks(runaway, runaway.stream("Hi there.", VOICE, runaway.default_params(seed=3)))


def case_cancel_mid_stream(synth, **_):
    got = []
    with closing(synth.stream(TEXT, VOICE, synth.greedy_params(max_new_tokens=400))) as chunks:
        for chunk in chunks:
            got.append(chunk)
            if chunk.index == 2:
                synth.cancel()
    m = synth.last_metrics
    assert m.frames_after_cancel is not None and m.frames_after_cancel <= 1
    assert m.frames >= sum(c.frames for c in got)
    return {"chunks": [[c.frames, _digest(c.codes)] for c in got],
            "metrics": {k: v for k, v in _metrics(synth).items() if k not in ("frames", "chunks", "frames_after_cancel")}}


def case_stream_text_with_stalls(synth, **_):
    words = TEXT.split(" ")

    def slowly():
        for i, word in enumerate(words):
            yield word if i == 0 else " " + word
            if i in (1, 5):
                time.sleep(0.4)  # the frame loop runs out of text and waits

    params = synth.greedy_params(max_new_tokens=48)
    got = list(synth.stream_text(slowly(), VOICE, params))
    m = synth.last_metrics
    assert m.text_stall_ms is not None and m.text_stall_ms > 0
    return {"codes": _digest(torch.cat([c.codes for c in got])),
            "metrics": {k: v for k, v in _metrics(synth).items() if k != "chunks"}}


def case_icl_clone(tiny_base, tiny_base_build, tmp_path, **_):
    out, _ = tiny_base_build
    voice = VoiceMaker.open(tiny_base, backend="torch").make(
        write_wav(tmp_path / "ref.wav", seconds=2.4), REF_TEXT, language="english")
    clone = Synthesizer.open(tiny_base, out, "onnx")
    return _chunks(clone, clone.stream(TEXT, voice, clone.greedy_params(max_new_tokens=40)))


def case_four_concurrent_siblings(synth, **_):
    synths = [synth] + [synth.sibling() for _ in range(3)]
    speakers = ("ryan", "vivian", "serena", "ryan")
    results: list = [None] * 4
    errors: list = []

    def run(i):
        try:
            s = synths[i]
            params = (s.greedy_params(max_new_tokens=14 + 6 * i) if i % 2 == 0
                      else s.default_params(max_new_tokens=14 + 6 * i, seed=50 + i))
            chunks = list(s.stream(f"Stream {i}: " + TEXT, Voice(speaker=speakers[i], language="english"), params))
            results[i] = _chunks(s, chunks)
        except BaseException as exc:  # noqa: BLE001  (reported by the test thread)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    for s in synths[1:]:
        s.close()
    assert not errors, errors
    return results


CASES = {name[len("case_"):]: fn for name, fn in globals().items() if name.startswith("case_")}


def test_streaming_behaviour_is_unchanged(request, synth, tmp_path):
    fixtures = {"synth": synth, "tmp_path": tmp_path}
    for name in ("tiny_build", "tiny_custom_voice", "tiny_base", "tiny_base_build"):
        fixtures[name] = request.getfixturevalue(name)
    now = {name: fn(**fixtures) for name, fn in CASES.items()}
    if os.environ.get("QWEN3_TTS_RECORD") == "1":
        RECORD.parent.mkdir(exist_ok=True)
        RECORD.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
    recorded = json.loads(RECORD.read_text())
    for name in CASES:
        assert now[name] == recorded[name], f"case {name!r} changed"
