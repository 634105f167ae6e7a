"""What one engine call costs as streams share it: a talker step, a predictor frame and a codec chunk
at 1, 2, 4 and 8 rows, on one build (the calls the step loop makes for N streams at once).

If a call's cost stayed flat as rows grow, as it does where reading the weights is all the work,
N streams would cost what one does; where it grows with the rows, the engine computes per row and
batching gains little. This says which, per engine, on this host (whose read bandwidth it prints).

    python benchmarks/step_rows.py -m CKPT --build-dir BUILD --rows 1,2,4,8 --repeats 10 --json out/step-rows.json

The build needs `--max-batch` at least the largest row count. Inputs are random (the cost of a
call does not depend on its values): the talker rows each hold a 40-position prefix.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

PREFIX = 40  # positions each talker row holds before the timed steps


def _median_ms(call, repeats: int) -> float:
    call()  # warm-up: the first call at a shape plans it
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def measure(backend, rows: int, repeats: int, chunk: int) -> dict:
    cfg, limits = backend.config, backend.limits
    hidden_size = cfg.talker.hidden_size
    torch.manual_seed(0)
    for row in range(rows):
        backend.prefill(torch.randn(1, PREFIX, hidden_size), row)
    step = [PREFIX]

    def talker():
        x = torch.randn(rows, 1, hidden_size)
        backend.decode_rows(x, [step[0]] * rows, list(range(rows)))
        step[0] += 1

    groups = cfg.talker.num_code_groups - 1
    controls = (torch.ones(rows), torch.full((rows,), limits.top_k_max, dtype=torch.long), torch.ones(rows))

    def predictor():
        backend.predict_frame(torch.randn(rows, hidden_size), torch.randint(0, 2048, (rows,)),
                              torch.rand(rows, groups, limits.top_k_max), *controls)

    states = [backend.new_codec_state() for _ in range(rows)]

    def codec():
        codes = [torch.randint(0, 2048, (1, groups + 1, chunk)) for _ in range(rows)]
        backend.codec_run_rows(list(zip(codes, states)))

    out = {"rows": rows, "talker_step_ms": _median_ms(talker, repeats), "predictor_frame_ms": _median_ms(predictor, repeats),
           f"codec_{chunk}_frames_ms": _median_ms(codec, repeats)}
    backend.end_stream()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--build-dir", required=True)
    ap.add_argument("--rows", default="1,2,4,8")
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=4, help="codec frames per chunk")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from qwen3_tts_trt.runtime.backends import open_backend
    from qwen3_tts_trt.runtime.device_info import host_read_gbs

    backend = open_backend("onnx", args.model, args.build_dir)
    read_gbs = [host_read_gbs()]
    results = [measure(backend, int(n), args.repeats, args.chunk) for n in args.rows.split(",")]
    read_gbs.append(host_read_gbs())
    keys = [k for k in results[0] if k != "rows"]
    print(f"single-thread read {read_gbs[0]:.1f} GB/s before, {read_gbs[1]:.1f} after; {os.cpu_count()} cores")
    print("| rows | " + " | ".join(f"{k} (per row)" for k in keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for r in results:
        print(f"| {r['rows']} | " + " | ".join(f"{r[k]:.1f} ({r[k] / r['rows']:.1f})" for k in keys) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(dict(build=args.build_dir, read_gbs=read_gbs, results=results,
                                                   date=time.strftime("%Y-%m-%d")), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
