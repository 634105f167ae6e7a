"""Two Ray nodes on this machine (a head and a worker, each its own raylet, as two `ray start`
would make them), one replica on each: streams are served from both. Marked slow: two replicas
load and warm the engines on two shared cores.

Each node runs a Serve proxy on the same port, and a proxy routes to the replica on its own node
first (Ray's RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING). On one machine the kernel hands each
new connection to one of the proxies, so every request here opens a connection of its own, as
clients spread over two machines would."""

import socket

import pytest

pytest.importorskip("ray.serve")
httpx = pytest.importorskip("httpx")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_two_nodes_serve_streams_from_replicas_on_both(tiny_custom_voice, tiny_build, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway cluster: no token file in the home folder
    from ray.cluster_utils import Cluster

    from qwen3_tts_trt.serve import ServeConfig
    from qwen3_tts_trt.serve.local import start, stop

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = ServeConfig(model=str(tiny_custom_voice), build_dir=str(tiny_build[0]), backend="onnx",
                         replicas=2, max_replicas_per_node=1, num_cpus=0.5)
    try:
        start(config, "127.0.0.1", port, address=cluster.address)
        served: dict[str, int] = {}
        url = f"http://127.0.0.1:{port}"
        for _ in range(40):  # until both replicas have spoken
            r = httpx.post(url + "/v1/audio/speech", timeout=60, json={
                "input": "Hi there.", "voice": "ryan", "response_format": "pcm", "max_new_tokens": 10})
            assert r.status_code == 200 and len(r.content) > 0
            for _ in range(6):
                health = httpx.get(url + "/health", timeout=60).json()
                served[health["node_id"]] = max(served.get(health["node_id"], 0), health["streams_served"])
            if len(served) == 2 and all(served.values()):
                break
        assert len(served) == 2, served
        assert all(n > 0 for n in served.values()), served
    finally:
        stop()
        cluster.shutdown()
