"""Threads, seeds and random-generator state for reproducible, resumable runs."""
from __future__ import annotations

import ctypes
import logging
import os
import random
from typing import Any, Dict, Optional

import numpy as np
import paddle

__all__ = ["available_cpus", "cpu_info", "set_num_threads", "get_num_threads", "retain_freed_memory",
           "select_mkl_kernels", "seed_everything", "get_rng_state", "set_rng_state"]

_logger = logging.getLogger(__name__)
_num_threads: Optional[int] = None  # what set_num_threads last set


def available_cpus() -> int:
    """CPU cores this process may run on (respects affinity masks and container cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_num_threads(n: Optional[int] = None) -> int:
    """Set Paddle's intra-op CPU threads (all available cores by default); returns the count.

    Paddle sets ``OMP_NUM_THREADS=1`` at import when it is unset, so without this call CPU
    training and inference use one core.
    """
    global _num_threads
    n = available_cpus() if n is None else int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    paddle.base.core.set_num_threads(n)
    _num_threads = n
    return n


def get_num_threads() -> int:
    """The count last given to :func:`set_num_threads`; before any call, ``OMP_NUM_THREADS``
    (which Paddle sets to 1 at import when it is unset). pimm's native kernels use it."""
    if _num_threads is not None:
        return _num_threads
    try:
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "1")))
    except ValueError:
        return 1


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1


def retain_freed_memory() -> bool:
    """Make the C allocator keep freed memory for reuse instead of returning it to the system.

    Paddle allocates CPU tensors with ``malloc``. glibc serves large blocks with ``mmap`` and
    unmaps them when freed, so every new activation or gradient tensor is page-faulted in again:
    on 2 cores that made element-wise ops (batch norm, activations, additions) 5-10x slower than
    their kernels, and dygraph training about twice as slow (docs/BENCHMARKS.md). After this call
    blocks below 2 GiB come from the heap and freed memory stays there, so the resident size
    stays at its high-water mark instead of shrinking between steps; the peak is unchanged.
    Returns False (and changes nothing) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _INT_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))


_MKL_CPU_TYPE = "MKL_DEBUG_CPU_TYPE"
_MKL_AVX2 = "5"


def cpu_info() -> Dict[str, str]:
    """The first CPU's fields in /proc/cpuinfo (``vendor_id``, ``model name``, ``flags``, ...);
    empty off Linux."""
    info: Dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as lines:
            for line in lines:
                if not line.strip():
                    if info:  # the first processor's block has ended
                        break
                    continue
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def select_mkl_kernels() -> bool:
    """Let MKL run its AVX2 kernels on AMD CPUs; returns whether they are selected.

    Paddle's CPU wheel does its matrix products (linear layers, 1x1 convolutions, the GEMMs of
    every other convolution) in the MKL it ships (mklml), whose dispatcher gives CPUs of other
    vendors than Intel its generic SSE kernels. On this project's AMD EPYC machine that made
    Paddle's GEMMs 2.5-5x slower than with the AVX2 kernels the CPU supports, and the retraining
    step of net 287 1.75x slower (docs/BENCHMARKS.md). That MKL build honours
    ``MKL_DEBUG_CPU_TYPE=5``, which selects the AVX2 kernels; this sets it where the CPU is AMD's
    and has AVX2 and FMA, unless the variable is set already (a user's choice stays). MKL reads it
    at its first call, so call this before any matrix product of the process (the engines and
    the benchmark do it when they start); results equal the generic kernels' up to float32
    rounding.
    """
    if os.environ.get(_MKL_CPU_TYPE) is not None:
        return os.environ[_MKL_CPU_TYPE] == _MKL_AVX2
    info = cpu_info()
    flags = set(info.get("flags", "").split())
    if info.get("vendor_id") != "AuthenticAMD" or not {"avx2", "fma"} <= flags:
        return False
    os.environ[_MKL_CPU_TYPE] = _MKL_AVX2
    return True


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and Paddle's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    paddle.seed(seed)


def _gpu_count() -> int:
    return paddle.device.cuda.device_count() if paddle.is_compiled_with_cuda() else 0


def get_rng_state() -> Dict[str, Any]:
    """The state of every generator a training step may draw from: Python ``random``, NumPy's
    global generator, Paddle's CPU generator and, on GPU builds, each GPU's generator. The result
    pickles (``paddle.save``), e.g. as extra state in a checkpoint."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "paddle_cpu": paddle.get_rng_state("cpu"),
    }
    if _gpu_count():
        state["paddle_gpu"] = paddle.get_rng_state("gpu")
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore :func:`get_rng_state`'s result, so a resumed run draws the same numbers."""
    missing = [k for k in ("python", "numpy", "paddle_cpu") if k not in state]
    if missing:
        raise ValueError(f"set_rng_state: the state lacks {missing}; pass get_rng_state()'s result")
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    paddle.set_rng_state(state["paddle_cpu"], "cpu")
    gpu_state = state.get("paddle_gpu")
    if gpu_state is None:
        return
    if len(gpu_state) == _gpu_count():
        paddle.set_rng_state(gpu_state, "gpu")
    else:
        # resuming on another GPU count is legitimate; only bit-exact replay is lost
        _logger.warning(
            "set_rng_state: saved %d GPU generator states but %d GPUs are visible; the GPU "
            "random streams start fresh", len(gpu_state), _gpu_count(),
        )
