"""Qwen3-TTS as a Ray Serve application: an OpenAI-compatible speech API and a WebSocket for text
that is still being written, one engine per replica.

    from qwen3_tts_trt.serve import ServeConfig, build_app
    serve.run(build_app(ServeConfig(model="checkpoints/tiny-custom-voice")))

Imports flow serve -> runtime (never export). Ray, FastAPI and the deployment live in `serve.app`,
imported on first use, so that `serve.config` can be read without Ray.
"""

__all__ = ["ServeConfig", "app_builder", "build_app", "run_local"]


def __getattr__(name: str):
    # ServeConfig on first use: `serve --help` reads serve.guard's limits without loading the runtime
    if name == "ServeConfig":
        from .config import ServeConfig

        return ServeConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_app(config):
    from .app import build_app as build

    return build(config)


def app_builder(args: dict):
    """Ray's application builder: `import_path: qwen3_tts_trt.serve:app_builder` with `args: {model: ..., ...}` in a
    Serve config file (KubeRay's serveConfigV2), or `serve run qwen3_tts_trt.serve:app_builder model=...`."""
    from .config import ServeConfig

    return build_app(ServeConfig.from_args(args))


def run_local(config, host: str = "127.0.0.1", port: int = 8000, **kwargs):
    from .local import run_local as run

    return run(config, host, port, **kwargs)
