"""Native CPU kernels for ops whose Paddle CPU kernels are slow, built at an explicit moment.

The C sources in ``pimm/layers/csrc`` are built with the system C compiler (``$CC``, else ``cc``)
into a shared library cached under ``$PIMM_CACHE_DIR`` (default ``~/.cache/pimm``), keyed by the
sources, the compiler and the CPU, and loaded with ctypes: no Paddle headers, a build of about a
second. Nothing happens at import time or inside a forward pass: :func:`build_native_kernels`
builds (or loads from the cache) and logs the outcome; the engines call it when a run starts, and
``python -m pimm.layers.build_native`` does it from a shell. Until it has succeeded in the process,
:func:`native_library` is None and the layers use Paddle's kernels; they do so too where no
compiler works. ``PIMM_NATIVE_KERNELS=0`` turns the native kernels off.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import time
from typing import List, Optional, Tuple

from pimm.utils.runtime import cpu_info, get_num_threads

__all__ = ["build_native_kernels", "native_library", "native_kernels_enabled", "kernel_threads"]

_SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "csrc")
_SOURCES = ("depthwise_conv2d.c",)
_LIBRARY_NAME = "libpimm_native.so"
_COMPILE_FLAGS = ["-O3", "-std=c11", "-fPIC", "-fopenmp"]

_lock = threading.Lock()
_loaded: Optional[ctypes.CDLL] = None
_outcome: Optional[Tuple[int, str]] = None  # (log level, message) of the process's one attempt
_FALLBACK = "depthwise convolutions run on Paddle's CPU kernel"

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
    return get_num_threads()


def _cache_root() -> str:
    configured = os.environ.get("PIMM_CACHE_DIR")
    if configured:
        return configured
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pimm")


def _cpu_signature() -> str:
    # -march=native code must not run on another CPU sharing the cache (a cluster's home folder)
    info = cpu_info()
    return platform.machine() + info.get("model name", "") + info.get("flags", "")


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
    """The native kernels once :func:`build_native_kernels` has loaded them in this process,
    else None. Never builds anything."""
    return _loaded


def _library_path(cc: List[str]) -> str:
    digest = hashlib.sha256()
    for name in _SOURCES:
        with open(os.path.join(_SOURCE_DIR, name), "rb") as source:
            digest.update(source.read())
    for part in (" ".join(cc + _COMPILE_FLAGS), _compiler_version(cc), _cpu_signature(),
                 _paddle_openmp_runtime() or "libgomp"):
        digest.update(part.encode())
    return os.path.join(_cache_root(), "native", digest.hexdigest()[:20], _LIBRARY_NAME)


def _build_or_load() -> Tuple[int, str]:
    """Load the kernels into ``_loaded``, building them first when the cache lacks them; returns
    the log level and message of the outcome."""
    global _loaded
    if not native_kernels_enabled():
        return logging.INFO, f"unavailable (PIMM_NATIVE_KERNELS=0 or not Linux): {_FALLBACK}"
    cc = _compiler()
    if cc is None:
        return logging.WARNING, (f"unavailable (no C compiler found; set CC): {_FALLBACK}, "
                                 "several times slower")
    target = _library_path(cc)
    how = "loaded from the cache"
    if not os.path.isfile(target):
        start = time.perf_counter()
        try:
            error = _build(cc, target)
        except OSError as err:  # cache folder not writable
            error = str(err)
        if error is not None:
            return logging.WARNING, (f"unavailable (could not build them: {error}): {_FALLBACK}, "
                                     "several times slower")
        how = f"built in {time.perf_counter() - start:.1f} s and cached"
    try:
        _loaded = _load(target)
    except (OSError, AttributeError) as err:
        return logging.WARNING, f"unavailable (could not load {target}: {err}): {_FALLBACK}"
    return logging.INFO, f"{how} ({target})"


def build_native_kernels(logger: Optional[logging.Logger] = None) -> bool:
    """Build the native kernels, or load them from the cache, so that the layers use them from
    now on; True when they are loaded. The first call of the process does the work (about a
    second with gcc, once per machine thanks to the cache); every call logs one line on
    ``logger`` (default: this module's): built, loaded from the cache, or unavailable and why."""
    global _outcome
    with _lock:
        if _outcome is None:
            _outcome = _build_or_load()
        level, message = _outcome
    (logger or logging.getLogger(__name__)).log(level, "native CPU kernels: %s", message)
    return _loaded is not None
