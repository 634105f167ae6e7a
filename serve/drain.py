"""Stopping without cutting a conversation short: the drain of `qwen3-tts-trt serve` on SIGTERM
(what `docker stop`, systemd and Kubernetes send) or Ctrl-C.

The process that started the application holds a `DrainSignal` actor. When it is told to stop,
it opens the signal with a grace period; every replica follows it (`ReplicaDrain.follow`): from
that moment it refuses new requests (HTTP 503 + Retry-After, WebSocket close 1001, `/health`
503, so a load balancer stops sending), lets the streams in flight run to their end until the
grace period is over, then ends the rest at their next frame (the audio sent stays whole), and
reports itself idle. Only then does the starter shut Serve down, so Serve's own shutdown never
has a stream left to kill mid-chunk.

An application deployed without that starter (`serve run`, a Serve config file) has no signal to
follow, and stops the way Ray Serve stops any deployment.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import ray

log = logging.getLogger("ray.serve")

DRAIN_NAMESPACE = "qwen3-tts"  # the signal's Ray namespace, whatever the starter's own is
# Seconds a replica is given, past the grace period, to end its streams at their next frame.
END_MARGIN_S = 5.0


@ray.remote(num_cpus=0)
class DrainSignal:
    """The starter's side: replicas wait on `opened()`; the starter `open`s it and watches `idle()`."""

    def __init__(self):
        self._opened = asyncio.Event()
        self._grace_s = 0.0
        self._followers: set[str] = set()
        self._idle: set[str] = set()
        self._ended = 0  # streams the grace period cut short

    async def opened(self, replica: str) -> float:
        self._followers.add(replica)
        await self._opened.wait()
        return self._grace_s

    async def open(self, grace_s: float) -> None:
        self._grace_s = grace_s
        self._opened.set()

    async def report_idle(self, replica: str, ended: int) -> None:
        self._idle.add(replica)
        self._ended += ended

    async def idle(self) -> tuple[bool, int]:
        """Whether every replica is idle, and how many streams the grace period ended."""
        return self._followers <= self._idle, self._ended


class ReplicaDrain:
    """A replica's side: whether it still takes requests, and when its streams must end."""

    def __init__(self):
        self.deadline: float | None = None  # time.monotonic() at which streams in flight are ended

    @property
    def draining(self) -> bool:
        return self.deadline is not None

    def expired(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    async def follow(self, signal_name: str, namespace: str, replica: str, live, end_all) -> None:
        """Wait for the starter's signal, then drain: `live()` counts the streams in flight and
        `end_all()` ends them at their next frame. Runs as a task for the replica's lifetime."""
        try:
            signal = ray.get_actor(signal_name, namespace=namespace)
            grace_s = await signal.opened.remote(replica)
        except (ValueError, ray.exceptions.RayActorError):
            return  # no starter to follow (any more): Serve's own shutdown applies
        self.deadline = time.monotonic() + grace_s
        log.info("draining: %d stream(s) in flight get up to %.0f s to finish", live(), grace_s)
        while live() and not self.expired():
            await asyncio.sleep(0.05)
        ended = live()
        if ended:
            log.info("grace period over: ending %d stream(s) at their next frame", ended)
            await end_all()
        try:
            await signal.report_idle.remote(replica, ended)
        except ray.exceptions.RayActorError:
            pass


def drain(signal, grace_s: float, hurry: threading.Event, *, poll_s: float = 0.1) -> tuple[bool, int]:
    """The starter's side: open the signal, then wait until every replica reports idle, the grace
    period and the margin to end streams are over, or `hurry` is set (a second Ctrl-C).
    Returns (every replica went idle, streams the grace period ended)."""
    ray.get(signal.open.remote(grace_s))
    deadline = time.monotonic() + grace_s + END_MARGIN_S
    idle, ended = False, 0
    while time.monotonic() < deadline and not hurry.is_set():
        idle, ended = ray.get(signal.idle.remote())
        if idle:
            break
        time.sleep(poll_s)
    return idle, ended
