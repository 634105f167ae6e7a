"""The benchmark scripts run and write what their docs say (tiny checkpoint; no figure is judged)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import first_audio  # noqa: E402


def test_first_audio_writes_the_calls_before_each_first_chunk(tiny_build, tiny_custom_voice, tmp_path, capsys):
    out = tmp_path / "first-audio.json"
    assert first_audio.main(["-m", str(tiny_custom_voice), "--build-dir", str(tiny_build[0]), "--runs", "2",
                             "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert len(figures["utterances"]) == 2 and "TTFC median" in capsys.readouterr().out
    for u in figures["utterances"]:
        calls = [c["call"] for c in u["timeline"]]
        # a stream's first chunk: the prefill, frame 1's codes, then the codec on that one frame
        assert calls[0] == "prefill" and calls.index("predict_frame") < calls.index("codec_run"), calls
        assert calls.count("prefill") == 1 and calls.count("codec_run") == 1, calls
        codec = u["timeline"][calls.index("codec_run")]
        assert codec["end_ms"] <= u["first_chunk_ms"] and u["ttfc_ms"] > 0
