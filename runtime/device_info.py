"""What GPU (if any) this process runs on, in the form manifests record and compare."""

from __future__ import annotations

import re
import shutil
import subprocess


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown"


def detect_gpu() -> dict | None:
    """{name, slug, compute_capability, driver, cuda} of GPU 0, or None without a usable GPU."""
    try:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            major, minor = torch.cuda.get_device_capability(0)
            return dict(name=name, slug=slugify(name), compute_capability=f"{major}.{minor}",
                        driver=_driver_version(), cuda=torch.version.cuda)
    except Exception:  # a broken CUDA install is "no GPU" here; the TensorRT stage says why
        pass
    return None


def _driver_version() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def tensorrt_version() -> tuple[str | None, str | None]:
    """(version, None) when TensorRT imports, else (None, why not)."""
    try:
        import tensorrt as trt

        return trt.__version__, None
    except ImportError as exc:
        return None, f"TensorRT is not installed ({exc.__class__.__name__}: {exc})"
    except Exception as exc:  # the PyPI stub raises while trying to fetch NVIDIA's wheels
        return None, f"TensorRT failed to import ({exc.__class__.__name__}: {exc})"


def host_read_gbs(gib: float = 1.0, repeats: int = 5) -> float:
    """This host's single-thread memory read bandwidth, GB/s: the best of `repeats` sums over a
    `gib` GiB array (numpy's sum runs on one thread). The CPU frame loop is bandwidth-bound and the
    bandwidth of these hosts drifts from day to day, so every CPU figure is printed beside it."""
    import time

    import numpy as np

    data = np.ones(int(gib * 2**30) // 8, dtype=np.float64)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - t0)
    return data.nbytes / best / 1e9
