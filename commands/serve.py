"""`qwen3-tts-trt serve`: the OpenAI-compatible speech API on Ray Serve, on this machine or a cluster."""

from __future__ import annotations

import argparse
from pathlib import Path

from .errors import UsageError
from .options import int_at_least


def add_parser(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser(
        "serve", formatter_class=fmt, help="serve many conversations: an OpenAI-compatible speech API on Ray Serve",
        description="Start Ray on this machine (or join a cluster with --address) and serve POST /v1/audio/speech "
                    "(OpenAI-compatible), the WebSocket /v1/audio/speech/stream, GET /v1/voices and /health until "
                    "Ctrl-C. Needs the serve extra: pip install -e \".[onnx,serve]\".")
    p.add_argument("-m", "--model", required=True, help="checkpoint directory (present on every node) or hub id")
    p.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                   help="auto: the build's TensorRT engines, else its ONNX graphs; PyTorch without a build")
    p.add_argument("--fallback", action="store_true", help="run the next backend if the build cannot run here")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 to listen on every interface)")
    p.add_argument("--port", type=int_at_least(1), default=8000, help="HTTP port")
    p.add_argument("--voice-dir", help="a folder of NAME.voice files, offered as voice \"NAME\"")
    p.add_argument("--replicas", type=int_at_least(1), default=1, help="engines (one per GPU in production)")
    p.add_argument("--max-replicas-per-node", type=int_at_least(0), default=0,
                   help="at most this many replicas on one node (1 spreads them over the machines; 0: no limit)")
    p.add_argument("--num-cpus", type=float, default=1.0, help="CPU cores Ray reserves per replica (may be fractional)")
    p.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per replica (1 for TensorRT engines)")
    p.add_argument("--threads", type=int_at_least(1), default=1, help="OMP_NUM_THREADS of each replica")
    p.add_argument("--streams", type=int_at_least(1),
                   help="streams each replica runs at once, in shared engine calls (default: the build's --max-batch)")
    p.add_argument("--metrics-port", type=int_at_least(1),
                   help="serve this node's Prometheus metrics here (Ray picks a port if not given)")
    p.add_argument("--haproxy", action="store_true",
                   help="Ray Serve's HAProxy mode instead of its Python proxy (less added latency; for the cluster "
                        "this command starts; on a cluster of your own, set RAY_SERVE_ENABLE_HA_PROXY=1 for `ray start`)")
    p.add_argument("--address", help="join this Ray cluster (\"auto\": the one `ray start` runs here) instead of "
                                     "starting one")
    p.set_defaults(func=run)


def run(args) -> int:
    # Imported here, not at the top: Ray is an optional extra that say/bench/voice and --help never
    # need, and the serving layer loads it.
    try:
        import ray.serve  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"serving needs Ray Serve ({exc.name} is missing): pip install -e \".[serve]\"") from None
    from qwen3_tts_trt.runtime.checkpoint import resolve_checkpoint
    from qwen3_tts_trt.serve import ServeConfig, run_local

    resolve_checkpoint(args.model)  # a wrong path is one line here, not a replica failing in Ray's logs
    if args.build_dir and not Path(args.build_dir).is_dir():
        raise UsageError(f"build folder {args.build_dir} does not exist: run ./build.sh {args.model} first")
    if args.voice_dir and not Path(args.voice_dir).is_dir():
        raise UsageError(f"voice folder {args.voice_dir} does not exist")
    config = ServeConfig(model=args.model, build_dir=args.build_dir, backend=args.backend, fallback=args.fallback,
                         voice_dir=args.voice_dir, replicas=args.replicas,
                         max_replicas_per_node=args.max_replicas_per_node, num_cpus=args.num_cpus,
                         num_gpus=args.num_gpus, threads=args.threads, capacity=args.streams or 0)
    if args.haproxy and args.address:
        raise UsageError("--haproxy applies to the cluster this command starts; on a cluster of your own, set "
                         "RAY_SERVE_ENABLE_HA_PROXY=1 in the environment of `ray start` on every node")
    return run_local(config, args.host, args.port, address=args.address, metrics_port=args.metrics_port,
                     haproxy=args.haproxy)
