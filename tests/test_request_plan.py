"""Request planning: the positions a voice's prompts take, counted without building them; the one
fit rule for whole and arriving text; one prompt built per piece of text per request."""

from __future__ import annotations

import pytest
import torch
from qwen3_tts_trt.runtime.contract import EngineLimits
from qwen3_tts_trt.runtime.embed import Embedder
from qwen3_tts_trt.runtime.prompt import PromptBuilder
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.request_plan import RequestPlanner, StreamOptions
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.text import TextTokenizer
from qwen3_tts_trt.runtime.voice import Voice
from support import TEXT

TEXTS = ["Hi.", "Hello there.", TEXT, "One two three four five six seven eight nine ten. " * 4, "日本語のテキスト。"]


def _builder(checkpoint) -> PromptBuilder:
    ref = Reference.load(checkpoint)
    return PromptBuilder(ref.config, TextTokenizer(checkpoint), Embedder.from_checkpoint(checkpoint, ref.config))


def _voices(variant: str, hidden: int) -> dict[str, Voice]:
    g = torch.Generator().manual_seed(0)
    if variant == "custom_voice":
        return {"speaker": Voice(speaker="ryan"), "speaker_language": Voice(speaker="vivian", language="english"),
                "non_streaming": Voice(speaker="ryan", language="english", non_streaming_text=True)}
    if variant == "voice_design":
        return {"instruct": Voice(instruct="A warm, low voice.", language="english"),
                "no_instruct": Voice(language="english")}
    x = torch.randn(hidden, generator=g)
    return {"xvector": Voice(xvector=x, language="english"),
            # a short reference (the text outruns its frames) and a long one (the frames outrun the text)
            "icl_short": Voice(xvector=x, ref_codes=torch.randint(0, 2048, (3, 16), generator=g), ref_text="Hi."),
            "icl_long": Voice(xvector=x, ref_codes=torch.randint(0, 2048, (90, 16), generator=g),
                              ref_text="This is what the reference says."),
            "icl_non_streaming": Voice(xvector=x, ref_codes=torch.randint(0, 2048, (20, 16), generator=g),
                                       ref_text="The reference.", non_streaming_text=True)}


@pytest.mark.parametrize("checkpoint", ["tiny_custom_voice", "tiny_voice_design", "tiny_base"])
def test_prompt_shape_counts_what_build_makes(checkpoint, request):
    prompts = _builder(request.getfixturevalue(checkpoint))
    for name, voice in _voices(prompts.cfg.variant, prompts.cfg.talker.hidden_size).items():
        shape = prompts.shape(voice)
        for text in TEXTS:
            built = prompts.build(text, voice)
            n = len(built.text_ids)
            assert (shape.length(n), shape.text_positions(n)) == (built.length, built.text_positions), (name, text)


def test_a_voice_is_checked_as_build_checks_it(tiny_custom_voice, tiny_base):
    from qwen3_tts_trt.runtime.errors import PromptError

    custom, base = _builder(tiny_custom_voice), _builder(tiny_base)
    for prompts, voice in [(custom, Voice(speaker="nobody")), (custom, Voice(speaker="ryan", language="klingon")),
                           (custom, Voice()), (base, Voice(speaker="ryan")),
                           (base, Voice(xvector=torch.zeros(64), ref_codes=torch.zeros(2, 16, dtype=torch.long))),
                           (base, Voice(xvector=torch.zeros(64), ref_codes=torch.zeros(2, 3, dtype=torch.long),
                                        ref_text="Hi."))]:
        with pytest.raises(PromptError) as from_build:
            prompts.build("Hello.", voice)
        with pytest.raises(PromptError) as from_shape:
            prompts.shape(voice)
        assert str(from_shape.value) == str(from_build.value)


def test_whole_and_arriving_text_share_one_fit_rule(tiny_custom_voice):
    prompts = _builder(tiny_custom_voice)
    limits = EngineLimits(max_context=256, max_prompt=128, max_chunk=10)
    planner = RequestPlanner(prompts, limits, StreamOptions(base_frames=10, frames_per_token=1))
    voice, params = Voice(speaker="ryan", language="english"), SamplingParams.greedy()
    shape = planner.check(voice, params)
    most = planner.arriving_text_limit(shape, params)
    assert planner.fits(shape, most, params) and not planner.fits(shape, most + 1, params)
    pieces = planner.plan("This sentence is one of many in a long paragraph. " * 25, voice, params)
    sizes = [len(prompts.build(p, voice).text_ids) for p in pieces]
    assert len(pieces) > 1 and max(sizes) <= most
    # each piece but the last was cut because the next sentence would not fit
    sentence = len(prompts.build("This sentence is one of many in a long paragraph.", voice).text_ids)
    assert all(n + sentence > most for n in sizes[:-1])


@pytest.fixture(scope="module")
def synth(tiny_build, tiny_custom_voice):
    return Synthesizer.open(tiny_custom_voice, tiny_build[0], "onnx")


def _count_builds(synth, monkeypatch) -> list[int]:
    built: list[int] = []
    inner = synth.prompts.build_ids

    def counting(role_ids, body, voice=Voice()):
        built.append(len(body))
        return inner(role_ids, body, voice)

    monkeypatch.setattr(synth.prompts, "build_ids", counting)
    return built


def test_a_request_builds_one_prompt_per_piece_of_text(synth, monkeypatch):
    """A server request (check, then the stream) and a long text: a prompt per piece, none to validate."""
    from qwen3_tts_trt.runtime.stream_pool import StreamPool

    built = _count_builds(synth, monkeypatch)
    voice, params = Voice(speaker="ryan", language="english"), synth.greedy_params(max_new_tokens=6)
    pool = StreamPool(synth, capacity=1)
    pool.check(voice, params)
    list(synth.stream(TEXT, voice, params))
    assert len(built) == 1, built
    built.clear()
    long_text = "This sentence is one of many in a long paragraph. " * 40
    list(synth.stream(long_text, voice, params))
    assert len(built) == synth.last_metrics.segments > 1, built
    built.clear()
    list(synth.stream_text(iter([TEXT]), voice, params))
    assert len(built) == 1, built
