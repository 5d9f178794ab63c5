"""Read PyTorch checkpoints (``.pth``/``.pth.tar``) into numpy, without torch and without running
anything the file asks for.

``torch.save`` writes pickles, and unpickling an untrusted pickle can run arbitrary code. This
reader unpickles (``pimm.utils.restricted_pickle``) with an explicit allow-list of the few
globals a weights checkpoint needs (containers, torch's tensor-rebuild functions and storage
classes, yacs ``CfgNode``); each is replaced by a local stand-in, so no torch code runs either.
Any other global stops the load with :class:`UnsafeCheckpointError` before it can be called.
Sizes are checked before anything is allocated: storage counts against the bytes present, zip
records against their declared and the archive's sizes, tensor views against their storage, and
all tensors together against a small multiple of the file's size.

Both on-disk layouts are supported:

* legacy (torch <= 1.5): a run of pickles -- magic number, protocol version, system info, the
  object, the sorted list of storage keys -- then, per key, an int64 element count and the raw
  little-endian data;
* zip (torch >= 1.6): ``<root>/data.pkl`` plus one ``<root>/data/<key>`` record per storage, and an
  optional ``<root>/byteorder`` record. ``<root>`` is whatever the archive was first named when it
  was written (``archive``, ``tmp.pth`` for timm's saver, ...).
"""
from __future__ import annotations

import io
import math
import os
import struct
import zipfile
import zlib
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, Mapping

import numpy as np

from .restricted_pickle import (READ_ERRORS, ArgsNamespace, CheckpointReadError, Malformed, MemoryBudget,
                                RefusedGlobal, RestrictedUnpickler, UnsafeCheckpointError,
                                materialize, refusal_message)

if TYPE_CHECKING:
    import paddle

__all__ = [
    "TorchCheckpointError",
    "UnsafeCheckpointError",
    "UnsafeTorchCheckpointError",
    "is_torch_checkpoint",
    "read_torch_checkpoint",
    "extract_state_dict",
    "torch_to_paddle_state_dict",
]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001
# The magic-number pickle is ~16 bytes (a few more with protocol-4 framing).
_SNIFF_BYTES = 64
# "little" or "big"
_MAX_BYTEORDER_RECORD = 16


class TorchCheckpointError(CheckpointReadError):
    """The file is not a PyTorch checkpoint this reader can load (corrupt, truncated, forged
    sizes, unsupported)."""


class UnsafeTorchCheckpointError(UnsafeCheckpointError, TorchCheckpointError):
    """A PyTorch checkpoint's pickle names a global outside the allow-list; nothing was run."""


class _NotACheckpoint(Exception):
    """Internal: the file is neither torch container format."""


# --------------------------------------------------------------------------------------------
# Element types


class _ElementType:
    """A torch element type as laid out on disk, and how it becomes a numpy array."""

    __slots__ = ("torch_name", "disk_dtype", "decode")

    def __init__(
        self,
        torch_name: str,
        disk_dtype: str,
        decode: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.torch_name = torch_name
        self.disk_dtype = np.dtype(disk_dtype)
        self.decode = decode

    @property
    def itemsize(self) -> int:
        return self.disk_dtype.itemsize

    def disk_view(self, raw: np.ndarray, byteorder: str) -> np.ndarray:
        """View raw bytes as 1-D elements of this type in the file's byte order."""
        dtype = self.disk_dtype.newbyteorder("<" if byteorder == "little" else ">")
        usable = raw.size - raw.size % dtype.itemsize
        return raw[:usable].view(dtype)

    def to_native(self, elements: np.ndarray) -> np.ndarray:
        """A C-contiguous, native-endian copy of ``elements`` with the numpy dtype users get."""
        copied = np.array(elements, dtype=self.disk_dtype.newbyteorder("="), order="C")
        return self.decode(copied) if self.decode is not None else copied

    def __setstate__(self, state: Any) -> None:
        raise Malformed("a pickle instruction tried to modify a storage type")


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    # numpy has no bfloat16; its bits are the upper half of a float32, so widening is exact.
    return (bits.astype(np.uint32) << 16).view(np.float32)


_STORAGE_ELEMENT_TYPES: dict[str, _ElementType] = {
    "FloatStorage": _ElementType("float32", "<f4"),
    "DoubleStorage": _ElementType("float64", "<f8"),
    "HalfStorage": _ElementType("float16", "<f2"),
    "BFloat16Storage": _ElementType("bfloat16", "<u2", _bfloat16_to_float32),
    "LongStorage": _ElementType("int64", "<i8"),
    "IntStorage": _ElementType("int32", "<i4"),
    "ShortStorage": _ElementType("int16", "<i2"),
    "CharStorage": _ElementType("int8", "i1"),
    "ByteStorage": _ElementType("uint8", "u1"),
    "BoolStorage": _ElementType("bool", "?"),
    "ComplexFloatStorage": _ElementType("complex64", "<c8"),
    "ComplexDoubleStorage": _ElementType("complex128", "<c16"),
}
_UNTYPED_STORAGE = _ElementType("uint8", "u1")
_STORAGE_TYPES = frozenset(_STORAGE_ELEMENT_TYPES.values()) | {_UNTYPED_STORAGE}
# torch >= 2.x writes tensors of these dtypes with _rebuild_tensor_v3 over an untyped storage,
# naming the dtype as a global such as ``torch.uint16``.
_V3_DTYPES: dict[str, _ElementType] = {
    "uint16": _ElementType("uint16", "<u2"),
    "uint32": _ElementType("uint32", "<u4"),
    "uint64": _ElementType("uint64", "<u8"),
}


# --------------------------------------------------------------------------------------------
# Stand-ins built while unpickling; turned into numpy arrays / dicts once every storage is read.


class _Storage:
    """A torch storage: raw bytes (filled in after unpickling for legacy files) or a view of one."""

    __slots__ = ("key", "element_type", "byteorder", "raw", "base", "base_offset", "numel")

    def __init__(self, key: str, element_type: _ElementType, byteorder: str) -> None:
        self.key = key
        self.element_type = element_type
        self.byteorder = byteorder
        self.raw: np.ndarray | None = None
        self.base: _Storage | None = None
        self.base_offset = 0
        self.numel: int | None = None

    def bytes_view(self) -> np.ndarray:
        if self.base is None:
            if self.raw is None:
                raise Malformed(f"storage {self.key!r} is used by a tensor but its data is missing")
            return self.raw
        start = self.base_offset * self.element_type.itemsize
        return self.base.bytes_view()[start:start + self.numel * self.element_type.itemsize]

    def elements(self, element_type: _ElementType) -> np.ndarray:
        return element_type.disk_view(self.bytes_view(), self.byteorder)

    def to_array(self, budget: MemoryBudget) -> np.ndarray:
        elements = self.elements(self.element_type)
        budget.charge(elements.nbytes, f"storage {self.key!r}")
        return self.element_type.to_native(elements)

    def __setstate__(self, state: Any) -> None:
        raise Malformed("a pickle instruction tried to modify a storage")


class _PendingTensor:
    """A tensor recorded as (storage, offset, shape, strides) until the storage bytes are known."""

    __slots__ = ("storage", "offset", "shape", "strides", "element_type")

    def __init__(self, storage: Any, offset: Any, shape: Any, strides: Any,
                 element_type: _ElementType | None = None) -> None:
        if not isinstance(storage, _Storage):
            raise Malformed(f"a tensor record refers to {type(storage).__name__}, not a storage")
        self.storage = storage
        self.offset = _as_index(offset, "storage offset")
        self.shape = _as_index_tuple(shape, "size")
        self.strides = _as_index_tuple(strides, "stride")
        if len(self.shape) != len(self.strides):
            raise Malformed(f"tensor size {self.shape} and stride {self.strides} differ in length")
        self.element_type = element_type or storage.element_type

    def to_array(self, budget: MemoryBudget) -> np.ndarray:
        elements = self.storage.elements(self.element_type)
        if 0 in self.shape:
            return self.element_type.to_native(elements[:0].reshape(self.shape))
        last = self.offset + sum((dim - 1) * step for dim, step in zip(self.shape, self.strides))
        if last >= elements.size:
            raise Malformed(
                f"a tensor of size {list(self.shape)} (offset {self.offset}, stride "
                f"{list(self.strides)}) reaches element {last} of storage {self.storage.key!r}, "
                f"which holds {elements.size}")
        itemsize = elements.itemsize
        # inside its storage, a view with stride 0 can still repeat one element a billion times
        budget.charge(math.prod(self.shape) * itemsize, f"a tensor of size {list(self.shape)}")
        strided = np.lib.stride_tricks.as_strided(
            elements[self.offset:], shape=self.shape,
            strides=[step * itemsize for step in self.strides], writeable=False)
        return self.element_type.to_native(strided)

    def __setstate__(self, state: Any) -> None:
        raise Malformed("a pickle instruction tried to modify a tensor")


class _ConfigNode(dict):
    """Stand-in for yacs ``CfgNode`` (a dict subclass); its bookkeeping state is dropped."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        # CfgNode pickles __immutable__, __deprecated_keys__, __renamed_keys__, __new_allowed__:
        # flags for yacs' own merge logic that a plain dict does not need.
        if not isinstance(state, dict):
            raise Malformed("a yacs CfgNode record carries a non-dict state")


def _as_index(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Malformed(f"tensor {what} {value!r} is not a non-negative integer")
    return value


def _as_index_tuple(values: Any, what: str) -> tuple[int, ...]:
    if not isinstance(values, (tuple, list)):
        raise Malformed(f"tensor {what} {values!r} is not a tuple")
    return tuple(_as_index(value, what) for value in values)


# The callables the allow-list hands to the unpickler. Their signatures follow torch._utils.


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       metadata=None):
    return _PendingTensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    if not isinstance(dtype, _ElementType):
        raise Malformed(f"_rebuild_tensor_v3 got {dtype!r} where a dtype belongs")
    return _PendingTensor(storage, storage_offset, size, stride, element_type=dtype)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    if not isinstance(data, _PendingTensor):
        raise Malformed(f"a parameter record wraps {type(data).__name__}, not a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data, requires_grad, backward_hooks)


def _device_string(kind: Any, index: Any = None) -> str:
    if not isinstance(kind, str) or not (index is None or isinstance(index, int)):
        raise Malformed(f"malformed torch.device({kind!r}, {index!r})")
    return kind if index is None else f"{kind}:{index}"


def _size_tuple(dims: Any = ()) -> tuple[int, ...]:
    return _as_index_tuple(dims, "size")


def _build_allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
        ("torch", "device"): _device_string,
        ("torch", "Size"): _size_tuple,
        ("torch", "UntypedStorage"): _UNTYPED_STORAGE,
        ("torch.storage", "UntypedStorage"): _UNTYPED_STORAGE,
        ("yacs.config", "CfgNode"): _ConfigNode,
        ("argparse", "Namespace"): ArgsNamespace,
    }
    for name, element_type in _STORAGE_ELEMENT_TYPES.items():
        # Files saved from GPU tensors by very old torch name the CUDA storage class.
        allowed[("torch", name)] = element_type
        allowed[("torch.cuda", name)] = element_type
    for name, element_type in _V3_DTYPES.items():
        allowed[("torch", name)] = element_type
    return allowed


_ALLOWED_GLOBALS = _build_allowed_globals()


def _unpickle(file: BinaryIO, load_storage: Callable[[tuple], _Storage] | None = None) -> Any:
    def persistent_load(pid: Any) -> _Storage:
        if load_storage is None:
            raise Malformed("a storage reference appears where none is expected")
        if not isinstance(pid, tuple) or len(pid) < 5 or _as_str(pid[0]) != "storage":
            raise Malformed(f"unsupported persistent record {pid!r:.80}")
        return load_storage(pid)

    return RestrictedUnpickler(file, _ALLOWED_GLOBALS, persistent_load).load()


def _as_str(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _storage_record(pid: tuple) -> tuple[_ElementType, str, int]:
    element_type, key, numel = pid[1], _as_str(pid[2]), pid[4]
    if element_type not in _STORAGE_TYPES:
        raise Malformed(f"storage record names {element_type!r}, not a storage type")
    if not isinstance(key, str):
        raise Malformed(f"storage key {key!r} is not a string")
    return element_type, key, _as_index(numel, "storage size")


# --------------------------------------------------------------------------------------------
# The two container formats


def _read_exact(file: BinaryIO, count: int, what: str) -> bytes:
    # checked before reading: a forged count must not become an allocation
    left = os.fstat(file.fileno()).st_size - file.tell()
    if count > left:
        raise Malformed(f"the file ends inside {what} ({left} of {count} bytes present)")
    return file.read(count)


def _read_legacy(file: BinaryIO) -> Any:
    try:
        magic = _unpickle(file)
    except RefusedGlobal:
        raise  # a plain pickle calling e.g. os.system is reported as such
    except Exception as error:
        raise _NotACheckpoint() from error
    if magic != _LEGACY_MAGIC:
        raise _NotACheckpoint()
    protocol = _unpickle(file)
    if protocol != _LEGACY_PROTOCOL_VERSION:
        raise Malformed(f"unsupported legacy protocol version {protocol!r}")
    _unpickle(file)  # system info: the data section is little-endian whatever it says

    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        if len(pid) != 6:
            raise Malformed(f"legacy storage record has {len(pid)} fields, expected 6")
        element_type, key, _ = _storage_record(pid)
        root = storages.setdefault(key, _Storage(key, element_type, "little"))
        view = pid[5]
        if view is None:
            return root
        # Storage views (torch < 0.4): (view key, offset, size) in elements of the root.
        if not isinstance(view, tuple) or len(view) != 3:
            raise Malformed(f"malformed storage view record {view!r}")
        view_key = _as_str(view[0])
        if view_key not in storages:
            sub = _Storage(view_key, element_type, "little")
            sub.base = root
            sub.base_offset = _as_index(view[1], "storage view offset")
            sub.numel = _as_index(view[2], "storage view size")
            storages[view_key] = sub
        return storages[view_key]

    checkpoint = _unpickle(file, load_storage)
    keys = _unpickle(file)
    if not isinstance(keys, list):
        raise Malformed("the storage key list is missing")
    for key in keys:
        key = _as_str(key)
        storage = storages.get(key)
        if storage is None or storage.base is not None:
            raise Malformed(f"the data section lists storage {key!r}, which no tensor uses")
        (count,) = struct.unpack("<q", _read_exact(file, 8, f"the header of storage {key!r}"))
        nbytes = _as_index(count, "storage size") * storage.element_type.itemsize
        raw = _read_exact(file, nbytes, f"the data of storage {key!r}")
        storage.raw = np.frombuffer(raw, dtype=np.uint8)
    return checkpoint


def _zip_root(archive: zipfile.ZipFile) -> str:
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "data.pkl":
            return parts[0]
    raise _NotACheckpoint()


def _read_record(archive: zipfile.ZipFile, name: str, nbytes: int | None,
                 inflated: MemoryBudget) -> bytes:
    """The first ``nbytes`` (all when None) of record ``name``, checked against its declared size
    and the archive's size before anything is inflated."""
    info = archive.getinfo(name)
    if nbytes is None:
        nbytes = info.file_size
    elif info.file_size < nbytes:
        raise Malformed(f"record {name!r} holds {info.file_size} bytes, fewer than the {nbytes} "
                        "its storage declares")
    inflated.charge(nbytes, f"record {name!r}")
    with archive.open(info) as record:
        data = record.read(nbytes)
    if len(data) != nbytes:
        raise Malformed(f"record {name!r} ends after {len(data)} of its {nbytes} bytes")
    return data


def _read_zip(archive: zipfile.ZipFile, archive_size: int) -> Any:
    root = _zip_root(archive)
    names = set(archive.namelist())
    # torch stores records uncompressed; a deflated copy may inflate to twice the archive, no more
    inflated = MemoryBudget(archive_size)
    byteorder = "little"
    if f"{root}/byteorder" in names:
        if archive.getinfo(f"{root}/byteorder").file_size > _MAX_BYTEORDER_RECORD:
            raise Malformed("the byteorder record is too long")
        raw_order = _read_record(archive, f"{root}/byteorder", None, inflated)
        byteorder = raw_order.decode("ascii", "replace").strip()
        if byteorder not in ("little", "big"):
            raise Malformed(f"unknown byte order {byteorder!r}")
    storages: dict[str, _Storage] = {}

    def load_storage(pid: tuple) -> _Storage:
        element_type, key, numel = _storage_record(pid)
        if key not in storages:
            record = f"{root}/data/{key}"
            if record not in names:
                raise Malformed(f"the archive lacks the record {record!r}")
            storage = _Storage(key, element_type, byteorder)
            raw = _read_record(archive, record, numel * element_type.itemsize, inflated)
            storage.raw = np.frombuffer(raw, dtype=np.uint8)
            storages[key] = storage
        return storages[key]

    data_pkl = _read_record(archive, f"{root}/data.pkl", None, inflated)
    return _unpickle(io.BytesIO(data_pkl), load_storage)


def _converter(budget: MemoryBudget) -> Callable[[Any], Any]:
    """Turns tensor and storage stand-ins into numpy arrays, charging ``budget`` first."""

    def convert(item: Any) -> Any:
        if isinstance(item, (_PendingTensor, _Storage)):
            return item.to_array(budget)
        if isinstance(item, _ElementType):
            raise Malformed(f"a storage type ({item.torch_name}) appears outside a storage record")
        return item

    return convert


# --------------------------------------------------------------------------------------------
# Public API




def is_torch_checkpoint(path: str | os.PathLike) -> bool:
    """Cheap sniff: True for a zip archive holding ``<root>/data.pkl`` or a legacy torch file.

    Reads only the first bytes (or the zip directory); returns False for anything else,
    including a missing file or a folder.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    with open(path, "rb") as file:
        head = file.read(_SNIFF_BYTES)
        if head.startswith(b"PK"):
            try:
                with zipfile.ZipFile(file) as archive:
                    _zip_root(archive)
                return True
            except (zipfile.BadZipFile, _NotACheckpoint, OSError, EOFError):
                return False
    try:
        return _unpickle(io.BytesIO(head)) == _LEGACY_MAGIC
    except Exception:  # any unpickling failure (refused global included) means "not torch"
        return False


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Load a file written by ``torch.save`` without torch and without running foreign code.

    Returns the saved object with every tensor as a C-contiguous numpy array (dtype and shape as
    saved; strides and storage offsets applied; each tensor its own copy even when storages were
    shared; bfloat16 widened to float32), OrderedDicts kept, yacs ``CfgNode`` objects turned into
    plain dicts. Storage devices (``cuda:0``, ...) are ignored.

    Raises FileNotFoundError for a missing file, :class:`UnsafeTorchCheckpointError` (an
    ``UnsafeCheckpointError`` and a ``TorchCheckpointError``) when the pickle names a global
    outside the allow-list, and :class:`TorchCheckpointError` for anything that is
    not a readable checkpoint (garbage, truncated or corrupt data, unsupported dtypes, sizes the
    file's bytes cannot back: tensors may take at most about twice the file's size).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch checkpoint {path!r} does not exist (or is not a file)")
    try:
        with open(path, "rb") as file:
            head = file.read(_SNIFF_BYTES)
            file.seek(0)
            file_size = os.fstat(file.fileno()).st_size
            if head.startswith(b"PK"):
                try:
                    archive = zipfile.ZipFile(file)
                except zipfile.BadZipFile as error:
                    raise Malformed(f"broken zip archive ({error})") from error
                with archive:
                    checkpoint = _read_zip(archive, file_size)
            else:
                checkpoint = _read_legacy(file)
        return materialize(checkpoint, _converter(MemoryBudget(file_size)))
    except _NotACheckpoint:
        raise TorchCheckpointError(
            f"{path!r} is not a PyTorch checkpoint: it is neither a zip archive with "
            "<root>/data.pkl (torch >= 1.6) nor a legacy torch.save file (torch <= 1.5)") from None
    except RefusedGlobal as error:
        raise UnsafeTorchCheckpointError(refusal_message(path, error)) from None
    except CheckpointReadError:
        raise
    except (*READ_ERRORS, zipfile.BadZipFile, zlib.error) as error:
        detail = str(error) if isinstance(error, Malformed) else f"{type(error).__name__}: {error}"
        raise TorchCheckpointError(
            f"Cannot read PyTorch checkpoint {path!r}: it is truncated or corrupt ({detail}). "
            "The file was not loaded; download or save it again.") from error


def extract_state_dict(checkpoint: Any, use_ema: bool = False) -> dict[str, np.ndarray]:
    """The model weights of a checkpoint read by :func:`read_torch_checkpoint`.

    Takes ``state_dict_ema`` when ``use_ema``, else ``state_dict``, else ``model``, else the
    object itself as a bare state dict; strips a ``module.`` prefix (DataParallel/DDP) and drops
    BatchNorm ``num_batches_tracked`` counters, which Paddle has no slot for.
    """
    if not isinstance(checkpoint, Mapping):
        raise TorchCheckpointError(
            f"the checkpoint is a {type(checkpoint).__name__}, not a dict of weights")
    present = ", ".join(repr(key) for key in checkpoint) or "none"
    if use_ema:
        if "state_dict_ema" not in checkpoint:
            raise TorchCheckpointError(
                f"EMA weights were requested but the checkpoint has no 'state_dict_ema' "
                f"(keys present: {present}); load without use_ema or pick a file saved with EMA")
        weights = checkpoint["state_dict_ema"]
    else:
        source = next((key for key in ("state_dict", "model") if key in checkpoint), None)
        weights = checkpoint[source] if source is not None else checkpoint
    if not isinstance(weights, Mapping):
        raise TorchCheckpointError(
            f"the checkpoint's weights are a {type(weights).__name__}, not a state dict "
            f"(keys present: {present})")
    state_dict: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        if not isinstance(value, np.ndarray):
            raise TorchCheckpointError(
                f"entry {name!r} is of type {type(value).__name__}, not a tensor, so this is not a state "
                f"dict (checkpoint keys present: {present})")
        name = name[len("module."):] if name.startswith("module.") else name
        if name.endswith("num_batches_tracked"):
            continue
        state_dict[name] = value
    return state_dict


_BATCHNORM_RENAMES = (("running_mean", "_mean"), ("running_var", "_variance"))


def torch_to_paddle_state_dict(state_dict: Mapping[str, np.ndarray],
                               model: "paddle.nn.Layer") -> dict[str, np.ndarray]:
    """Rename and re-lay-out torch state-dict entries for ``model`` (a ``paddle.nn.Layer``).

    BatchNorm ``running_mean``/``running_var`` become ``_mean``/``_variance``; the weight of every
    ``paddle.nn.Linear`` sublayer of ``model`` is transposed (torch [out, in], Paddle [in, out]).
    Linears are found by name in the model, never guessed from shapes. Unknown names are kept as
    they are and shapes are not checked: the caller compares the result with the model.
    """
    import paddle  # imported here so that reading a checkpoint never needs Paddle

    linear_weights = {
        f"{name}.weight" for name, layer in model.named_sublayers()
        if isinstance(layer, paddle.nn.Linear)
    }
    converted: dict[str, np.ndarray] = {}
    for name, value in state_dict.items():
        if name.endswith("num_batches_tracked"):
            continue
        prefix, _, leaf = name.rpartition(".")
        for torch_leaf, paddle_leaf in _BATCHNORM_RENAMES:
            if leaf == torch_leaf:
                name = f"{prefix}.{paddle_leaf}" if prefix else paddle_leaf
        if name in linear_weights and value.ndim == 2:
            value = np.ascontiguousarray(value.T)
        converted[name] = value
    return converted
