"""build.sh --precision int8|int4 and --codec-precision int8 on the tiny checkpoint: quantized graphs
that ONNX Runtime runs behind the same contract, a manifest that says so, and clear refusals where
they cannot run. How close they stay to fp32 is the quality gate's job (test_quality_gate.py, real
0.6B shapes)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from qwen3_tts_trt.export import build as build_mod
from qwen3_tts_trt.export.quality_gate import teacher_forced
from qwen3_tts_trt.runtime.backends import open_backend
from qwen3_tts_trt.runtime.contract import EngineLimits
from qwen3_tts_trt.runtime.errors import BackendUnavailableError, EngineMismatchError
from qwen3_tts_trt.runtime.manifest import check_manifest, load_manifest
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.voice import Voice

from support import LIMITS, TEXT


@pytest.fixture(scope="module")
def int_builds(tiny_build, tmp_path_factory):
    """int8 and int4 builds quantized from the session's fp32 build, at build.sh's layout."""
    fp32_dir, _ = tiny_build
    root = tmp_path_factory.mktemp("int-builds")
    out = {}
    for precision in ("int8", "int4"):
        out[precision] = root / precision / "cpu" / fp32_dir.name
        build_mod.quantize_build(fp32_dir, out[precision], precision, log=lambda *_: None)
    return out


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_weight_only_graphs_replace_every_weight_matmul(int_builds, tiny_build, precision):
    fp32_dir, fp32_manifest = tiny_build
    out = int_builds[precision]
    manifest = load_manifest(out)
    assert manifest["limits"]["precision"] == precision
    assert manifest["contract"] == fp32_manifest["contract"]  # same inputs and outputs, all float32
    for graph in build_mod.QUANTIZED_GRAPHS:
        q = manifest["engines"][graph]["quantized"]
        assert q["bits"] == int(precision[3:]) and q["matmuls"] > 0
        model = onnx.load(str(out / f"{graph}.onnx"), load_external_data=False)
        weights = {i.name for i in model.graph.initializer}
        ops = [n for n in model.graph.node]
        assert sum(n.op_type == "MatMulNBits" for n in ops) == q["matmuls"]
        # no fp32 MatMul with a weight is left behind
        assert not [n.name for n in ops if n.op_type == "MatMul" and n.input[1] in weights]
    # the predictor's weights shrink by about the bit ratio (its embedding tables stay fp32)
    fp32_bytes = manifest["engines"]["predictor"]["quantized"]["fp32_bytes"]
    assert build_mod.quantize.graph_bytes(out / "predictor.onnx") < fp32_bytes
    assert manifest["engines"]["codec"].get("quantized") is None  # the codec stays fp32


def test_build_sh_int4_writes_what_quantize_build_wrote(int_builds, tiny_custom_voice):
    """build(precision=int4) into the folder quantize_build filled reuses every graph: the two
    paths agree on what an int4 build is, file for file."""
    out = int_builds["int4"]
    before = json.loads((out / "manifest.json").read_text())
    lines = []
    limits = EngineLimits(**{**LIMITS.to_dict(), "precision": "int4"})
    manifest = build_mod.build(str(tiny_custom_voice), out.parent.parent, limits, log=lines.append)
    assert sum("unchanged, reused" in line for line in lines) == 4, lines
    for graph, entry in manifest["engines"].items():
        assert entry["files"] == before["engines"][graph]["files"]
        assert "ONNX Runtime only" in entry["not_built_reason"] or "TensorRT" in entry["not_built_reason"]


@pytest.mark.parametrize("precision", ["int8", "int4"])
def test_onnx_runtime_speaks_a_weight_only_build(int_builds, tiny_build, tiny_custom_voice, precision):
    synth = Synthesizer.open(tiny_custom_voice, int_builds[precision], backend="onnx")
    assert synth.backend.limits.precision == precision
    pcm = np.concatenate([c.samples for c in synth.stream(TEXT, Voice(speaker="ryan", language="english"))])
    assert pcm.size > 0 and np.isfinite(pcm).all() and np.abs(pcm).max() <= 1.0
    # Teacher-forced against fp32: the talker's logits are close (the tiny predictor is 32 wide,
    # too narrow to say much about agreement: the gate measures that at real shapes).
    ref = open_backend("onnx", tiny_custom_voice, tiny_build[0])
    prompt = synth.prompts.build(TEXT, Voice(speaker="ryan", language="english"))
    figures = teacher_forced(ref, [synth.backend], prompt, frames=20)[0].summary()
    assert figures["frames"] == 20
    assert 0 < figures["logits_rel_err_mean"] < (0.05 if precision == "int8" else 0.3), figures


def test_one_fp32_pass_measures_several_builds_as_separate_passes_do(int_builds, tiny_build, tiny_custom_voice):
    # The gate runs fp32 once for int8 and int4 together; each build's figures must be what a pass
    # of its own gives (no state or history shared between the builds measured).
    ref = open_backend("onnx", tiny_custom_voice, tiny_build[0])
    tests = [open_backend("onnx", tiny_custom_voice, int_builds[p]) for p in ("int8", "int4")]
    prompt = Synthesizer(ref, tiny_custom_voice).prompts.build(TEXT, Voice(speaker="ryan", language="english"))
    together = [a.summary() for a in teacher_forced(ref, tests, prompt, frames=12)]
    alone = [teacher_forced(ref, [test], prompt, frames=12)[0].summary() for test in tests]
    assert together == alone
    assert together[0] != together[1]  # the two builds differ, so a mix-up would show


def test_weight_only_builds_are_refused_where_they_cannot_run(int_builds, tiny_custom_voice):
    out = int_builds["int4"]
    with pytest.raises(BackendUnavailableError, match="--backend onnx"):
        open_backend("torch", tiny_custom_voice, out)
    manifest = load_manifest(out)
    config = Synthesizer.open(tiny_custom_voice, out, backend="onnx").config
    with pytest.raises(EngineMismatchError, match="ONNX Runtime \\(CPU\\) only.*--precision bf16"):
        check_manifest(manifest, config, gpu={"name": "any"}, tensorrt="10.16", need_engines=True)
    limits = EngineLimits(**{**LIMITS.to_dict(), "precision": "int8"})
    with pytest.raises(build_mod.BuildError, match="TensorRT: --precision bf16, fp16 or fp32"):
        build_mod.build(str(tiny_custom_voice), out.parent.parent, limits, require_trt=True, log=lambda *_: None)
    with pytest.raises(build_mod.BuildError, match="quantize an fp32 build"):
        build_mod.quantize_build(out, out.parent / "again", "int8", log=lambda *_: None)


def test_build_sh_refuses_an_unknown_precision(capsys):
    with pytest.raises(SystemExit):
        build_mod.parse_args(["m", "--precision", "int3"])
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(ValueError, match="codec precision"):
        EngineLimits(codec_precision="int4")


@pytest.fixture(scope="module")
def int8_codec_build(tiny_build, tiny_custom_voice, tmp_path_factory):
    """The fp32 build with its codec's convolutions in int8 (build.sh --codec-precision int8)."""
    fp32_dir, _ = tiny_build
    out = tmp_path_factory.mktemp("int8-codec") / "cpu" / fp32_dir.name
    build_mod.quantize_build(fp32_dir, out, codec_precision="int8", model=tiny_custom_voice, log=lambda *_: None)
    return out


def test_the_int8_codec_build_prints_only_its_own_lines(tiny_build, tiny_custom_voice, tmp_path, capfd, caplog):
    # ONNX Runtime's quantizer logs advice on the root logger that does not apply here (build.sh,
    # with no logging set up, would print it as "WARNING:root:..."); build.sh's output is its own
    # progress lines, and the quantizer's real warnings still come through.
    fp32_dir, _ = tiny_build
    caplog.set_level("WARNING")
    build_mod.quantize_build(fp32_dir, tmp_path / "cpu" / fp32_dir.name, codec_precision="int8",
                             model=tiny_custom_voice, log=print)
    out, err = capfd.readouterr()
    assert "codec" in out and "pre-processing" not in out + err, (out, err)
    assert not [r.getMessage() for r in caplog.records if "pre-processing" in r.getMessage()]


def test_the_int8_codec_quantizes_every_conv_and_nothing_else(int8_codec_build, tiny_build):
    fp32_dir, fp32_manifest = tiny_build
    manifest = load_manifest(int8_codec_build)
    assert manifest["limits"]["codec_precision"] == "int8" and manifest["limits"]["precision"] == "fp32"
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(fp32_dir / "codec.onnx"), load_external_data=False).graph.node)
    assert manifest["engines"]["codec"]["quantized"]["convs"] == convs > 0
    for graph in ("talker_prefill", "talker_decode", "predictor"):
        assert manifest["engines"][graph]["files"] == fp32_manifest["engines"][graph]["files"]  # copied as they were
        assert manifest["engines"][graph]["quantized"] is None


def test_the_int8_codec_streams_exactly_and_stays_close_to_fp32(int8_codec_build, tiny_build, tiny_custom_voice):
    """Chunks of any size concatenate to one call's output, as the fp32 codec's do, and the PCM stays
    within the SNR the quality gate holds at real shapes."""
    import torch

    from qwen3_tts_trt.export.quality_gate import codec_snr_db

    int8 = open_backend("onnx", tiny_custom_voice, int8_codec_build)
    ref = open_backend("onnx", tiny_custom_voice, tiny_build[0])
    codes = torch.randint(0, ref.config.codec.codebook_size, (1, 16, 10), generator=torch.Generator().manual_seed(0))
    whole, _ = int8.codec_run(codes, int8.new_codec_state())
    state, parts = int8.new_codec_state(), []
    for start, stop in ((0, 1), (1, 3), (3, 7), (7, 10)):
        pcm, state = int8.codec_run(codes[..., start:stop], state)
        parts.append(pcm)
    assert (torch.cat(parts, -1) - whole).abs().max() <= 1e-5
    snr = codec_snr_db(ref, int8, list(codes[0].T))
    assert 15 < snr < 80, snr  # quantized (not exact), and close


def test_the_int8_codec_is_refused_where_it_cannot_run(int8_codec_build, tiny_custom_voice):
    with pytest.raises(BackendUnavailableError, match="int8 codec.*--backend onnx"):
        open_backend("torch", tiny_custom_voice, int8_codec_build)
    config = Synthesizer.open(tiny_custom_voice, int8_codec_build, backend="onnx").config
    with pytest.raises(EngineMismatchError, match="int8 codec.*--codec-precision fp32"):
        check_manifest(load_manifest(int8_codec_build), config, gpu={"name": "any"}, tensorrt="10.16", need_engines=True)
    limits = EngineLimits(**{**LIMITS.to_dict(), "codec_precision": "int8"})
    before = {p.name: p.stat().st_mtime_ns for p in int8_codec_build.iterdir()}
    with pytest.raises(build_mod.BuildError, match="--require-trt: the int8 codec runs on ONNX Runtime only"):
        build_mod.build(str(tiny_custom_voice), int8_codec_build.parent.parent, limits, require_trt=True,
                        log=lambda *_: None)
    assert {p.name: p.stat().st_mtime_ns for p in int8_codec_build.iterdir()} == before
