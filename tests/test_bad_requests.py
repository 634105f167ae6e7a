"""One table of bad requests (tests/bad_requests.py) through the CLI and the Pipecat service: each
is refused with the runtime's own message, as one line (CLI: exit 2) or one ErrorFrame after which
the pipeline keeps speaking. The server's side is in test_serve.py (HTTP 400, WebSocket 1008)."""

from __future__ import annotations

import pytest
import torch

from bad_requests import CASES, refusal
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.voice import Voice, origin_of

pytest.importorskip("pipecat")

from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame, TTSUpdateSettingsFrame  # noqa: E402
from pipecat.tests.utils import run_test  # noqa: E402

from qwen3_tts_trt.pipecat_service import Qwen3TTSService, Qwen3TTSSettings  # noqa: E402


@pytest.fixture(scope="module")
def synths(tiny_build, tiny_custom_voice, tiny_base_build, tiny_base):
    return {"custom_voice": Synthesizer.open(tiny_custom_voice, tiny_build[0], "onnx"),
            "base": Synthesizer.open(tiny_base, tiny_base_build[0], "onnx")}


@pytest.fixture(scope="module")
def clone(synths, tmp_path_factory):
    """A .voice file for the tiny Base checkpoint (a random x-vector: who it sounds like is moot)."""
    config = synths["base"].config
    voice = Voice(xvector=torch.randn(config.talker.hidden_size, generator=torch.Generator().manual_seed(0)),
                  language="english", made_for=origin_of(config, "tiny-base"))
    return voice.save(tmp_path_factory.mktemp("voices") / "me.voice")


@pytest.mark.parametrize("name", CASES)
def test_the_cli_refuses_with_the_runtimes_message(name, synths, clone, tiny_build, tiny_custom_voice,
                                                   tiny_base_build, tiny_base, tmp_path, capsys):
    from qwen3_tts_trt.commands.main import main

    case = CASES[name]
    base = case.variant == "base"
    expected = refusal(synths[case.variant], case, clone=clone if base and not case.instruct else None)
    model, build = (tiny_base, tiny_base_build[0]) if base else (tiny_custom_voice, tiny_build[0])
    args = ["say", case.text, "-m", model, "--build-dir", build, "--backend", "onnx", "--no-warmup", "-q",
            "--language", case.language, "-o", tmp_path / "out.wav"]
    args += ["--speaker", case.speaker] if case.speaker else []
    args += ["--instruct", case.instruct] if case.instruct else []
    for setting, value in case.sampling.items():
        args += [f"--{setting.replace('_', '-')}", str(value)]
    assert main([str(a) for a in args]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"error: {expected}"]
    assert not (tmp_path / "out.wav").exists()


@pytest.mark.parametrize("name", CASES)
async def test_the_pipecat_service_refuses_with_the_runtimes_message_and_keeps_speaking(name, synths, clone):
    case = CASES[name]
    synth = synths[case.variant]
    base = case.variant == "base"
    good = Qwen3TTSSettings(voice=str(clone) if base else "ryan", language="english", greedy=True, max_new_tokens=6)
    expected = refusal(synth, case, clone=Voice.load(clone, synth.config) if base else None)
    if case.bad_text:  # refused when it is spoken
        frames = [TTSSpeakFrame(case.text)]
    else:  # bad settings: refused when they arrive; the last good ones keep speaking
        changes = dict(language=case.language, instruct=case.instruct, **case.sampling)
        if not base:
            changes["voice"] = case.speaker
        frames = [TTSUpdateSettingsFrame(delta=Qwen3TTSSettings(**{k: v for k, v in changes.items() if v is not None}))]
    service = Qwen3TTSService(synthesizer=synth, settings=good)
    down, up = await run_test(service, frames_to_send=[*frames, TTSSpeakFrame("Still speaking.")])
    errors = [f.error for f in up if isinstance(f, ErrorFrame)]
    if name == "empty text":  # Pipecat's own text handling drops text with nothing to say before a service sees it
        assert errors == []
    else:
        assert errors and errors[0].endswith(str(expected)), errors
        # Pipecat's own note on a turn that ended without audio may follow; nothing else may
        assert all("completed with no audio" in e for e in errors[1:]), errors
    assert any(isinstance(f, TTSAudioRawFrame) for f in down)  # the pipeline kept speaking


def test_every_front_end_exposes_the_same_sampling_fields():
    """The runtime's list, by the official names: the CLI's options, the server's request fields and
    the Pipecat service's settings each carry exactly these (plus `greedy`, do_sample=False)."""
    from dataclasses import fields

    from qwen3_tts_trt.commands.main import build_parser
    from qwen3_tts_trt.runtime.requests import SAMPLING_FIELDS
    from qwen3_tts_trt.serve.schemas import VoiceFields

    say = build_parser()._subparsers._group_actions[0].choices["say"]
    cli = {a.dest for a in say._actions}
    server = set(VoiceFields.model_fields)
    pipecat = {f.name for f in fields(Qwen3TTSSettings)}
    for name, exposed in (("cli", cli), ("server", server), ("pipecat", pipecat)):
        assert set(SAMPLING_FIELDS) | {"greedy"} <= exposed, (name, sorted(set(SAMPLING_FIELDS) - exposed))
        others = {f for f in exposed if f.startswith(("subtalker_", "top_", "temperature", "repetition"))}
        assert others <= set(SAMPLING_FIELDS), (name, others)
