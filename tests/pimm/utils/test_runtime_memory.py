"""pimm.utils.retain_freed_memory and get_num_threads (runtime settings that speed up CPU runs)."""
import os
import subprocess
import sys

import pytest

from pimm.utils import get_num_threads, set_num_threads

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# page faults while allocating, filling and freeing a 160 MB buffer three times
_FAULTS = r"""
import resource, sys
import numpy as np
if sys.argv[1] == "retain":
    from pimm.utils import retain_freed_memory
    assert retain_freed_memory()
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = np.ones(40 * 2**20, np.float32)
    del block
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def _faults(mode: str):
    out = subprocess.run([sys.executable, "-c", _FAULTS, mode], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True).stdout
    return [int(v) for v in out.split()]


@pytest.mark.e2e  # measures fresh Python processes
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc tuning")
def test_freed_memory_is_reused_without_page_faults():
    default, retained = _faults("default"), _faults("retain")
    # by default the buffer is unmapped when freed and faulted in again every time
    assert min(default) > 20
    # retained: faulted in once, then served from memory the process kept
    assert retained[0] > 20 and retained[1:] == [0, 0]


def test_get_num_threads_follows_set_num_threads():
    before = get_num_threads()
    try:
        assert set_num_threads(1) == 1 and get_num_threads() == 1
        assert set_num_threads(2) == 2 and get_num_threads() == 2
    finally:
        set_num_threads(before)


_MKL = r"""
import os, sys
import numpy as np
import paddle
from pimm.utils import select_mkl_kernels
selected = select_mkl_kernels()
rng = np.random.default_rng(0)
a, b = rng.standard_normal((96, 3000)), rng.standard_normal((3000, 24))
product = paddle.matmul(paddle.to_tensor(a, "float32"), paddle.to_tensor(b, "float32")).numpy()
error = float(np.abs(product - a @ b).max() / np.abs(a @ b).max())
print(selected, os.environ.get("MKL_DEBUG_CPU_TYPE"), error)
"""


def _select_mkl(env_value=None):
    env = {k: v for k, v in os.environ.items() if k != "MKL_DEBUG_CPU_TYPE"}
    if env_value is not None:
        env["MKL_DEBUG_CPU_TYPE"] = env_value
    out = subprocess.run([sys.executable, "-c", _MKL], cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True, env=env).stdout.split()
    return out[0] == "True", out[1], float(out[2])


def _amd_with_avx2() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            text = info.read()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "").split()
    return "AuthenticAMD" in text and "avx2" in flags and "fma" in flags


@pytest.mark.e2e  # fresh Python processes: MKL reads the variable once
def test_select_mkl_kernels_on_amd_only_and_never_over_the_users_choice():
    selected, value, error = _select_mkl()
    assert selected == _amd_with_avx2()
    assert value == ("5" if selected else "None")
    assert error < 1e-5  # the products are right on whichever kernels run
    selected, value, _ = _select_mkl("2")
    assert not selected and value == "2"
