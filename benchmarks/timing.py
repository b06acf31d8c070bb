"""Interleaved, repeated timing and a description of the machine it ran on."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

Workload = Callable[[], float]
"""One timed unit of work; returns how much work it did (poison-iterations, images, trials)."""


@dataclass
class Measured:
    """Throughputs (work per second) of each contender, one per repeat, in the same order."""

    rates: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.rates[name])

    def ratio(self, name: str, other: str) -> float:
        """Median over repeats of the paired ratio ``name / other`` (robust to drifting load)."""
        pairs = zip(self.rates[name], self.rates[other], strict=True)
        return statistics.median(a / b for a, b in pairs)


def interleaved(
    workloads: dict[str, Workload], repeats: int, warmup: int = 1, desc: str = ""
) -> Measured:
    """Run every workload once per round, ``warmup`` untimed rounds then ``repeats`` timed ones.

    Rounds rotate the order of the contenders, so none always runs first (or after the same one).
    """
    measured = Measured({name: [] for name in workloads})
    names = list(workloads)
    for round_index in tqdm(range(warmup + repeats), desc=desc, leave=False):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            work = workloads[name]()
            elapsed = time.perf_counter() - started
            if round_index >= warmup:
                measured.rates[name].append(work / elapsed)
    return measured


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, object]:
    """What the figures depend on: CPU, threads, torch build, GPU."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
        "host": platform.node(),
    }
