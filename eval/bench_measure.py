"""Small measuring tools for the benchmark: percentiles, a peak-memory sampler, machine facts."""

from __future__ import annotations

import os
import platform
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil


def summarize_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean and max of latencies in milliseconds (nearest-rank percentiles)."""
    if not samples:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "max": float("nan")}
    values = np.sort(np.asarray(samples, dtype=np.float64))

    def rank(q: float) -> float:
        return float(values[min(len(values) - 1, max(0, int(np.ceil(q * len(values))) - 1))])

    return {
        "n": len(values),
        "p50": round(rank(0.50), 3),
        "p95": round(rank(0.95), 3),
        "mean": round(float(values.mean()), 3),
        "max": round(float(values[-1]), 2),
    }


def rss_bytes() -> int:
    return int(psutil.Process(os.getpid()).memory_info().rss)


@dataclass
class PeakMemory:
    """RSS before a block and the highest RSS seen while it ran (sampled every `interval` s)."""

    before: int = 0
    peak: int = 0
    after: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def delta(self) -> int:
        return max(0, self.peak - self.before)

    def as_dict(self) -> dict[str, float]:
        mib = 1024 * 1024
        return {
            "rss_before_mib": round(self.before / mib, 1),
            "rss_peak_mib": round(self.peak / mib, 1),
            "rss_after_mib": round(self.after / mib, 1),
            "rss_peak_delta_mib": round(self.delta / mib, 1),
        }


@contextmanager
def peak_memory(interval: float = 0.02) -> Iterator[PeakMemory]:
    stats = PeakMemory(before=rss_bytes())
    stats.peak = stats.before

    def sample() -> None:
        while not stats._stop.wait(interval):
            stats.peak = max(stats.peak, rss_bytes())
            stats.samples += 1

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stats._stop.set()
        thread.join()
        stats.after = rss_bytes()
        stats.peak = max(stats.peak, stats.after)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: other processes on the machine skew every latency here."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def machine_info() -> dict[str, Any]:
    import faiss
    import torch

    cpu_model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpu": cpu_model,
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": [round(x, 2) for x in load],
    }
