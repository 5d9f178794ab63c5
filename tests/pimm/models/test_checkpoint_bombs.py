"""Tiny files that claim huge data: both checkpoint readers refuse them with a clear error, and
their memory stays near the size of the file (measured in a fresh process)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import paddle
import pytest

from tests.pimm.models.paddle_files import (forged_array, huge_bytes_pickle, saved_tensor,
                                            write_pickle)
from tests.pimm.models.torchfile_writer import (Storage, Tensor, dumps_object, save_legacy,
                                                save_zip, tensor)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MIB = 1 << 20

# Reads each file given on the command line; prints, per file, the error (if any) and the peak of
# Python-tracked allocations (numpy's included) and the growth of the peak RSS while reading.
_MEASURE = r"""
import json, resource, sys, tracemalloc
from pimm.models import CheckpointReadError, read_checkpoint_file
results = {}
tracemalloc.start()
for path in sys.argv[1:]:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.reset_peak()
    try:
        read_checkpoint_file(path)
        error = None
    except CheckpointReadError as err:
        error = str(err)
    peak = tracemalloc.get_traced_memory()[1]
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    results[path] = {"error": error, "peak": peak, "rss_growth": rss_growth}
print(json.dumps(results))
"""


class _ClaimedStorage(Storage):
    """A float storage that declares ``numel`` elements whatever data it is given."""

    def __init__(self, numel: int, data: np.ndarray) -> None:
        super().__init__("FloatStorage", data)
        self.claimed = numel

    @property
    def numel(self) -> int:
        return self.claimed


def _zip_bomb(path: str, elements: int) -> None:
    """A torch zip whose storage record deflates ``elements`` zero floats to a few hundred KiB."""
    storage = _ClaimedStorage(elements, np.zeros(1, np.float32))
    side = int(elements ** 0.5)
    pickled = dumps_object({"w": Tensor(storage, 0, (side, side), (side, 1))}, legacy=False)
    zeros = bytes(MIB)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickled)
        info = zipfile.ZipInfo(f"archive/data/{storage.key}")
        info.compress_type = zipfile.ZIP_DEFLATED
        with archive.open(info, "w") as record:
            for _ in range(elements * 4 // MIB):
                record.write(zeros)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bombs")
    files = {name: str(folder / name) for name in (
        "stride0.pth.tar", "zipbomb.pth", "header.pth.tar", "shape.pdparams", "bytes.pdparams",
        "aliased.pdparams", "genuine.pth", "genuine.pdparams")}
    # the 347-byte legacy file: one float viewed as a 16384 x 16384 tensor
    one = Storage("FloatStorage", np.ones(1, np.float32))
    save_legacy({"w": Tensor(one, 0, (16384, 16384), (0, 0))}, files["stride0.pth.tar"])
    _zip_bomb(files["zipbomb.pth"], 1 << 26)  # a 256 MiB record
    claimed = _ClaimedStorage(10 ** 12, np.ones(4, np.float32))
    save_legacy({"w": Tensor(claimed, 0, (4,), (1,))}, files["header.pth.tar"])
    write_pickle(files["shape.pdparams"],
                 {"w": saved_tensor("w", forged_array((1 << 15, 1 << 15), "f4", b"\0" * 64))})
    with open(files["bytes.pdparams"], "wb") as file:
        file.write(huge_bytes_pickle(1 << 30))
    shared = np.zeros(1 << 16, np.float32)  # 256 KiB behind 1000 tensors: 256 MiB
    write_pickle(files["aliased.pdparams"],
                 {f"w{i}": saved_tensor(f"w{i}", shared) for i in range(1000)})
    # controls: real 16 MiB checkpoints read within a small multiple of their size
    weights = np.random.default_rng(0).normal(size=(4, MIB)).astype(np.float32)
    save_zip({"state_dict": {"w": tensor(weights)}}, files["genuine.pth"])
    paddle.save({"state_dict": {"w": paddle.to_tensor(weights)}}, files["genuine.pdparams"])
    return files


@pytest.mark.e2e
def test_bombs_are_refused_within_memory_near_their_size(bombs):
    sizes = {name: os.path.getsize(path) for name, path in bombs.items()}
    assert sizes["stride0.pth.tar"] < 400 and sizes["zipbomb.pth"] < MIB
    assert max(size for name, size in sizes.items() if not name.startswith("genuine")) < MIB
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *bombs.values()], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, GLOG_minloglevel="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {name: json.loads(proc.stdout.splitlines()[-1])[path]
               for name, path in bombs.items()}

    expected_errors = {
        "stride0.pth.tar": r"a tensor of size \[16384, 16384\] would take 1.0 GiB, more than a "
                           r"file of \d+ bytes can hold",
        "zipbomb.pth": r"record 'archive/data/\d+' would take 256.0 MiB, more than a file of",
        "header.pth.tar": r"the file ends inside the data of storage '\d+' \(16 of "
                          r"4000000000000 bytes present\)",
        "shape.pdparams": r"an array of shape \[32768, 32768\] and dtype float32 needs "
                          r"4294967296 bytes but its record holds 64",
        "bytes.pdparams": r"a BINBYTES8 record claims 1.0 GiB but the file has only 17 bytes left",
        "aliased.pdparams": r"tensor 'w\d+' would take 256.0 KiB, more than a file of",
    }
    for name, pattern in expected_errors.items():
        error = results[name]["error"]
        assert error is not None and bombs[name] in error, (name, error)
        assert re.search(pattern, error), (name, error)
        assert results[name]["peak"] < 4 * MIB, (name, results[name])
        assert results[name]["rss_growth"] < 64 * MIB, (name, results[name])
    for name in ("genuine.pth", "genuine.pdparams"):
        assert results[name]["error"] is None
        assert results[name]["peak"] < 3 * sizes[name], (name, results[name], sizes[name])
