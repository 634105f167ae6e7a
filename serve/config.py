"""What one serving application is made of: the model and build, the voices, and the slots and
queues around each replica. Plain data, so it travels to every replica as the deployment's
argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qwen3_tts_trt.runtime.stream import StreamOptions

from .guard import MAX_BODY_BYTES

# OpenAI's speech models: code written for OpenAI's API sends one of these as `model`; taking them
# by default lets it run here after changing only its base_url.
OPENAI_MODEL_NAMES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")

# Requests that take no stream slot (health, voices, refusals) still count towards Ray's
# max_ongoing_requests; this much room keeps them answered while every slot is busy.
CONTROL_HEADROOM = 4


@dataclass(frozen=True)
class ServeConfig:
    model: str  # checkpoint directory (on every node) or hub id
    build_dir: str | None = None  # build.sh output; None: builds/<gpu or cpu>/<model name> if it exists
    backend: str = "auto"
    fallback: bool = False
    voice_dir: str | None = None  # NAME.voice files offered as `voice: "NAME"`
    # The names clients may pass as `model` (vLLM's --served-model-name); the first is the one the
    # server reports. Empty: the checkpoint folder's name and OpenAI's speech model names.
    served_model_names: tuple[str, ...] = ()
    replicas: int = 1
    max_replicas_per_node: int = 0  # 0: no limit; 1 spreads replicas over the nodes (one engine per machine)
    num_cpus: float = 1.0  # per replica; fractional on a small machine
    num_gpus: float = 0.0  # 1 per replica in production: one engine per GPU
    threads: int = 1  # OMP_NUM_THREADS of each replica: replicas must not oversubscribe the cores
    capacity: int = 0  # streams one engine runs at once (its step loop); 0: the build's --max-batch
    # A request finding every slot busy waits for one while the wait it can expect (StreamPool) and
    # the wait itself stay within wait_s, with at most max_waiting others; then HTTP 503 + Retry-After
    # / WebSocket 1013. A conversation turn is seconds long: 20 s of waiting beats a client's retry.
    max_waiting: int = 64
    wait_s: float = 20.0
    max_queued: int = 16  # requests Ray itself queues when every replica is at max_ongoing_requests (then 503)
    max_input_chars: int = StreamOptions.max_text_chars
    text_idle_s: float = 30.0  # a WebSocket that sends no text this long before input.done is closed
    max_body_bytes: int = MAX_BODY_BYTES  # a request body or WebSocket message larger than this is refused
    # Clients must send `Authorization: Bearer <api_key>` (the WebSocket: that header or `api_key` in
    # session.config); None: no key. Kept out of repr, which Ray's logs print.
    api_key: str | None = field(default=None, repr=False)
    drain_signal: str | None = None  # the DrainSignal actor of the process that started the app (serve.drain)
    warmup: bool = True
    env: dict = field(default_factory=dict)  # more environment variables for the replicas

    @classmethod
    def from_args(cls, args: dict) -> "ServeConfig":
        """The `args` of a Serve config file or of `serve run qwen3_tts_trt.serve:app_builder key=value ...`,
        where every value may arrive as a string: each is read as its field's default's type."""
        from dataclasses import fields

        unknown = set(args) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown ServeConfig arguments: {', '.join(sorted(unknown))}")
        defaults = cls(model="")
        values = {}
        for name, value in args.items():
            kind = type(getattr(defaults, name))
            if isinstance(value, str) and kind is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(f"{name} must be true or false, not {value!r}")
                value = value.lower() in ("true", "1", "yes")
            elif isinstance(value, str) and kind in (int, float):
                value = kind(value)
            elif kind is tuple:  # a list in a config file, or "a,b" on `serve run`'s command line
                value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
            values[name] = value
        return cls(**values)

    @property
    def served_model(self) -> str:
        return self.model_names[0]

    @property
    def model_names(self) -> tuple[str, ...]:
        """Every name a request's `model` may be (the first is this model's own)."""
        return tuple(self.served_model_names) or (Path(self.model).name, *OPENAI_MODEL_NAMES)

    @property
    def max_ongoing_requests(self) -> int:
        return self.capacity + self.max_waiting + CONTROL_HEADROOM

    def deployment_options(self) -> dict:
        env = {"OMP_NUM_THREADS": str(self.threads), "TOKENIZERS_PARALLELISM": "false",
               "TRANSFORMERS_VERBOSITY": "error", **self.env}
        # A replica imports qwen3_tts_trt as installed on its node (`pip install qwen3-tts-trt[serve]`).
        spread = {"max_replicas_per_node": self.max_replicas_per_node} if self.max_replicas_per_node else {}
        return dict(
            **spread,
            num_replicas=self.replicas,
            max_ongoing_requests=self.max_ongoing_requests,
            max_queued_requests=self.max_queued,
            ray_actor_options={"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                               "runtime_env": {"env_vars": env}},
            # Warm-up happens in the constructor; a big model on a CPU can take minutes.
            health_check_period_s=10, health_check_timeout_s=60, graceful_shutdown_timeout_s=20,
            max_constructor_retry_count=2,  # a build that cannot load fails the deployment soon, with its error
        )

    def resolved(self) -> "ServeConfig":
        """Absolute paths and the default build folder, fixed once where the app is built."""
        from dataclasses import replace

        from qwen3_tts_trt.runtime.manifest import default_build_dir

        model = str(Path(self.model).expanduser().resolve()) if Path(self.model).expanduser().exists() else self.model
        build = self.build_dir or default_build_dir(self.model)
        build = str(Path(build).expanduser().resolve()) if build else None
        voices = str(Path(self.voice_dir).expanduser().resolve()) if self.voice_dir else None
        capacity = self.capacity or _build_rows(build)
        return replace(self, model=model, build_dir=build, voice_dir=voices, served_model_names=self.model_names,
                       capacity=capacity)


def _build_rows(build_dir: str | None) -> int:
    """The streams a build's engines run at once (`build.sh --max-batch`): 1 for no build or an
    unreadable one (the replica then reports the build's own problem)."""
    from qwen3_tts_trt.runtime.errors import Qwen3TTSError
    from qwen3_tts_trt.runtime.manifest import load_manifest

    if not build_dir:
        return 1
    try:
        return int(load_manifest(build_dir)["limits"].get("max_batch", 1))
    except (Qwen3TTSError, KeyError, TypeError, ValueError):
        return 1
