"""Issue 14: bad input, wrong builds and API surprises end in one clear error (or correct behaviour),
never a traceback, never silently wrong audio, never a user's file lost. CLI cases run the real CLI
in a subprocess and check its exit status, its one stderr line and the files it leaves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from qwen3_tts_trt.export import build as build_mod
from qwen3_tts_trt.runtime.backends import open_backend
from qwen3_tts_trt.runtime.checkpoint import resolve_checkpoint
from qwen3_tts_trt.runtime.config import load_model_config
from qwen3_tts_trt.runtime.errors import BackendUnavailableError, CheckpointError, EngineMismatchError, PromptError
from qwen3_tts_trt.runtime.reference import Reference
from qwen3_tts_trt.runtime.sampling import SamplingParams
from qwen3_tts_trt.runtime.stream import Synthesizer
from qwen3_tts_trt.runtime.voice import Voice
from support import LIMITS, TEXT, cli, edited_checkpoint, one_error_line

ROOT = Path(__file__).resolve().parent.parent
VOICE = Voice(speaker="ryan", language="english")


# -- helpers ------------------------------------------------------------------------------------
def no_leftovers(folder: Path) -> None:
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")], list(folder.iterdir())


@pytest.fixture()
def build_copy(tiny_build, tmp_path):
    """A private copy of the tiny build, free to damage."""
    out, _ = tiny_build
    dst = tmp_path / "build"
    shutil.copytree(out, dst)
    return dst


@pytest.fixture(scope="module")
def other_weights(tiny_custom_voice, tmp_path_factory):
    """Another checkpoint with the same config and folder name but other weights."""
    def edit(state):
        state["talker.codec_head.weight"].mul_(-1.0)

    return edited_checkpoint(tiny_custom_voice, tmp_path_factory.mktemp("other") / tiny_custom_voice.name, edit)


@pytest.fixture(scope="module")
def synth(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    return Synthesizer.open(tiny_custom_voice, out, "onnx")


# -- 1. silently wrong audio ----------------------------------------------------------------------
def test_build_of_other_weights_is_refused_at_load(tiny_build, other_weights):
    out, manifest = tiny_build
    assert load_model_config(other_weights).config_hash == manifest["model"]["config_hash"]  # same config
    for kind in ("onnx", "torch", "auto"):
        with pytest.raises(EngineMismatchError, match="built from other weights"):
            open_backend(kind, other_weights, out)


def test_build_refuses_to_overwrite_another_checkpoints_build(tiny_build, other_weights):
    out, _ = tiny_build
    before = (out / "manifest.json").read_bytes()  # as the build left it (other tests may have re-run it)
    with pytest.raises(EngineMismatchError, match="same config but other weights"):
        build_mod.build(str(other_weights), out.parent.parent, LIMITS, log=lambda *_: None)
    assert (out / "manifest.json").read_bytes() == before  # untouched


def test_identity_survives_a_copy(tiny_build, tiny_custom_voice, tmp_path):
    out, _ = tiny_build
    copy = tmp_path / "copied"
    subprocess.run(["cp", "-r", str(tiny_custom_voice), str(copy)], check=True)  # new file times
    assert open_backend("onnx", copy, out).name == "onnx"


def test_cli_default_build_folder_of_a_same_named_checkpoint(tiny_build, other_weights, tmp_path):
    """Two checkpoints in folders of the same name map to the same default build folder: the
    second is refused there (one line), and nothing is written."""
    out, _ = tiny_build
    (tmp_path / "builds" / "cpu").mkdir(parents=True)
    (tmp_path / "builds" / "cpu" / other_weights.name).symlink_to(out)
    proc = cli("say", "Hello.", "-m", other_weights, "--speaker", "ryan", "-o", tmp_path / "a.wav", cwd=tmp_path)
    one_error_line(proc, "error:", "other weights")
    assert not (tmp_path / "a.wav").exists()
    no_leftovers(tmp_path)


def test_auto_does_not_fall_back_silently(build_copy, tiny_custom_voice):
    data = build_copy / "predictor.onnx.data"
    data.write_bytes(data.read_bytes()[:1000])
    with pytest.raises(EngineMismatchError, match="truncated.*--fallback"):
        open_backend("auto", tiny_custom_voice, build_copy)
    synth = Synthesizer.open(tiny_custom_voice, build_copy, "auto", fallback=True)
    assert synth.backend_name == "torch" and "truncated" in synth.backend.fallback
    synth.synthesize(TEXT, VOICE, SamplingParams.greedy(max_new_tokens=3))
    assert "truncated" in synth.last_metrics.fallback and synth.last_metrics.to_dict()["fallback"]


def test_cli_fallback_only_when_asked_and_said_on_stderr(build_copy, tiny_custom_voice, tmp_path):
    (build_copy / "codec.onnx.data").unlink()
    wav = tmp_path / "x.wav"
    args = ["say", "Hi.", "-m", tiny_custom_voice, "--build-dir", build_copy, "--speaker", "ryan", "--no-warmup",
            "--max-new-tokens", "4", "-o", wav]
    one_error_line(cli(*args), "codec.onnx.data is missing", "--fallback")
    assert not wav.exists()
    proc = cli(*args, "--fallback")
    assert proc.returncode == 0, proc.stderr.decode()
    err = [line for line in proc.stderr.decode().splitlines() if line.strip()]
    assert len(err) == 1 and "fell back to the torch backend" in err[0] and "codec.onnx.data" in err[0]
    assert sf.info(str(wav)).frames == 3 * 1920


# -- 2. damaged builds, checkpoints, text -----------------------------------------------------------
def _drop_weights_key(d: Path):
    m = json.loads((d / "manifest.json").read_text())
    del m["model"]["weights"]
    (d / "manifest.json").write_text(json.dumps(m))


def _same_size_garbage(d: Path):
    p = d / "talker_decode.onnx"
    p.write_bytes(b"\x07" * p.stat().st_size)


DAMAGE = {
    "missing_data": (lambda d: (d / "talker_prefill.onnx.data").unlink(), "talker_prefill.onnx.data is missing"),
    "truncated_graph": (lambda d: (d / "predictor.onnx").write_bytes((d / "predictor.onnx").read_bytes()[:500]),
                        "truncated or replaced"),
    "manifest_missing_key": (_drop_weights_key, "lacks model.weights"),
    "garbage_graph": (_same_size_garbage, "ONNX Runtime cannot load"),
    "manifest_not_json": (lambda d: (d / "manifest.json").write_text("{"), "not valid JSON"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_build_is_a_clear_error(build_copy, tiny_custom_voice, damage):
    do, expected = DAMAGE[damage]
    do(build_copy)
    with pytest.raises(EngineMismatchError, match=expected):
        open_backend("onnx", tiny_custom_voice, build_copy)


def test_config_that_is_not_utf8(tiny_custom_voice, tmp_path):
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_custom_voice, ckpt)
    (ckpt / "config.json").write_bytes(b'{"model_type": "qwen3_tts\xff\xfe"}')
    with pytest.raises(CheckpointError, match="not valid JSON|not UTF-8"):
        load_model_config(ckpt)


@pytest.mark.parametrize("text, expected", [
    ("Hello \ud800 there.", "lone surrogate"),
    (b"Hello there.", "must be a str, not bytes"),
    (42, "must be a str, not int"),
    ("Say <|im_start|> now.", "control token"),
    ("Hello<tts_pad>there", "control token"),
])
def test_bad_text_is_refused_before_streaming(synth, text, expected):
    with pytest.raises(PromptError, match=expected):
        synth.stream(text, VOICE)
    with pytest.raises(PromptError, match=expected):
        synth.prepare(text, VOICE)


def test_control_tokens_in_instruct_are_refused(tiny_voice_design):
    ref = Reference.load(tiny_voice_design, max_context=256)
    with pytest.raises(PromptError, match="instruct holds the model's control token"):
        ref.prompt("Hello.", Voice(instruct="Warm voice.<|im_end|>"))


# -- 3. validation before any work ----------------------------------------------------------------
@pytest.mark.parametrize("params, expected", [
    (SamplingParams.greedy(max_new_tokens=1), "max_new_tokens must be an integer >= 2"),
    (SamplingParams(subtalker_top_k=51), r"subtalker_top_k must be in 1..50"),
    (SamplingParams(seed=-1), "seed must be None or an integer"),
    (SamplingParams(temperature=0.0), r"temperature must be in 1e-06..1e\+06 when sampling"),
    (SamplingParams(temperature=float("inf")), "temperature must be in"),
    (SamplingParams(repetition_penalty=1e300), "repetition_penalty must be in"),
    (SamplingParams(subtalker_temperature=float("nan")), "subtalker_temperature must be in"),
    (SamplingParams(top_p=0.0), "top_p must be in"),
])
def test_sampling_errors_surface_when_stream_is_called(synth, params, expected):
    with pytest.raises(PromptError, match=expected):
        synth.stream(TEXT, VOICE, params)  # not iterated: the call itself validates


def test_unknown_backend_is_the_projects_error(tiny_custom_voice):
    with pytest.raises(BackendUnavailableError, match="unknown backend 'cuda'.*auto, tensorrt, onnx, torch"):
        open_backend("cuda", tiny_custom_voice)


# -- 4. pathological text ---------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["x" * 5000, "a " * 2500, "日本語" * 1500], ids=["one_word", "tiny_words", "cjk"])
def test_long_unbroken_text_splits_in_linear_work(synth, text, monkeypatch):
    tokenized = []
    inner = synth.prompts.tok.encode

    def counting(piece):  # counts, and runs the real tokenizer
        tokenized.append(len(piece))
        return inner(piece)

    monkeypatch.setattr(synth.prompts.tok, "encode", counting)
    pieces = synth.planner.plan(text, VOICE, SamplingParams.greedy(max_new_tokens=20))
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    # each piece costs a few tokenizations of at most twice its length (doubling + bisection): linear work
    assert len(tokenized) <= 24 * len(pieces) + 4 and sum(tokenized) <= 40 * len(text), (len(tokenized), len(pieces))
    monkeypatch.undo()
    for p in synth.prepare(text, VOICE, SamplingParams.greedy(max_new_tokens=20)):
        assert p.length <= LIMITS.max_prompt and p.text_positions < LIMITS.max_context


def test_too_long_a_request_is_refused(synth):
    with pytest.raises(PromptError, match="at most 100,000"):
        synth.stream("word " * 20001, VOICE)


# -- 6. API surprises -------------------------------------------------------------------------------
@pytest.mark.official
def test_greedy_starts_from_the_checkpoints_generation_config(tiny_custom_voice, tmp_path):
    """The official do_sample=False keeps generation_config.json's repetition penalty; so does
    greedy_params(), and its codes equal the official greedy codes for a checkpoint whose
    penalty is not the class default."""
    from official import load_official
    from support import OfficialRun

    ckpt = tmp_path / tiny_custom_voice.name
    shutil.copytree(tiny_custom_voice, ckpt)
    gen = json.loads((ckpt / "generation_config.json").read_text())
    gen["repetition_penalty"] = 1.6
    (ckpt / "generation_config.json").write_text(json.dumps(gen))
    synth = Synthesizer.open(ckpt, None, "torch")
    params = synth.greedy_params(max_new_tokens=40)
    assert params.repetition_penalty == 1.6 and not params.do_sample and not params.subtalker_do_sample
    codes = torch.cat([c.codes for c in synth.stream(TEXT, VOICE, params)])
    official = OfficialRun(ckpt)
    merged = load_official(str(ckpt))._merge_generate_kwargs(do_sample=False, subtalker_dosample=False)
    merged.pop("max_new_tokens")
    expected, _ = official.generate(TEXT, language="english", speaker="ryan", max_new_tokens=40, sampling=merged)
    assert torch.equal(codes, expected)
    class_default = torch.cat([c.codes for c in synth.stream(TEXT, VOICE, SamplingParams.greedy(max_new_tokens=40))])
    assert not torch.equal(class_default, expected)  # the old behaviour would have differed


def test_chunks_carry_their_codes(synth, tiny_custom_voice):
    ref = Reference.load(tiny_custom_voice, max_context=LIMITS.max_context)
    params = SamplingParams.greedy(max_new_tokens=30)
    chunks = list(synth.stream(TEXT, VOICE, params))
    codes = torch.cat([c.codes for c in chunks])
    assert torch.equal(codes, ref.generate(TEXT, VOICE, params).codes)
    assert all(c.codes.shape == (c.frames, 16) for c in chunks)
    pcm = np.concatenate([c.samples for c in chunks])
    assert np.abs(ref.decode(codes).numpy() - pcm).max() <= 1e-4  # re-vocoding the codes gives the audio


def test_reference_decode_with_icl_context(tiny_base):
    ref = Reference.load(tiny_base, max_context=256)
    g = torch.Generator().manual_seed(3)
    ref_codes, codes = torch.randint(0, 2048, (15, 16), generator=g), torch.randint(0, 2048, (7, 16), generator=g)
    with_context = ref.decode(codes, ref_codes)
    whole = ref.decode(torch.cat([ref_codes, codes]))
    assert len(with_context) == 13441  # the official cut: int(15 / 22 * 42240) keeps one reference sample
    assert torch.equal(with_context, whole[-13441:])
    assert (ref.decode(codes) - with_context[1:]).abs().max() > 1e-3  # the context changes the audio


def test_parity_limits_are_enforced_and_recorded(tiny_build, tiny_custom_voice, tmp_path, monkeypatch):
    _, manifest = tiny_build
    for name, entry in manifest["engines"].items():
        assert entry["parity_limit"] == build_mod.PARITY_LIMITS["fp32"][name]
        assert entry["parity_max_abs"] <= entry["parity_limit"]
    monkeypatch.setitem(build_mod.PARITY_LIMITS, "fp32", dict.fromkeys(build_mod.PARITY_LIMITS["fp32"], 0.0))
    with pytest.raises(build_mod.BuildError, match="talker_prefill: ONNX Runtime differs from PyTorch by"):
        build_mod.build(str(tiny_custom_voice), tmp_path, LIMITS, log=lambda *_: None)
    assert not (tmp_path / "cpu" / tiny_custom_voice.name / "manifest.json").exists()


def test_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "checkpoints" / "tiny-custom-voice").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match="not found: checkpoints/tiny-custom-voce.*tiny-custom-voice"):
        resolve_checkpoint("checkpoints/tiny-custom-voce")


def test_build_sh_takes_paths_relative_to_the_caller(tiny_custom_voice, tmp_path):
    """build.sh run from elsewhere finds a relative checkpoint there (here it then stops at a
    foreign build in its --out folder, which proves where it looked without a full export)."""
    shutil.copytree(tiny_custom_voice, tmp_path / "ck")
    foreign = tmp_path / "out" / "cpu" / "ck"
    foreign.mkdir(parents=True)
    (foreign / "manifest.json").write_text(json.dumps(dict(model=dict(name="x", config_hash="0"))))
    proc = subprocess.run(["bash", str(ROOT / "build.sh"), "ck", "--out", "out"], cwd=tmp_path,
                          capture_output=True, timeout=300)
    one_error_line(proc, "holds a build of another model")
    assert "[1/6] checkpoint: ck" in proc.stdout.decode()


# -- 2, 5, 7. the CLI -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def say_args(tiny_build, tiny_custom_voice):
    out, _ = tiny_build
    return ["-m", tiny_custom_voice, "--build-dir", out, "--speaker", "ryan", "--no-warmup"]


@pytest.mark.parametrize("output, expected", [
    ("{tmp}", "is a directory"),
    ("{tmp}/afile/x.wav", "which is a file, not a directory"),
    ("/proc/qwen3-tts-test.wav", "cannot write"),
    ("{tmp}/noext", "has no extension"),
    ("{tmp}/x.xyz", "extension '.xyz'"),
])
def test_cli_output_problems_are_found_before_loading(tmp_path, output, expected):
    (tmp_path / "afile").write_text("keep me")
    # the model does not even exist: the output is checked first, so its error is the one reported
    proc = cli("say", "Hello.", "-m", tmp_path / "no-model", "-o", output.format(tmp=tmp_path))
    one_error_line(proc, "error:", expected)
    assert (tmp_path / "afile").read_text() == "keep me"
    no_leftovers(tmp_path)


@pytest.mark.slow  # ~30-45 s: CI's slow step keeps the default run under 20 minutes
def test_cli_failed_run_keeps_the_users_file(say_args, tmp_path):
    wav = tmp_path / "keep.wav"
    sf.write(wav, np.full(4800, 0.25, np.float32), 24000)
    before = wav.read_bytes()
    for text, expected in (("   ", "text is empty"), ("Hi <|im_end|>", "control token")):
        one_error_line(cli("say", text, *say_args, "-o", wav), expected)
        assert wav.read_bytes() == before
    one_error_line(cli("say", "Hi.", *say_args, "--speaker", "nobody", "-o", wav), "unknown speaker")
    assert wav.read_bytes() == before
    no_leftovers(tmp_path)


@pytest.mark.parametrize("args, expected", [
    (["say", "Hi.", "--max-new-tokens", "1"], "argument --max-new-tokens: must be at least 2"),
    (["say", "Hi.", "--chunk-ramp", "1", "0"], "argument --chunk-ramp: must be at least 1"),
    (["say", "Hi.", "--seed", "-1"], "argument --seed: must be at least 0"),
    (["say", "Hi.", "--seed", "x"], "'x' is not an integer"),
    (["bench", "--runs", "0"], "argument --runs: must be at least 1"),
    (["say", "Hi.", "--backend", "cuda"], "argument --backend: invalid choice"),
])
def test_cli_option_errors_are_one_line(tmp_path, args, expected):
    proc = cli(*args, "-m", tmp_path, "-o", tmp_path / "x.wav") if args[0] == "say" else cli(*args, "-m", tmp_path)
    one_error_line(proc, expected, "--help")
    assert not (tmp_path / "x.wav").exists()


def _wait_for_audio(folder: Path, proc: subprocess.Popen, min_bytes: int = 60_000) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        parts = [p for p in folder.iterdir() if p.name.endswith(".part")]
        if parts and parts[0].stat().st_size >= min_bytes:
            return
        time.sleep(0.02)
    pytest.fail(f"no audio appeared (exit {proc.poll()}): {proc.stderr.read().decode() if proc.stderr else ''}")


@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl_c", "sigterm"])
def test_cli_interrupt_leaves_a_valid_wav(say_args, tmp_path, sig, status):
    wav = tmp_path / "long.wav"
    text = "This is a long sentence that keeps the model busy for a while. " * 60
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # The child gets Ctrl-C's default disposition, as from a terminal: an ignored SIGINT in this
    # process (left by anything it ran before) would be inherited and make the child deaf to it.
    proc = subprocess.Popen([sys.executable, "-m", "qwen3_tts_trt.commands", "say", text, *map(str, say_args), "-o", str(wav)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_audio(tmp_path, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "interrupted: wrote",
                          status=status)
    data, sr = sf.read(wav, dtype="int16")
    assert sr == 24000 and len(data) >= 20_000 and len(data) % 1920 == 0, line
    no_leftovers(tmp_path)


@pytest.mark.slow  # ~30-45 s: CI's slow step keeps the default run under 20 minutes
def test_cli_text_from_stdin_and_file_list_voices_version_and_quiet_runs(say_args, tiny_custom_voice, tmp_path):
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    common = [*say_args, "--greedy", "--max-new-tokens", "12"]
    proc = cli("say", "-", *common, "-o", a, "-q", stdin="Hello from standard input.".encode())
    assert proc.returncode == 0 and proc.stdout == b"" and proc.stderr == b"", proc.stderr.decode()  # quiet
    (tmp_path / "t.txt").write_text("Hello from standard input.", encoding="utf-8")
    proc = cli("say", "--text-file", tmp_path / "t.txt", *common, "-o", b)
    assert proc.returncode == 0 and proc.stderr == b"", proc.stderr.decode()  # no library warnings either
    assert b"wrote" in proc.stdout and np.array_equal(sf.read(a)[0], sf.read(b)[0])
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    one_error_line(cli("say", "-f", tmp_path / "latin1.txt", *common, "-o", tmp_path / "c.wav"), "is not UTF-8")
    one_error_line(cli("say", "Hi", "-f", tmp_path / "t.txt", *common, "-o", tmp_path / "c.wav"), "not both")

    proc = cli("say", "--list-voices", "-m", tiny_custom_voice)
    listing = proc.stdout.decode()
    assert proc.returncode == 0 and "ryan" in listing and "eric (sichuan_dialect)" in listing and "english" in listing
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.decode().strip() == "qwen3-tts-trt 0.1.0"


def test_cli_every_option_has_help_with_its_default():
    from qwen3_tts_trt.commands.main import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name in ("say", "bench"):
        sub = subs[name]
        text = sub.format_help()
        for action in sub._actions:
            assert action.help, (name, action.dest)
        for dest, default in (("max-new-tokens", "2048"), ("backend", "auto"), ("chunk-ramp", "[1, 2, 4, 8, 10]")):
            assert f"(default: {default})" in " ".join(text.split()), (name, dest)


@pytest.mark.slow  # two CLI runs (~26 s): CI's slow step keeps the default run under 20 minutes
def test_cli_writes_mp3_and_flac(say_args, tmp_path):
    for ext in ("mp3", "flac"):
        out = tmp_path / f"x.{ext}"
        proc = cli("say", "Hello there.", *say_args, "--greedy", "--max-new-tokens", "12", "-o", out, "-q")
        assert proc.returncode == 0, proc.stderr.decode()
        data, sr = sf.read(out)
        assert sr == 24000 and abs(len(data) - 11 * 1920) < 3000  # mp3 pads its frames


# -- 8. checkpoints in the official layout whatever transformers is installed -----------------------
MIMI_KEYS = {"sampling_rate", "frame_rate", "audio_channels", "hidden_size", "num_filters", "num_residual_layers",
             "upsampling_ratios", "kernel_size", "last_kernel_size", "residual_kernel_size", "dilation_growth_rate",
             "use_causal_conv", "pad_mode", "compress", "trim_right_ratio", "codebook_size", "codebook_dim",
             "num_quantizers", "use_conv_shortcut", "vector_quantization_hidden_dimension", "upsample_groups",
             "num_hidden_layers", "intermediate_size", "num_attention_heads", "num_key_value_heads", "hidden_act",
             "max_position_embeddings", "norm_eps", "rope_theta", "sliding_window", "head_dim",
             "layer_scale_initial_scale", "num_semantic_quantizers"}
OFFICIAL_ENCODER_PREFIXES = ("encoder.encoder.layers.", "encoder.encoder_transformer.", "encoder.downsample.",
                             "encoder.quantizer.")


def test_written_checkpoint_has_the_official_codec_layout_and_config(tmp_path):
    from safetensors import safe_open

    from qwen3_tts_trt.export.make_checkpoint import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "ck", preset="tiny", variant="base", seed=5)
    cfg = json.loads((ckpt / "speech_tokenizer" / "config.json").read_text())
    enc = cfg["encoder_config"]
    assert MIMI_KEYS <= set(enc), MIMI_KEYS - set(enc)
    assert enc["model_type"] == "mimi" and enc["vector_quantization_hidden_dimension"] == enc["codebook_dim"]
    with safe_open(str(ckpt / "speech_tokenizer" / "model.safetensors"), "pt") as f:
        names = [k for k in f.keys() if k.startswith("encoder.")]
    assert names and all(k.startswith(OFFICIAL_ENCODER_PREFIXES) for k in names), \
        [k for k in names if not k.startswith(OFFICIAL_ENCODER_PREFIXES)][:5]
    assert not any("encoder_seanet" in k for k in names)
    for prefix in OFFICIAL_ENCODER_PREFIXES:
        assert any(k.startswith(prefix) for k in names), prefix


# -- fuzz: random Unicode through prepare and stream ------------------------------------------------
def _fuzz_texts(n: int, seed: int = 1234):
    import random

    rng = random.Random(seed)
    ranges = {
        "control": [(0x00, 0x1F), (0x7F, 0x9F)], "surrogate": [(0xD800, 0xDFFF)], "combining": [(0x0300, 0x036F)],
        "rtl": [(0x05D0, 0x05EA), (0x0627, 0x064A), (0x202A, 0x202E), (0x200F, 0x200F)],
        "emoji": [(0x1F600, 0x1F64F), (0x1F3FB, 0x1F3FF), (0x200D, 0x200D), (0xFE0F, 0xFE0F)],
        "cjk": [(0x4E00, 0x9FFF), (0x3000, 0x303F)], "space": [(0x2000, 0x200B), (0x2028, 0x2029), (0x00A0, 0x00A0)],
        "ascii": [(0x20, 0x7E)], "special": [(0xFFFE, 0xFFFF), (0xFEFF, 0xFEFF), (0xE000, 0xE0FF), (0x10FFFD, 0x10FFFD)],
    }
    def char(kind):
        lo, hi = rng.choice(ranges[kind])
        return chr(rng.randint(lo, hi))

    for i in range(n):
        length = rng.choice([1, 2, 5, 20, 80, 400, 1500])
        kinds = rng.sample(sorted(ranges), rng.randint(1, 3))
        if i % 7 == 3:  # one very long run of a single character
            text = char(rng.choice(kinds)) * length
        else:
            text = "".join(char(rng.choice(kinds)) for _ in range(length))
        if i % 11 == 5:
            text = text[: length // 2] + rng.choice(["<|im_start|>", "<tts_pad>", "<|im_end|>", "<think>"]) + text
        yield text


def test_fuzz_random_unicode_ends_in_audio_or_a_project_error(synth):
    """Every input ends in audio or a PromptError; frames stay within the request's bound (time),
    and the process does not grow by more than a bounded amount (memory)."""
    import resource

    params = SamplingParams.greedy(max_new_tokens=3)
    outcomes = {"audio": 0, "error": 0}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for text in _fuzz_texts(48):
        try:
            pieces = synth.prepare(text, VOICE, params)
            chunks = list(synth.stream(text, VOICE, params))
        except PromptError as exc:
            outcomes["error"] += 1
            assert str(exc)
            continue
        m = synth.last_metrics
        assert m.segments == len(pieces) and m.frames <= 2 * m.segments
        assert all(np.isfinite(c.samples).all() for c in chunks)
        outcomes["audio"] += 1
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    assert outcomes["audio"] >= 20 and outcomes["error"] >= 5, outcomes
    assert grown_mb < 400, grown_mb


def test_cli_official_layout_flag(synth, tiny_custom_voice):
    """--official-layout gives what the official generate_custom_voice defaults to: the whole text in
    the prefill (non-streaming) for CustomVoice; the default here stays streaming text."""
    from qwen3_tts_trt.commands.main import build_parser
    from qwen3_tts_trt.commands.options import voice_of

    parser = build_parser()
    base = ["say", "Hi.", "-m", str(tiny_custom_voice), "--speaker", "ryan"]
    assert voice_of(parser.parse_args(base + ["--official-layout"]), synth).non_streaming_text is True
    assert voice_of(parser.parse_args(base), synth).non_streaming_text is False
    proc = cli(*base, "--official-layout", "--non-streaming-text")
    one_error_line(proc, "not allowed with argument")
