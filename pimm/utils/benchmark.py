"""Timing of training and inference steps: warm-up, timed steps, throughput, peak memory.

Framework-level pieces of ``tools/benchmark.py``: what a step is (a forward pass, a training step,
a predictor call) is the caller's business; this module times it fairly. On GPU every step ends
with a device synchronisation, so the clock measures finished work rather than queued kernels;
Paddle's CPU kernels run synchronously.
"""
from __future__ import annotations

import glob
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional

import paddle

from .runtime import available_cpus, cpu_info

__all__ = ["StepTimes", "time_steps", "peak_rss_mb", "child_pids", "children_peak_rss_mb",
           "children_cpu_seconds", "synchronize", "machine_description"]


def synchronize() -> None:
    """Wait for the current device's queued work (a no-op on CPU)."""
    if paddle.is_compiled_with_cuda() and paddle.device.get_device().startswith("gpu"):
        paddle.device.synchronize()


def peak_rss_mb() -> float:
    """The largest resident set size this process has had so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def child_pids() -> List[int]:
    """The live child processes of this process (of any of its threads); empty off Linux."""
    pids = set()
    for path in glob.glob(f"/proc/{os.getpid()}/task/*/children"):
        try:
            with open(path, encoding="utf-8") as children:
                pids.update(int(pid) for pid in children.read().split())
        except OSError:  # the thread ended meanwhile
            continue
    return sorted(pids)


def children_peak_rss_mb(pids: Optional[Iterable[int]] = None) -> List[float]:
    """The peak resident set size (VmHWM) of each live child process (e.g. data-loader workers),
    or of those of ``pids``, in MiB; empty where /proc does not tell (off Linux)."""
    peaks = []
    for pid in child_pids() if pids is None else pids:
        try:
            with open(f"/proc/{pid}/status", encoding="utf-8") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peaks.append(int(line.split()[1]) / 1024.0)  # kB
                        break
        except OSError:  # the child exited meanwhile
            continue
    return peaks


def children_cpu_seconds(pids: Optional[Iterable[int]] = None) -> Dict[int, float]:
    """The CPU time (user + system seconds) each live child process (or each of ``pids``) has
    used so far, by pid; empty where /proc does not tell. Unlike wall-clock time it does not grow when other processes
    share the cores, so it says what a data-loader worker costs per image on a busy machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in child_pids() if pids is None else pids:
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
                # after "pid (comm) ": utime and stime are fields 14 and 15 of the whole line
                fields = stat.read().rsplit(")", 1)[1].split()
            used[pid] = (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, IndexError, ValueError):  # the child exited meanwhile
            continue
    return used


@dataclass
class StepTimes:
    """Wall-clock seconds of each timed step (warm-up steps excluded)."""

    seconds: List[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)

    def images_per_s(self, batch_size: int) -> float:
        """Throughput over all timed steps (total images / total time)."""
        return batch_size * len(self.seconds) / sum(self.seconds)

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def time_steps(step: Callable[[], Any], steps: int, warmup: int = 2,
               on_step_end: Optional[Callable[[], None]] = None) -> StepTimes:
    """Run ``step()`` ``warmup`` times untimed, then ``steps`` times timed, one clock per step.

    ``on_step_end`` runs inside each timed interval after the step (by default the device
    synchronisation); pass something that also forces a lazily evaluated result if the step
    leaves work pending.
    """
    if steps < 1:
        raise ValueError(f"time_steps: steps must be >= 1, got {steps}")
    if warmup < 0:
        raise ValueError(f"time_steps: warmup must be >= 0, got {warmup}")
    finish = on_step_end or synchronize
    for _ in range(warmup):
        step()
        finish()
    times = StepTimes()
    for _ in range(steps):
        start = time.perf_counter()
        step()
        finish()
        times.seconds.append(time.perf_counter() - start)
    return times


def _cpu_model() -> str:
    return cpu_info().get("model name") or platform.processor() or platform.machine()


def machine_description() -> Dict[str, Any]:
    """The facts a benchmark figure depends on: CPU model and cores, GPU (if used), Paddle build."""
    device = paddle.device.get_device()
    gpu = None
    if device.startswith("gpu"):
        gpu = paddle.device.cuda.get_device_name()
    return {
        "cpu": _cpu_model(),
        "cpu_cores": available_cpus(),
        "device": device,
        "gpu": gpu,
        "paddle": paddle.__version__,
        "python": platform.python_version(),
    }
