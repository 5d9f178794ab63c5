"""Native CPU kernels for ops whose Paddle CPU kernels are slow, compiled on first use.

The C sources in ``pimm/layers/csrc`` are built with the system C compiler (``$CC``, else ``cc``)
into a shared library cached under ``$PIMM_CACHE_DIR`` (default ``~/.cache/pimm``), keyed by the
sources, the compiler and the CPU, and loaded with ctypes: no Paddle headers, a build of about a
second, nothing at import time. Where no compiler works, :func:`native_library` returns None and
the layers keep Paddle's kernels (a warning says so once). ``PIMM_NATIVE_KERNELS=0`` turns the
native kernels off.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from typing import List, Optional

__all__ = ["native_library", "native_kernels_enabled", "kernel_threads"]

_SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
_SOURCES = ("depthwise_conv2d.c",)
_LIBRARY_NAME = "libpimm_native.so"
_COMPILE_FLAGS = ["-O3", "-std=c11", "-fPIC", "-fopenmp"]

_lock = threading.Lock()
_loaded: Optional[ctypes.CDLL] = None
_attempted = False

_i64 = ctypes.c_int64
_ptr = ctypes.c_void_p
_SIGNATURES = {
    "pimm_depthwise_conv2d_forward": [_ptr, _ptr, _ptr] + [_i64] * 12 + [ctypes.c_int],
    "pimm_depthwise_conv2d_backward": [_ptr] * 5 + [_i64] * 12 + [ctypes.c_int],
}


def native_kernels_enabled() -> bool:
    """False when ``PIMM_NATIVE_KERNELS`` is set to 0/false/off, or off Linux."""
    flag = os.environ.get("PIMM_NATIVE_KERNELS", "1").strip().lower()
    return flag not in ("0", "false", "off", "no") and platform.system() == "Linux"


def kernel_threads() -> int:
    """The intra-op thread count the native kernels use: what ``pimm.utils.set_num_threads`` set
    (Paddle's own CPU thread setting)."""
    from pimm.utils.runtime import get_num_threads

    return get_num_threads()


def _cache_root() -> str:
    configured = os.environ.get("PIMM_CACHE_DIR")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pimm")


def _cpu_signature() -> str:
    # -march=native code must not run on another CPU sharing the cache (a cluster's home folder)
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            lines = [line for line in info if line.startswith(("model name", "flags"))]
        flags = "".join(sorted(set(lines)))
    except OSError:
        pass
    return platform.machine() + flags


def _compiler() -> Optional[List[str]]:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return [cc] if cc else None


def _compiler_version(cc: List[str]) -> str:
    try:
        return subprocess.run(cc + ["--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _paddle_openmp_runtime() -> Optional[str]:
    """The OpenMP runtime Paddle's CPU kernels and MKL run on (libiomp5), when the wheel ships
    it. The kernels link to it rather than to the compiler's libgomp, so their parallel regions
    reuse Paddle's worker threads instead of starting a second pool that spin-waits beside them
    (training steps of nets 14 and 604 were 5-8% slower on 2 cores with libgomp)."""
    import paddle

    path = os.path.join(os.path.dirname(paddle.__file__), "libs", "libiomp5.so")
    return path if os.path.isfile(path) else None


def _run(command: List[str]) -> Optional[str]:
    """Run a compiler command; returns its last error line, or None on success."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else f"{command[0]} exited with {result.returncode}"


def _build(cc: List[str], target: str) -> Optional[str]:
    """Compile into ``target`` (atomically); returns an error message or None."""
    folder = os.path.dirname(target)
    os.makedirs(folder, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".build-", dir=folder)
    runtime = _paddle_openmp_runtime()
    link = [runtime, "-Wl,-rpath," + os.path.dirname(runtime)] if runtime else ["-fopenmp"]
    library = os.path.join(scratch, _LIBRARY_NAME)
    error = None
    try:
        # -march=native first (AVX2/AVX-512 loops); plain -O3 where the compiler refuses it
        for arch in (["-march=native"], []):
            objects = []
            for name in _SOURCES:
                objects.append(os.path.join(scratch, name + ".o"))
                error = _run(cc + _COMPILE_FLAGS + arch + ["-c", os.path.join(_SOURCE_DIR, name),
                                                          "-o", objects[-1]])
                if error:
                    break
            if not error:
                error = _run(cc + ["-shared"] + objects + ["-o", library] + link)
            if not error:
                os.replace(library, target)
                return None
        return error
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _load(path: str) -> ctypes.CDLL:
    library = ctypes.CDLL(path)
    for name, argtypes in _SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = None
    return library


def native_library() -> Optional[ctypes.CDLL]:
    """The native kernels, built on the first call of the process (about a second with gcc, once
    per machine thanks to the cache); None where they are disabled or cannot be built."""
    global _loaded, _attempted
    if _attempted:
        return _loaded
    with _lock:
        if _attempted:
            return _loaded
        _attempted = True
        if not native_kernels_enabled():
            return None
        cc = _compiler()
        if cc is None:
            warnings.warn("pimm: no C compiler found (set CC): using Paddle's CPU kernels for "
                          "depthwise convolutions, which are several times slower")
            return None
        digest = hashlib.sha256()
        for name in _SOURCES:
            with open(os.path.join(_SOURCE_DIR, name), "rb") as source:
                digest.update(source.read())
        for part in (" ".join(cc + _COMPILE_FLAGS), _compiler_version(cc), _cpu_signature(),
                     _paddle_openmp_runtime() or "libgomp"):
            digest.update(part.encode())
        target = os.path.join(_cache_root(), "native", digest.hexdigest()[:20], _LIBRARY_NAME)
        error = None
        if not os.path.isfile(target):
            try:
                error = _build(cc, target)
            except OSError as err:  # cache folder not writable
                error = str(err)
        if error is not None:
            warnings.warn(f"pimm: could not build the native CPU kernels ({error}); using Paddle's "
                          "CPU kernels for depthwise convolutions, which are several times slower")
            return None
        try:
            _loaded = _load(target)
        except (OSError, AttributeError) as err:
            warnings.warn(f"pimm: could not load {target} ({err}); using Paddle's CPU kernels")
        return _loaded
