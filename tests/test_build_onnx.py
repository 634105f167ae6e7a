"""build.sh on the tiny checkpoint: every graph exported, checked, equal to PyTorch in ONNX Runtime,
driving the frame loop to the reference codes; the manifest; reuse; clear errors."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from qwen3_tts_trt.export import build as build_mod
from qwen3_tts_trt.export.op_support import check_model
from qwen3_tts_trt.export.trt_build import profile_shapes
from qwen3_tts_trt.runtime.backends import open_backend
from qwen3_tts_trt.runtime.checkpoint import load_networks
from qwen3_tts_trt.runtime.contract import ENGINES, EngineLimits, dim_ranges, engine_specs, specs_to_json
from qwen3_tts_trt.runtime.decode_loop import FrameLoop
from qwen3_tts_trt.runtime.errors import EngineMismatchError
from qwen3_tts_trt.runtime.manifest import check_manifest, load_manifest
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.voice import Voice
from support import LIMITS, TEXT


def test_build_writes_graphs_and_manifest(tiny_build, tiny_custom_voice):
    out, manifest = tiny_build
    assert load_manifest(out) == manifest
    for name in ENGINES:
        entry = manifest["engines"][name]
        assert (out / entry["onnx"]).is_file() and (out / f"{name}.onnx.data").is_file()
        assert entry["engine"] is None and "TensorRT" in entry["not_built_reason"]
        assert set(entry["files"]) == {f"{name}.onnx", f"{name}.onnx.data"}
    ref = Reference.load(tiny_custom_voice)
    assert manifest["model"]["config_hash"] == ref.config.config_hash
    assert manifest["contract"] == json.loads(specs_to_json(engine_specs(ref.config, LIMITS)))
    assert manifest["limits"]["max_context"] == 256 and manifest["opset"] == 18


def test_graph_io_follows_the_contract(tiny_build, tiny_custom_voice):
    out, manifest = tiny_build
    specs = engine_specs(load_networks(tiny_custom_voice).config, LIMITS)
    elem = {TensorProto.FLOAT: "float32", TensorProto.INT64: "int64"}
    for name in ENGINES:
        model = onnx.load(str(out / f"{name}.onnx"), load_external_data=False)
        onnx.checker.check_model(str(out / f"{name}.onnx"))
        got = [(i.name, elem[i.type.tensor_type.elem_type]) for i in model.graph.input]
        assert got == [(t.name, t.dtype) for t in specs[name].inputs]
        assert [o.name for o in model.graph.output] == specs[name].output_names
        for i, t in zip(model.graph.input, specs[name].inputs):
            static = [d for d in t.shape if isinstance(d, int)]
            dims = [d.dim_value for d in i.type.tensor_type.shape.dim if d.dim_value]
            assert set(static) <= set(dims) | {1}


def test_every_graph_passes_the_tensorrt_op_check(tiny_build):
    out, manifest = tiny_build
    for name in ENGINES:
        report = check_model(out / f"{name}.onnx")
        assert report.ok, report.problems
        assert manifest["engines"][name]["op_problems"] == []
    assert check_model(out / "predictor.onnx").op_counts.get("TopK") == 15  # sampling is inside the graph


def _tiny_model(op: str, inputs, outputs, nodes_extra=(), **attrs):
    node = helper.make_node(op, [i.name for i in inputs if i is not None], [o.name for o in outputs], **attrs)
    graph = helper.make_graph(list(nodes_extra) + [node], "g", [i for i in inputs if i is not None], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_op_check_rejects_what_tensorrt_cannot_parse(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])
    xi = helper.make_tensor_value_info("xi", TensorProto.INT64, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 1])
    cases = {
        "multinomial": (_tiny_model("Multinomial", [x], [y], sample_size=1), "not supported"),
        "int_clip": (_tiny_model("Clip", [xi], [helper.make_tensor_value_info("z", TensorProto.INT64, [1, 8])]),
                     "Clip on INT64"),
        "big_topk": (_tiny_model("TopK", [x, helper.make_tensor_value_info("k", TensorProto.INT64, [1])],
                                 [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 4000]), y]),
                     "TopK K is not a constant"),
    }
    for name, (model, expected) in cases.items():
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        report = check_model(path)
        assert not report.ok and any(expected in p for p in report.problems), (name, report.problems)
    k = helper.make_node("Constant", [], ["k"], value=helper.make_tensor("kv", TensorProto.INT64, [1], [4000]))
    model = _tiny_model("TopK", [x, None], [helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 4000]), y],
                        nodes_extra=[k])
    model.graph.node[-1].input.append("k")
    onnx.save(model, str(tmp_path / "k4000.onnx"))
    assert any("K=4000" in p for p in check_model(tmp_path / "k4000.onnx").problems)


def test_onnx_runtime_matches_pytorch_per_graph(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    nets = load_networks(tiny_custom_voice)
    from qwen3_tts_trt.export.onnx_graphs import engine_modules

    modules = engine_modules(nets, LIMITS)
    specs = engine_specs(nets.config, LIMITS)
    for name in ENGINES:
        assert build_mod.ort_parity(modules[name], specs[name], out / f"{name}.onnx") <= 1e-4, name


@pytest.mark.parametrize("voice", [Voice(speaker="ryan", language="english"),
                                   Voice(speaker="eric", language="auto", non_streaming_text=True)], ids=["en", "dialect_ns"])
def test_onnx_graphs_drive_the_loop_to_reference_codes(tiny_build, tiny_custom_voice, voice):
    out, _ = tiny_build
    ref = Reference.load(tiny_custom_voice, max_context=LIMITS.max_context)
    prompt = ref.prompt(TEXT, voice)
    params = SamplingParams.greedy(max_new_tokens=48)
    oracle = ref.generator.generate(prompt, params).codes
    assert oracle.shape[0] >= 40
    onnx_codes = FrameLoop(open_backend("onnx", tiny_custom_voice, out)).generate(prompt, params)
    torch_codes = FrameLoop(open_backend("torch", tiny_custom_voice, out)).generate(prompt, params)
    assert torch.equal(onnx_codes, oracle) and torch.equal(torch_codes, oracle)


def test_sampling_in_the_graph_is_reproducible_and_backend_independent(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    ref = Reference.load(tiny_custom_voice, max_context=LIMITS.max_context)
    prompt = ref.prompt(TEXT, Voice(speaker="vivian"))
    params = SamplingParams.from_defaults(ref.config.sampling, max_new_tokens=30, seed=7)
    onnx_loop = FrameLoop(open_backend("onnx", tiny_custom_voice, out))
    a, b = onnx_loop.generate(prompt, params), onnx_loop.generate(prompt, params)
    c = FrameLoop(open_backend("torch", tiny_custom_voice, out)).generate(prompt, params)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, onnx_loop.generate(prompt, SamplingParams.from_defaults(
        ref.config.sampling, max_new_tokens=30, seed=8)))


def test_onnx_codec_stream_equals_whole_decode(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    backend = open_backend("onnx", tiny_custom_voice, out)
    codes = torch.randint(0, 2048, (1, 16, 63), generator=torch.Generator().manual_seed(5))
    whole = load_networks(tiny_custom_voice).codec.decode(codes)
    pieces, i, state = [], 0, backend.new_codec_state()
    for n in [1, 2, 4, 8] + [10] * 5:
        pcm, state = backend.codec_run(codes[..., i:i + n], state)
        pieces.append(pcm)
        i += n
    streamed = torch.cat(pieces, dim=-1)
    assert streamed.shape == whole.shape
    assert (streamed - whole).abs().max() <= 1e-4


def test_rebuild_reuses_unchanged_graphs(tiny_build, tiny_custom_voice):
    out, first = tiny_build
    lines = []
    second = build_mod.build(str(tiny_custom_voice), out.parent.parent, LIMITS, log=lines.append)
    assert sum("unchanged, reused" in line for line in lines) == len(ENGINES)
    assert {n: e["files"] for n, e in second["engines"].items()} == {n: e["files"] for n, e in first["engines"].items()}


def test_trt_profiles_cover_the_contract(tiny_custom_voice):
    specs = engine_specs(load_networks(tiny_custom_voice).config, LIMITS)
    decode = profile_shapes(specs["talker_decode"], dim_ranges(LIMITS, "talker_decode"))
    # a step over several streams reads whole KV rows: up to the context; rows 1..max_batch
    assert decode["past_key_0"][0][:2] == (1, 1) and decode["past_key_0"][2][:2] == (16, LIMITS.max_context)
    assert decode["positions"] == ((1,), (4,), (16,)) and decode["inputs_embeds"][2][0] == 16
    predictor = profile_shapes(specs["predictor"], dim_ranges(LIMITS, "predictor"))
    assert predictor["noise"][2][0] == 16 and predictor["code0"] == ((1,), (4,), (16,))
    prefill = profile_shapes(specs["talker_prefill"], dim_ranges(LIMITS, "talker_prefill"))
    assert prefill["inputs_embeds"][2][:2] == (1, LIMITS.max_prompt)  # one stream per prefill
    one = profile_shapes(specs["talker_decode"], dim_ranges(EngineLimits(max_context=256, max_prompt=128), "talker_decode"))
    assert one["past_key_0"][2][:2] == (1, 255) and "positions" not in one  # batch 1: static rows, the prefix only
    codec = profile_shapes(specs["codec"], dim_ranges(LIMITS, "codec"))  # chunks of several streams in one call
    assert codec["codes"] == ((1, 16, 1), (4, 16, 4), (16, 16, LIMITS.max_chunk))
    for shapes in (decode, prefill, codec):
        for lo, opt, hi in shapes.values():
            assert all(a <= b <= c for a, b, c in zip(lo, opt, hi))


# -- clear errors ------------------------------------------------------------------------------

def test_unknown_model_dir(capsys, tmp_path):
    assert build_mod.main([str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_unsupported_model_type(tiny_custom_voice, tmp_path, capsys):
    ckpt = tmp_path / "weird"
    shutil.copytree(tiny_custom_voice, ckpt)
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["model_type"] = "qwen2_audio"
    (ckpt / "config.json").write_text(json.dumps(cfg))
    assert build_mod.main([str(ckpt), "--out", str(tmp_path / "b")]) == 2
    assert "model_type='qwen2_audio'" in capsys.readouterr().err


def test_require_trt_fails_without_tensorrt_and_leaves_the_build_as_it_was(tiny_build, tiny_custom_voice, capsys):
    out, _ = tiny_build
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # other limits than the build's (max_batch 1): a build that went ahead would export again
    rc = build_mod.main([str(tiny_custom_voice), "--out", str(out.parent.parent), "--max-context", "256",
                         "--max-prompt", "128", "--require-trt"])
    assert rc == 2 and "engines were not built" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before  # nothing exported, nothing replaced


def test_not_enough_disk(tiny_custom_voice, tmp_path, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(build_mod.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(build_mod.BuildError, match="not enough disk"):
        build_mod.build(str(tiny_custom_voice), tmp_path, LIMITS, log=lambda *_: None)


def test_build_refuses_another_models_folder(tiny_build, tiny_custom_voice, tmp_path):
    out, _ = tiny_build
    other = tmp_path / tiny_custom_voice.name  # same folder name, other model
    shutil.copytree(tiny_custom_voice, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["talker_config"]["rms_norm_eps"] = 1e-5
    (other / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(EngineMismatchError, match="another model"):
        build_mod.build(str(other), out.parent.parent, LIMITS, log=lambda *_: None)
    with pytest.raises(EngineMismatchError, match="not for this checkpoint"):
        open_backend("onnx", other, out)


def test_build_refuses_another_gpus_folder(tiny_build, tiny_custom_voice, tmp_path):
    out, manifest = tiny_build
    copy = tmp_path / "cpu" / out.name
    shutil.copytree(out, copy)
    edited = dict(manifest, gpu=dict(name="NVIDIA H100 80GB HBM3", slug="nvidia-h100-80gb-hbm3"))
    (copy / "manifest.json").write_text(json.dumps(edited))
    with pytest.raises(EngineMismatchError, match="built on NVIDIA H100"):
        build_mod.build(str(tiny_custom_voice), tmp_path, LIMITS, log=lambda *_: None)


def test_runtime_refuses_engines_for_another_gpu_or_tensorrt(tiny_build, tiny_custom_voice):
    out, manifest = tiny_build
    cfg = load_networks(tiny_custom_voice).config
    built = copy.deepcopy(manifest)
    built.update(gpu=dict(name="NVIDIA H100 80GB HBM3"), versions=dict(manifest["versions"], tensorrt="10.16.1.11"))
    for name in ENGINES:
        built["engines"][name] = dict(built["engines"][name], engine=f"{name}.engine")
    with pytest.raises(EngineMismatchError, match="this GPU is 'NVIDIA L40S'"):
        check_manifest(built, cfg, gpu=dict(name="NVIDIA L40S"), tensorrt="10.16.1.11", need_engines=True)
    with pytest.raises(EngineMismatchError, match="built with TensorRT 10.16.1.11, this process has 11.4.0.106"):
        check_manifest(built, cfg, gpu=dict(name="NVIDIA H100 80GB HBM3"), tensorrt="11.4.0.106", need_engines=True)
    with pytest.raises(EngineMismatchError, match="no NVIDIA GPU|none is visible"):
        check_manifest(built, cfg, gpu=None, tensorrt="10.16.1.11", need_engines=True)
    assert check_manifest(built, cfg, gpu=dict(name="NVIDIA H100 80GB HBM3"), tensorrt="10.16.1.11",
                          need_engines=True) == LIMITS
    with pytest.raises(EngineMismatchError, match="no TensorRT engine"):
        check_manifest(manifest, cfg, gpu=dict(name=None), tensorrt=None, need_engines=True)


@pytest.mark.slow  # a second export of all four graphs (~2 min): CI's slow step
def test_fp16_graphs_export_and_check(tiny_custom_voice, tmp_path):
    limits = EngineLimits(max_context=128, max_prompt=64, precision="fp16")
    manifest = build_mod.build(str(tiny_custom_voice), tmp_path, limits, log=lambda *_: None)
    out = tmp_path / "cpu" / tiny_custom_voice.name
    for name in ENGINES:
        assert check_model(out / f"{name}.onnx").ok
        # fp16 graph vs the fp16 torch module; one fp16 ulp at |x| ~ 16 is 1.6e-2
        assert manifest["engines"][name]["parity_max_abs"] <= 5e-2, name
    model = onnx.load(str(out / "talker_decode.onnx"), load_external_data=False)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT16
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT  # logits stay fp32
    backend = open_backend("onnx", tiny_custom_voice, out)
    logits, hidden = backend.prefill(torch.randn(1, 5, 64))
    assert logits.dtype == torch.float32 and np.isfinite(logits.numpy()).all()
