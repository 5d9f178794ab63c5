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
