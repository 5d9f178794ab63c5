"""Read ``.pdparams`` files (``paddle.save`` pickles) without running anything the file asks for.

``paddle.load`` unpickles without restriction, so a ``.pdparams`` from elsewhere can run any code
while it is read. This reader resolves only the globals ``paddle.save`` itself writes for the
checkpoints of this project (model/EMA/optimizer state dicts, LR scheduler and scheduler state,
the prioritized board's arrays, the path sampler's numpy generator state, RNG states, the run
config as a plain dict, numpy scalars):

* ``builtins.tuple``: how ``paddle.save`` reduces a Tensor, ``tuple((name, ndarray))``;
* ``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``,
  ``numpy._core.multiarray.scalar`` (and their numpy < 2 ``numpy.core`` spellings): arrays and
  scalars of boolean, integer, float and complex dtypes, never object arrays;
* ``collections.OrderedDict``; ``_codecs.encode`` and ``builtins.bytes``, which protocol 2 uses
  for byte strings;
* Paddle's ``GeneratorState`` (``paddle.get_rng_state()``), rebuilt from validated numbers.

Each is replaced by a local stand-in that checks its arguments; any other global stops the read
with :class:`UnsafeCheckpointError` before it is called. Array sizes must match the bytes the
file holds, and what the reader builds is bounded by a small multiple of the file's size.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any

import numpy as np
import paddle

from .restricted_pickle import (READ_ERRORS, ArgsNamespace, CheckpointReadError, Malformed, MemoryBudget,
                                RefusedGlobal, RestrictedUnpickler, UnsafeCheckpointError,
                                materialize, refusal_message)

__all__ = ["PaddleCheckpointError", "UnsafeCheckpointError", "read_paddle_checkpoint"]

# paddle.save writes pickle protocols 2 to 4, which all begin with the PROTO opcode.
_PROTO = b"\x80"
# paddle.save's bookkeeping entries in a top-level state dict (its "legacy" state-dict format).
_NAME_TABLE = "StructuredToParameterName@@"
_SPLIT_PARAMETERS = "UnpackBigParamInfor@@"
# numpy dtype strings as numpy pickles them; object, string and structured dtypes are refused.
_DTYPES = frozenset({"b1", "i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8", "f2", "f4", "f8",
                     "c8", "c16"})
# What paddle.get_rng_state() returns a list of; pickled under its class's own module and name.
_GENERATOR_STATE = paddle.base.core.GeneratorState
# The engine state of a CPU generator is ~6 400 characters.
_MAX_GENERATOR_STATE = 1 << 16


class PaddleCheckpointError(CheckpointReadError):
    """The file is not a ``paddle.save`` checkpoint this reader can load (corrupt, truncated,
    forged sizes, or another format)."""


# --------------------------------------------------------------------------------------------
# Stand-ins built while unpickling; replaced by arrays, tensors and generator states afterwards.


class _Dtype:
    """``numpy.dtype(spec, align, copy)`` plus the byte order its pickled state sets."""

    __slots__ = ("dtype",)

    def __init__(self, spec: Any, align: Any = False, copy: Any = False) -> None:
        if spec not in _DTYPES:
            raise Malformed(f"unsupported array dtype {spec!r}: a checkpoint holds numbers only")
        self.dtype = np.dtype(spec)

    def __setstate__(self, state: Any) -> None:
        # (version, byte order, subarray, names, fields, elsize, alignment, flags) for plain dtypes
        if not (isinstance(state, tuple) and len(state) == 8 and state[1] in ("<", ">", "|", "=")
                and state[2:5] == (None, None, None)):
            raise Malformed(f"malformed dtype state {state!r:.80}")
        if state[1] in "<>":
            self.dtype = self.dtype.newbyteorder(state[1])


def _resolved_dtype(value: Any) -> np.dtype:
    if not isinstance(value, _Dtype):
        raise Malformed(f"{type(value).__name__} where an array dtype belongs")
    return value.dtype


class _NdarrayType:
    """What ``numpy.ndarray`` resolves to: only a marker for ``_reconstruct``'s first argument."""


_NDARRAY = _NdarrayType()


class _Array:
    """``numpy._core.multiarray._reconstruct(ndarray, (0,), b'b')``, filled by its state:
    a read-only view of the pickle's bytes until the reader copies it out. (A forged NEWOBJ can
    create it without ``__init__``, hence ``getattr``.)"""

    __slots__ = ("view",)

    def __init__(self, subtype: Any, shape: Any, dummy: Any) -> None:
        if subtype is not _NDARRAY:
            raise Malformed("an array record names a class other than numpy.ndarray")
        self.view: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if getattr(self, "view", None) is not None or not (isinstance(state, tuple)
                                                            and len(state) == 5):
            raise Malformed("malformed array state")
        _, shape, dtype, fortran, raw = state
        dtype = _resolved_dtype(dtype)
        if not (isinstance(shape, tuple) and all(_is_size(dim) for dim in shape)):
            raise Malformed(f"array shape {shape!r:.80} is not a tuple of non-negative integers")
        if not isinstance(raw, bytes):
            raise Malformed(f"array data is {type(raw).__name__}, not bytes")
        count = math.prod(shape)
        if count * dtype.itemsize != len(raw):
            raise Malformed(f"an array of shape {list(shape)} and dtype {dtype} needs "
                            f"{count * dtype.itemsize} bytes but its record holds {len(raw)}")
        flat = np.frombuffer(raw, dtype=dtype, count=count)
        self.view = flat.reshape(shape, order="F" if fortran is True else "C")

    def checked_view(self) -> np.ndarray:
        view = getattr(self, "view", None)
        if view is None:
            raise Malformed("an array record has no data")
        return view


class _Tensor:
    """``tuple((name, ndarray))``: how ``paddle.save`` writes a Tensor."""

    __slots__ = ("name", "array")

    def __init__(self, items: Any) -> None:
        if not (isinstance(items, tuple) and len(items) == 2 and isinstance(items[0], str)
                and isinstance(items[1], _Array)):
            raise Malformed("builtins.tuple is called with something other than a tensor's "
                            "(name, array)")
        self.name, self.array = items

    def __setstate__(self, state: Any) -> None:
        raise Malformed("a pickle instruction tried to modify a tensor")


class _Scalar:
    """``numpy._core.multiarray.scalar(dtype, data)``: a numpy scalar, built after reading."""

    __slots__ = ("value",)

    def __init__(self, dtype: Any, data: Any) -> None:
        dtype = _resolved_dtype(dtype)
        if not (isinstance(data, bytes) and len(data) == dtype.itemsize):
            raise Malformed(f"a {dtype} scalar record holds data of the wrong type or size")
        self.value = np.frombuffer(data, dtype=dtype)[0]

    def __setstate__(self, state: Any) -> None:
        raise Malformed("a pickle instruction tried to modify a scalar")


class _GeneratorState:
    """Paddle's ``GeneratorState``, kept as (device, seed, offset, engine state) until rebuilt.
    The unpickler creates it without calling ``__init__`` (NEWOBJ), then sets the state."""

    __slots__ = ("state",)

    def __setstate__(self, state: Any) -> None:
        if not (getattr(self, "state", None) is None and isinstance(state, tuple) and len(state) == 4
                and all(isinstance(v, int) and not isinstance(v, bool) for v in state[:3])
                and isinstance(state[3], list) and len(state[3]) <= _MAX_GENERATOR_STATE
                and all(type(c) is int and 0 <= c < 256 for c in state[3])):
            raise Malformed("malformed random generator state")
        self.state = state

    def rebuild(self) -> Any:
        state = getattr(self, "state", None)
        if state is None:
            raise Malformed("a random generator record has no state")
        generator_state = _GENERATOR_STATE.__new__(_GENERATOR_STATE)
        generator_state.__setstate__(state)
        return generator_state


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _latin1_bytes(text: Any, encoding: Any = "latin1") -> bytes:
    # protocol 2 writes bytes as _codecs.encode(str, "latin1")
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise Malformed("_codecs.encode is called with something other than latin-1 text")
    return text.encode("latin-1")


def _empty_bytes() -> bytes:
    return b""  # protocol 2 writes b"" as bytes()


def _build_allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("argparse", "Namespace"): ArgsNamespace,
        ("builtins", "tuple"): _Tensor,
        ("builtins", "bytes"): _empty_bytes,
        ("_codecs", "encode"): _latin1_bytes,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): _Dtype,
        (_GENERATOR_STATE.__module__, _GENERATOR_STATE.__qualname__): _GeneratorState,
    }
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        allowed[(module, "_reconstruct")] = _Array
        allowed[(module, "scalar")] = _Scalar
    return allowed


_ALLOWED_GLOBALS = _build_allowed_globals()


# --------------------------------------------------------------------------------------------
# Reading


def _native(view: np.ndarray) -> np.ndarray:
    # numpy's own unpickling turns big-endian arrays into native ones; so does this reader
    return np.asarray(view, dtype=view.dtype.newbyteorder("="))


def _native_copy(view: np.ndarray) -> np.ndarray:
    return np.array(view, dtype=view.dtype.newbyteorder("="))


def _to_tensor(array: np.ndarray, name: str | None = None) -> paddle.Tensor:
    tensor = paddle.to_tensor(array)
    if name:
        tensor.name = name  # paddle.load names loaded tensors the same way
    return tensor


def _converter(budget: MemoryBudget, return_numpy: bool):
    def convert(item: Any) -> Any:
        if isinstance(item, _Tensor):
            view = item.array.checked_view()
            budget.charge(view.nbytes, f"tensor {item.name!r}")
            return _native_copy(view) if return_numpy else _to_tensor(_native(view), item.name)
        if isinstance(item, _Array):
            view = item.checked_view()
            budget.charge(view.nbytes, f"an array of shape {list(view.shape)}")
            return _native_copy(view)
        if isinstance(item, _Scalar):
            return item.value
        if isinstance(item, _Dtype):
            return item.dtype
        if isinstance(item, _GeneratorState):
            return item.rebuild()
        if isinstance(item, _NdarrayType):
            raise Malformed("numpy.ndarray appears outside an array record")
        return item
    return convert


def _unpack_state_dict_format(checkpoint: Any, return_numpy: bool) -> Any:
    """``paddle.save`` of a flat state dict stores plain arrays plus a table of parameter names;
    like ``paddle.load``, return Tensors carrying those names and drop the table."""
    if not isinstance(checkpoint, dict):
        return checkpoint
    if _SPLIT_PARAMETERS in checkpoint:
        raise Malformed("parameters split into slices (protocol 2/3 saves of arrays over 1 GiB) "
                        "are not supported; save it again with protocol 4")
    names = checkpoint.pop(_NAME_TABLE, None)
    if names is None or return_numpy:
        return checkpoint
    if not isinstance(names, dict):
        raise Malformed(f"{_NAME_TABLE} is not a dict")
    for key, name in names.items():
        if isinstance(checkpoint.get(key), np.ndarray):
            checkpoint[key] = _to_tensor(checkpoint[key], name if isinstance(name, str) else None)
    return checkpoint


def read_paddle_checkpoint(path: str | os.PathLike, return_numpy: bool = False) -> Any:
    """Load a file written by ``paddle.save`` without running code from it.

    Returns what ``paddle.load`` returns for the checkpoints this project writes: Tensors saved
    as Tensors come back as Tensors with their names (numpy arrays with ``return_numpy``), numpy
    arrays and scalars as numpy, OrderedDicts kept, random generator states rebuilt. Unlike
    ``paddle.load``, a file holding no Tensor keeps its numpy arrays as arrays.

    Raises FileNotFoundError for a missing file, :class:`UnsafeCheckpointError` when the pickle
    names a global outside the allow-list (nothing from the file runs), and
    :class:`PaddleCheckpointError` for a file that is truncated, corrupt, claims more data than
    it holds, or is no ``paddle.save`` pickle.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Paddle checkpoint {path} does not exist (or is not a file)")
    try:
        with open(path, "rb") as file:
            if file.read(1) != _PROTO:
                raise PaddleCheckpointError(
                    f"cannot read {path}: it is not a checkpoint written by paddle.save (no "
                    "pickle header); the file was not loaded")
            file.seek(0)
            budget = MemoryBudget(os.fstat(file.fileno()).st_size)
            loaded = RestrictedUnpickler(file, _ALLOWED_GLOBALS, encoding="latin1").load()
        checkpoint = materialize(loaded, _converter(budget, return_numpy))
        return _unpack_state_dict_format(checkpoint, return_numpy)
    except RefusedGlobal as error:
        raise UnsafeCheckpointError(refusal_message(path, error)) from None
    except CheckpointReadError:
        raise
    except READ_ERRORS as error:
        detail = str(error) if isinstance(error, Malformed) else f"{type(error).__name__}: {error}"
        raise PaddleCheckpointError(
            f"cannot read checkpoint {path}: it is truncated or corrupt ({detail}); the file was "
            "not loaded") from error
