"""Helpers for the .pdparams reader's tests: comparing with paddle.load, malicious payloads and
files that claim more data than they hold, all built here with the standard pickler."""
from __future__ import annotations

import os
import pickle
import struct
import subprocess
from typing import Any

import numpy as np
import paddle

from pimm.models import read_paddle_checkpoint


def assert_same_as_paddle_load(path: str) -> None:
    """``read_paddle_checkpoint(path)`` equals ``paddle.load(path)``: the same types all the way
    down, tensor names, dtypes and values (``return_numpy`` too)."""
    for return_numpy in (False, True):
        _assert_same(read_paddle_checkpoint(path, return_numpy=return_numpy),
                     paddle.load(path, return_numpy=return_numpy), "checkpoint")


def _assert_same(ours: Any, theirs: Any, where: str) -> None:
    assert type(ours) is type(theirs), f"{where}: {type(ours).__name__} != {type(theirs).__name__}"
    if isinstance(ours, dict):
        assert list(ours) == list(theirs), where
        for key in ours:
            _assert_same(ours[key], theirs[key], f"{where}[{key!r}]")
    elif isinstance(ours, (list, tuple)):
        assert len(ours) == len(theirs), where
        for index, (a, b) in enumerate(zip(ours, theirs)):
            _assert_same(a, b, f"{where}[{index}]")
    elif isinstance(ours, paddle.Tensor):
        assert (ours.name, ours.dtype, ours.shape, ours.stop_gradient) == \
            (theirs.name, theirs.dtype, theirs.shape, theirs.stop_gradient), where
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=where)
    elif isinstance(ours, np.ndarray):
        assert (ours.dtype, ours.shape, ours.flags.writeable, ours.flags.f_contiguous) == \
            (theirs.dtype, theirs.shape, theirs.flags.writeable, theirs.flags.f_contiguous), where
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    elif isinstance(ours, paddle.base.core.GeneratorState):
        assert ours.__getstate__() == theirs.__getstate__(), where
    elif isinstance(ours, float) and ours != ours:
        assert theirs != theirs, where  # NaN
    else:
        assert ours == theirs, f"{where}: {ours!r} != {theirs!r}"


class Reduce:
    """Pickles as ``func(*args)`` (then ``state`` for BUILD): how payloads and forged records
    are written."""

    def __init__(self, func: Any, *args: Any, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def payloads(marker: str) -> dict[str, Reduce]:
    """Each creates the file ``marker`` when unpickled by an unrestricted unpickler."""
    return {
        "posix.system": Reduce(os.system, f"touch '{marker}'"),
        "builtins.eval": Reduce(eval, f"open({marker!r}, 'w').close()"),
        "subprocess.check_call": Reduce(subprocess.check_call, ["touch", marker]),
        "builtins.exec": Reduce(exec, f"open({marker!r}, 'w').close()"),
    }


_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # numpy._core.multiarray._reconstruct, any numpy


def forged_array(shape: tuple, dtype: str, data: bytes) -> Reduce:
    """An ndarray record as numpy writes it, with whatever shape and data the caller likes."""
    return Reduce(_RECONSTRUCT, np.ndarray, (0,), b"b",
                  state=(1, shape, np.dtype(dtype), False, data))


def saved_tensor(name: str, array: Any) -> Reduce:
    """A tensor record as paddle.save writes it: ``tuple((name, array))``."""
    return Reduce(tuple, (name, array))


def huge_bytes_pickle(claimed: int) -> bytes:
    """A protocol-4 pickle whose BINBYTES8 claims ``claimed`` bytes and holds 16."""
    return b"\x80\x04\x8e" + struct.pack("<Q", claimed) + b"x" * 16 + b"."


def write_pickle(path: str, obj: Any) -> None:
    with open(path, "wb") as file:
        pickle.dump(obj, file, protocol=4)
