"""How far a quantized build strays from the fp32 build: the quality gate of int8/int4 graphs.

Both builds run the same prompt side by side, teacher-forced: every step, both get the inputs the
fp32 build's own greedy choices lead to, so one early disagreement does not make every later
frame differ (free-running codes diverge for good after the first flip, which says little about
how close the numbers are). Per frame it records:
- codebook 0: whether the quantized talker's greedy pick (the official rules: suppressed control
  ids, repetition penalty) equals the fp32 pick, and the relative L2 error of its logits;
- codebooks 1..15: the quantized predictor, given the fp32 talker's hidden state and code 0, picks
  its 15 codes greedily inside the graph; each is compared with the fp32 graph's (a flip at
  codebook k also changes the inputs of k+1.., as it would in real use);
- the relative L2 error of the talker's hidden state;
- for a build whose codec differs (--codec-precision int8): both codecs stream the fp32 path's
  codes (chunk sizes as a stream uses them, state carried), and the SNR of the PCM against the
  fp32 codec's, in dB.

Random checkpoints have no speech in them, and their logits are flatter than trained ones (a
trained model is confident on most frames), so an error flips their argmax more often: the
agreement measured here is a pessimistic stand-in for real weights. docs/benchmarks.md records
the figures and why the thresholds are where they are.

    python -m qwen3_tts_trt.export.quality_gate -m CHECKPOINT --ref-build builds/cpu/M --build OTHER/cpu/M --frames 200
    (--build again for another build: one fp32 pass serves all of them)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from qwen3_tts_trt.runtime.backends.base import Backend
from qwen3_tts_trt.runtime.contract import chunk_frames
from qwen3_tts_trt.runtime.prompt import Prompt
from qwen3_tts_trt.runtime.sampling import HostSampler, SamplingParams
from qwen3_tts_trt.runtime.voice import Voice

# What the gate runs: two prompts (plain streaming text and the whole text up front), 200+ frames each.
TEXTS = {
    "streaming": "The quick brown fox jumps over the lazy dog while the radio plays an old song about the sea.",
    "non-streaming": "Please keep your seat belt fastened for the whole flight, and thank you for flying with us today.",
}


@dataclass
class Agreement:
    frames: int = 0
    code0_agree: int = 0
    codes_agree: list[int] = field(default_factory=list)  # per codebook 1..G-1
    logits_rel_err: list[float] = field(default_factory=list)  # per frame
    hidden_rel_err: list[float] = field(default_factory=list)
    codes: list[torch.Tensor] = field(default_factory=list)  # the fp32 path's frames [G], for the codec
    codec_snr_db: float | None = None

    def summary(self) -> dict:
        g = np.asarray(self.codes_agree, dtype=float) / max(self.frames, 1)
        le, he = np.asarray(self.logits_rel_err), np.asarray(self.hidden_rel_err)
        return dict(frames=self.frames, code0_agreement=self.code0_agree / max(self.frames, 1),
                    predictor_agreement_mean=float(g.mean()) if g.size else None,
                    predictor_agreement_first=float(g[0]) if g.size else None,
                    predictor_agreement_last=float(g[-1]) if g.size else None,
                    logits_rel_err_mean=float(le.mean()), logits_rel_err_p95=float(np.percentile(le, 95)),
                    hidden_rel_err_mean=float(he.mean()), hidden_rel_err_p95=float(np.percentile(he, 95)),
                    codec_snr_db=self.codec_snr_db)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def teacher_forced(ref: Backend, tests: Sequence[Backend], prompt: Prompt, frames: int) -> list[Agreement]:
    """Run `frames` frames of `prompt` on `ref` and on each of `tests` with the fp32 (`ref`) inputs,
    one fp32 pass for all of them; see the module doc. One Agreement per test backend."""
    cfg = ref.config
    groups = cfg.talker.num_code_groups - 1
    if prompt.length + frames >= min(b.limits.max_context for b in (ref, *tests)):
        raise ValueError(f"{frames} frames after a {prompt.length}-position prompt do not fit the builds' context")
    # Greedy with the official rules; EOS is held off for the whole run (min_new_tokens) so that
    # every run measures `frames` frames, whatever the random weights would pick.
    params = SamplingParams.greedy(cfg.sampling, min_new_tokens=frames + 1, max_new_tokens=frames + 1)
    pick_ref = HostSampler(params, cfg.ids, cfg.talker.vocab_size)
    noise = torch.zeros((1, groups, ref.limits.top_k_max))
    controls = (torch.zeros(1), torch.tensor([ref.limits.top_k_max]), torch.ones(1))  # temperature 0: argmax
    outs = [Agreement(codes_agree=[0] * groups) for _ in tests]
    logits_r, hidden_r = ref.prefill(prompt.embeds)
    steps = [test.prefill(prompt.embeds) for test in tests]  # each test's (logits, hidden)
    s = prompt.length
    for step in range(frames):
        # Each quantized talker's pick under the same rules and the same history as the fp32 one.
        seen = pick_ref.seen.copy()
        c0 = pick_ref.talker(logits_r.cpu().numpy(), step)
        code0 = torch.tensor([c0])
        codes_r, embed_r = ref.predict_frame(hidden_r, code0, noise, *controls)
        frame = torch.cat([code0, codes_r[0].cpu()])
        for test, out, (logits_t, hidden_t) in zip(tests, outs, steps):
            pick_test = HostSampler(params, cfg.ids, cfg.talker.vocab_size)
            pick_test.seen[:] = seen
            out.frames += 1
            out.code0_agree += int(c0 == pick_test.talker(logits_t.cpu().numpy(), step))
            out.logits_rel_err.append(_rel(logits_t, logits_r))
            out.hidden_rel_err.append(_rel(hidden_t, hidden_r))
            codes_t, _ = test.predict_frame(hidden_r, code0, noise, *controls)
            for k, same in enumerate((codes_r[0].cpu() == codes_t[0].cpu()).tolist()):
                out.codes_agree[k] += int(same)
            out.codes.append(frame)
        if step == frames - 1:
            break
        x = embed_r.to("cpu", torch.float32)[:, None] + prompt.text_input(step)
        logits_r, hidden_r = ref.decode(x, s + step)
        steps = [test.decode(x, s + step) for test in tests]
    return outs


def codec_snr_db(ref: Backend, test: Backend, frames: list[torch.Tensor]) -> float:
    """SNR in dB of `test`'s codec PCM against `ref`'s, both streaming `frames` in the chunks a stream
    of `ref`'s limits uses."""
    codes = torch.stack(frames).T[None]  # [1, G, F]
    a, b = (_streamed_pcm(backend, codes, ref.limits) for backend in (ref, test))
    noise = float(((a - b) ** 2).sum())
    return float("inf") if noise == 0 else 10 * float(np.log10(float((a ** 2).sum()) / noise))


def _streamed_pcm(backend: Backend, codes: torch.Tensor, limits) -> torch.Tensor:
    """`backend`'s codec PCM (float64) for `codes` [1, G, F], chunk by chunk with its state carried."""
    state, start, index, parts = backend.new_codec_state(), 0, 0, []
    while start < codes.shape[-1]:
        size = chunk_frames(index, limits.chunk_ramp, limits.max_chunk)
        out, state = backend.codec_run(codes[..., start:start + size], state)
        parts.append(out.double())
        start, index = start + size, index + 1
    return torch.cat(parts, dim=-1)


def measure(checkpoint, ref_build, builds: Sequence, frames: int = 200, speaker: str | None = None) -> list[dict]:
    """The gate's figures for each of `builds` against the fp32 build, per prompt ("mode"), in the
    order given. The fp32 build runs once for all of them."""
    from qwen3_tts_trt.runtime.backends import open_backend
    from qwen3_tts_trt.runtime.stream import Synthesizer

    ref = open_backend("onnx", checkpoint, ref_build)
    tests = [open_backend("onnx", checkpoint, build) for build in builds]
    synth = Synthesizer(ref, checkpoint)
    speaker = speaker or (sorted(synth.config.speakers)[0] if synth.config.speakers else None)
    results: list[dict] = [{} for _ in tests]
    for mode, text in TEXTS.items():
        voice = Voice(speaker=speaker, language="english", non_streaming_text=mode == "non-streaming")
        prompt = synth.prompts.build(text, voice)
        for test, agreement, result in zip(tests, teacher_forced(ref, tests, prompt, frames), results):
            if test.limits.codec_precision != ref.limits.codec_precision:
                agreement.codec_snr_db = codec_snr_db(ref, test, agreement.codes)
            result[mode] = agreement.summary()
    return [dict(precision=test.limits.precision, codec_precision=test.limits.codec_precision,
                 frames_per_mode=frames, modes=result) for test, result in zip(tests, results)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m qwen3_tts_trt.export.quality_gate", description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True, help="checkpoint directory")
    ap.add_argument("--ref-build", required=True, help="the fp32 build folder")
    ap.add_argument("--build", required=True, action="append",
                    help="a build to measure (int8, int4, ...); repeat it to measure several against one fp32 pass")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args(argv)
    figures = measure(args.model, args.ref_build, args.build, args.frames)
    text = json.dumps(figures[0] if len(figures) == 1 else figures, indent=1)  # one build: its figures alone
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
