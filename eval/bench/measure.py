"""Measuring tools for the benchmark, soak and load runs: percentiles, a memory sampler, machine facts."""

from __future__ import annotations

import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import psutil
from citeqa.indexing.embedding import cpu_flags


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 < q <= 1) of `values`; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def summarize_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50, p95, mean and max of latencies in milliseconds (nearest-rank percentiles)."""
    if not samples:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "max": float("nan")}
    return {
        "n": len(samples),
        "p50": round(percentile(samples, 0.50), 3),
        "p95": round(percentile(samples, 0.95), 3),
        "mean": round(statistics.fmean(samples), 3),
        "max": round(max(samples), 2),
    }


class MemorySampler:
    """A process's resident memory (default: this process), sampled every `interval` s on a thread,
    from entering the block until leaving it: the samples show a peak, a plateau or a steady leak."""

    def __init__(self, pid: int | None = None, interval: float = 1.0) -> None:
        self.process = psutil.Process(pid or os.getpid())
        self.interval = interval
        self.samples: list[tuple[float, int]] = []  # (seconds since the start, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.monotonic()

    def _sample(self) -> bool:
        try:
            rss = self.process.memory_info().rss
        except psutil.Error:  # the process is gone: keep what was seen
            return False
        self.samples.append((time.monotonic() - self._started, int(rss)))
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval) and self._sample():
            pass

    def __enter__(self) -> MemorySampler:
        self._started = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def peak(self) -> int:
        return max((rss for _, rss in self.samples), default=0)

    @property
    def last(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def at(self, seconds: float) -> int:
        """The first sample taken at or after `seconds` into the run."""
        return next((rss for t, rss in self.samples if t >= seconds), self.last)

    def as_dict(self) -> dict[str, float]:
        before = self.samples[0][1] if self.samples else 0
        return {
            "rss_before_mib": mib(before),
            "rss_peak_mib": mib(self.peak),
            "rss_after_mib": mib(self.last),
            "rss_peak_delta_mib": mib(max(0, self.peak - before)),
        }


def peak_memory(interval: float = 0.02) -> MemorySampler:
    """This process's memory before a block, at its peak while the block runs, and after it."""
    return MemorySampler(interval=interval)


def mib(size: int) -> float:
    return round(size / 2**20, 1)


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages: other processes on the machine skew every latency here."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


CPU_FEATURES = {
    "avx2": "AVX2",
    "avx512f": "AVX-512",
    "avx512_bf16": "AVX512-BF16",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_bf16": "AMX-BF16",
    "amx_int8": "AMX-INT8",
}


def cpu_features() -> list[str]:
    """The CPU's vector and matrix extensions that decide the reader's speed: bf16 units make bf16 fast;
    VNNI/AMX-INT8 make int8 fast; without either, fp32 is what there is."""
    flags = cpu_flags()
    return [name for flag, name in CPU_FEATURES.items() if flag in flags]


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
        "cpu_features": cpu_features(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_at_start": [round(x, 2) for x in load],
    }
