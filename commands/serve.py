"""`qwen3-tts-trt serve`: the OpenAI-compatible speech API on Ray Serve, on this machine or a cluster."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from qwen3_tts_trt.serve.guard import API_KEY_ENV, MAX_BODY_BYTES

from .errors import UsageError
from .options import int_at_least


def add_parser(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = sub.add_parser(
        "serve", formatter_class=fmt, help="serve many conversations: an OpenAI-compatible speech API on Ray Serve",
        description="Start Ray on this machine (or join a cluster with --address) and serve POST /v1/audio/speech "
                    "(OpenAI-compatible), the WebSocket /v1/audio/speech/stream, GET /v1/voices and /health until "
                    "Ctrl-C or SIGTERM, which stop it after a drain (--drain-seconds). Needs the serve extra: "
                    "pip install -e \".[onnx,serve]\".")
    p.add_argument("-m", "--model", required=True, help="checkpoint directory (present on every node) or hub id")
    p.add_argument("--build-dir", help="build folder (default: builds/<gpu or cpu>/<model folder name> if it exists)")
    p.add_argument("--backend", default="auto", choices=["auto", "tensorrt", "onnx", "torch"],
                   help="auto: the build's TensorRT engines, else its ONNX graphs; PyTorch without a build")
    p.add_argument("--fallback", action="store_true", help="run the next backend if the build cannot run here")
    p.add_argument("--host", default="127.0.0.1", help="HTTP host (0.0.0.0 to listen on every interface)")
    p.add_argument("--port", type=int_at_least(1), default=8000, help="HTTP port")
    p.add_argument("--served-model-name", nargs="+", metavar="NAME",
                   help="the names clients may pass as `model` (vLLM's flag; the first is reported); default: the "
                        "checkpoint folder's name and OpenAI's tts-1, tts-1-hd and gpt-4o-mini-tts, so that code "
                        "written for OpenAI runs after changing only its base_url")
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
    p.add_argument("--api-key", help=f"clients must send `Authorization: Bearer KEY` (every route but /health); "
                                     f"better set {API_KEY_ENV}=KEY, which `ps` does not show (default: no key)")
    p.add_argument("--drain-seconds", type=float, default=10.0,
                   help="on Ctrl-C or SIGTERM, streams in flight get this long to finish before they are ended at a "
                        "frame (keep it under your orchestrator's grace period: Kubernetes gives 30 s)")
    p.add_argument("--max-body-mb", type=float, default=MAX_BODY_BYTES / 2**20,
                   help="largest request body or WebSocket message taken (MiB); the default fits the longest "
                        "reference recording a clone accepts")
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

    # A wrong path or a missing or damaged checkpoint file (resolve_checkpoint checks them all) is one
    # line here, before Ray starts, not a replica failing in Ray's logs.
    resolve_checkpoint(args.model)
    if args.build_dir and not Path(args.build_dir).is_dir():
        raise UsageError(f"build folder {args.build_dir} does not exist: run ./build.sh {args.model} first")
    if args.voice_dir and not Path(args.voice_dir).is_dir():
        raise UsageError(f"voice folder {args.voice_dir} does not exist")
    config = ServeConfig(model=args.model, build_dir=args.build_dir, backend=args.backend, fallback=args.fallback,
                         voice_dir=args.voice_dir, replicas=args.replicas,
                         max_replicas_per_node=args.max_replicas_per_node, num_cpus=args.num_cpus,
                         num_gpus=args.num_gpus, threads=args.threads, capacity=args.streams or 0,
                         served_model_names=tuple(args.served_model_name or ()),
                         api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                         max_body_bytes=int(args.max_body_mb * 2**20))
    if args.drain_seconds < 0 or args.max_body_mb <= 0:
        raise UsageError("--drain-seconds must be 0 or more and --max-body-mb more than 0")
    if config.api_key is None and not _loopback(args.host):
        print(f"warning: listening on {args.host} without an API key: anyone who can reach port {args.port} can "
              f"use this server; set {API_KEY_ENV} (or --api-key)", file=sys.stderr)
    if args.haproxy and args.address:
        raise UsageError("--haproxy applies to the cluster this command starts; on a cluster of your own, set "
                         "RAY_SERVE_ENABLE_HA_PROXY=1 in the environment of `ray start` on every node")
    return run_local(config, args.host, args.port, address=args.address, metrics_port=args.metrics_port,
                     haproxy=args.haproxy, drain_s=args.drain_seconds)


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False
