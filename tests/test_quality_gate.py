"""The quality gate of the CPU precisions, at the real 0.6B shapes: int8 and int4 builds quantized
from the fp32 build, run teacher-forced beside it for 200 frames in two prompt modes
(export/quality_gate.py says what is measured and why teacher-forced). The int8 build also has the
int8 codec (--codec-precision int8), whose PCM is held to an SNR against the fp32 codec's over the
same frames (the codec does not change the codes, so one run measures both).

The thresholds sit a little below what was measured on this random checkpoint (docs/benchmarks.md,
"Quality gate"), so a quantizer or kernel change that makes the numbers worse fails here. Random
weights give flatter logits than trained ones, so these agreement figures are a floor, not the
quality a trained checkpoint keeps."""

from __future__ import annotations

import pytest

from qwen3_tts_trt.export import build as build_mod
from qwen3_tts_trt.export.quality_gate import measure

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

CODEC_SNR_DB = 25.0  # the int8 codec against fp32 (measured: see docs/benchmarks.md)
# Per precision: the least code-0 agreement, the least agreement of the predictor's first code
# (given the same hidden state and code 0), and the most relative L2 error of the talker's logits.
GATE = {
    "int8": dict(code0=0.90, first_code=0.90, logits_rel_err=0.03, codec="int8", codec_snr_db=CODEC_SNR_DB),
    "int4": dict(code0=0.45, first_code=0.35, logits_rel_err=0.33, codec="fp32"),
}


def test_weight_only_precisions_pass_the_quality_gate(real_custom_voice, real_build, tmp_path):
    fp32_dir, _ = real_build
    builds = []
    for precision, gate in sorted(GATE.items()):
        builds.append(tmp_path / precision / "cpu" / fp32_dir.name)
        build_mod.quantize_build(fp32_dir, builds[-1], precision, log=print, codec_precision=gate["codec"],
                                 model=real_custom_voice)
    # One fp32 pass measures both builds (it is the gate's slowest part: ~2 minutes per pass).
    measured = measure(real_custom_voice, fp32_dir, builds, frames=200)
    for (precision, gate), figures in zip(sorted(GATE.items()), measured):
        print(precision, figures)
        assert (figures["precision"], figures["codec_precision"]) == (precision, gate["codec"])
        for mode, f in figures["modes"].items():
            assert f["frames"] == 200
            assert f["code0_agreement"] >= gate["code0"], (precision, mode, f)
            assert f["predictor_agreement_first"] >= gate["first_code"], (precision, mode, f)
            assert f["logits_rel_err_mean"] <= gate["logits_rel_err"], (precision, mode, f)
            if "codec_snr_db" in gate:
                assert f["codec_snr_db"] >= gate["codec_snr_db"], (precision, mode, f)
