"""Write files in ``torch.save``'s legacy and zip formats without torch, for the reader's tests.

Objects standing in for torch's reduce to the same globals and persistent ids that torch emits
(protocol 2, the GLOBAL opcode, memoized), so the files match torch's layout byte for byte in
structure. ``Global`` names any module attribute, which is also how the malicious payloads are made.
"""
from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
DEFAULT_SYS_INFO = {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}


class Global:
    """A reference to ``module.name`` that pickles as the GLOBAL opcode, whatever exists here."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args: Any) -> Any:  # pickle requires reduce functions to be callable
        raise RuntimeError("a stand-in global is never called")


REBUILD_TENSOR = Global("torch._utils", "_rebuild_tensor")
REBUILD_TENSOR_V2 = Global("torch._utils", "_rebuild_tensor_v2")
REBUILD_TENSOR_V3 = Global("torch._utils", "_rebuild_tensor_v3")
REBUILD_PARAMETER = Global("torch._utils", "_rebuild_parameter")
_STORAGE_CLASSES: dict[tuple[str, str], Global] = {}


def storage_class(name: str, module: str = "torch") -> Global:
    return _STORAGE_CLASSES.setdefault((module, name), Global(module, name))


class Storage:
    """A storage of ``data`` (1-D numpy array); ``class_name`` such as 'FloatStorage'."""

    _next_key = 0

    def __init__(self, class_name: str, data: np.ndarray, key: str | None = None,
                 location: str = "cpu", module: str = "torch") -> None:
        self.torch_class = storage_class(class_name, module)
        self.data = np.ascontiguousarray(data).reshape(-1)
        self.untyped = class_name == "UntypedStorage"
        if key is None:
            Storage._next_key += 1
            key = str(Storage._next_key)
        self.key, self.location = key, location

    @property
    def numel(self) -> int:
        return self.data.nbytes if self.untyped else self.data.size

    def raw_bytes(self, byteorder: str = "little") -> bytes:
        dtype = self.data.dtype.newbyteorder("<" if byteorder == "little" else ">")
        return self.data.astype(dtype).tobytes()


class StorageView:
    """A legacy storage view: ``size`` elements of ``root`` from ``offset`` (torch < 0.4)."""

    def __init__(self, root: Storage, key: str, offset: int, size: int) -> None:
        self.root, self.key, self.offset, self.size = root, key, offset, size


class Tensor:
    """Reduces like a torch tensor: ``rebuild(storage, offset, size, stride, ...)``."""

    def __init__(self, storage: Any, offset: int, shape: tuple, stride: tuple,
                 rebuild: Global = REBUILD_TENSOR_V2, dtype: Global | None = None) -> None:
        self.storage, self.offset = storage, offset
        self.shape, self.stride = tuple(shape), tuple(stride)
        self.rebuild, self.dtype = rebuild, dtype

    def __reduce_ex__(self, protocol: int) -> tuple:
        args = (self.storage, self.offset, self.shape, self.stride)
        if self.rebuild is REBUILD_TENSOR:
            return self.rebuild, args
        args += (False, OrderedDict())
        if self.rebuild is REBUILD_TENSOR_V3:
            args += (self.dtype,)
        return self.rebuild, args


class Parameter:
    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __reduce_ex__(self, protocol: int) -> tuple:
        return REBUILD_PARAMETER, (self.tensor, True, OrderedDict())


class Call:
    """Reduces to ``func(*args)``: how torch.device/torch.Size and the attack payloads pickle."""

    def __init__(self, func: Global, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce_ex__(self, protocol: int) -> tuple:
        return self.func, self.args


_STORAGE_BY_DTYPE = {
    np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
    np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage",
    np.dtype(np.int32): "IntStorage", np.dtype(np.int16): "ShortStorage",
    np.dtype(np.int8): "CharStorage", np.dtype(np.uint8): "ByteStorage",
    np.dtype(np.bool_): "BoolStorage", np.dtype(np.complex64): "ComplexFloatStorage",
    np.dtype(np.complex128): "ComplexDoubleStorage",
}


def tensor(array: Any, location: str = "cpu", rebuild: Global = REBUILD_TENSOR_V2) -> Tensor:
    """A contiguous tensor holding ``array`` in its own storage. A ``cuda:N`` location stores it
    the way torch saves a GPU tensor (a ``torch.cuda.*Storage``); ``REBUILD_TENSOR`` writes it as
    torch < 0.4 did."""
    array = np.asarray(array)
    module = "torch.cuda" if location.startswith("cuda") else "torch"
    storage = Storage(_STORAGE_BY_DTYPE[array.dtype], array, location=location, module=module)
    strides = tuple(step // array.itemsize for step in np.array(array, order="C").strides)
    return Tensor(storage, 0, array.shape, strides, rebuild=rebuild)


class CfgNode(dict):
    """Mirrors yacs' CfgNode: a dict whose bookkeeping lives in ``__dict__``, pickled by NEWOBJ."""

    def __init__(self, init: dict | None = None) -> None:
        super().__init__()
        for key, value in (init or {}).items():
            self[key] = CfgNode(value) if isinstance(value, dict) else value
        self.__dict__["__immutable__"] = False
        self.__dict__["__deprecated_keys__"] = set()
        self.__dict__["__renamed_keys__"] = {}
        self.__dict__["__new_allowed__"] = False


class _TorchPickler(pickle._Pickler):
    """The pure-Python pickler, with stand-ins written under the torch/yacs names."""

    dispatch = pickle._Pickler.dispatch.copy()

    def __init__(self, file: io.BytesIO, legacy: bool, storages: dict[str, Storage]) -> None:
        super().__init__(file, protocol=2)
        self.legacy, self.storages = legacy, storages

    def persistent_id(self, obj: Any) -> tuple | None:
        if isinstance(obj, StorageView):
            self.storages[obj.root.key] = obj.root
            return ("storage", obj.root.torch_class, obj.root.key, obj.root.location,
                    obj.root.numel, (obj.key, obj.offset, obj.size))
        if not isinstance(obj, Storage):
            return None
        self.storages[obj.key] = obj
        record = ("storage", obj.torch_class, obj.key, obj.location, obj.numel)
        return record + (None,) if self.legacy else record

    def save_global(self, obj: Any, name: str | None = None) -> None:
        if obj is CfgNode:
            obj = Global("yacs.config", "CfgNode")
        if not isinstance(obj, Global):
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[Global] = save_global


def dumps_object(obj: Any, legacy: bool = True,
                 storages: dict[str, Storage] | None = None) -> bytes:
    """The object pickle alone (what ``data.pkl`` holds)."""
    buffer = io.BytesIO()
    _TorchPickler(buffer, legacy, {} if storages is None else storages).dump(obj)
    return buffer.getvalue()


def save_legacy(obj: Any, path: str, sys_info: dict | None = None) -> None:
    """torch <= 1.5: magic, protocol, sys info, object, sorted keys, then count + data per key."""
    storages: dict[str, Storage] = {}
    body = dumps_object(obj, legacy=True, storages=storages)
    keys = sorted(storages)
    with open(path, "wb") as file:
        for header in (LEGACY_MAGIC, 1001, sys_info or DEFAULT_SYS_INFO):
            pickle.dump(header, file, protocol=2)
        file.write(body)
        pickle.dump(keys, file, protocol=2)
        for key in keys:
            file.write(struct.pack("<q", storages[key].numel))
            file.write(storages[key].raw_bytes())


def save_zip(obj: Any, path: str, root: str = "archive", byteorder: str | None = "little") -> None:
    """torch >= 1.6: ``<root>/data.pkl`` and ``<root>/data/<key>`` (+ byteorder, version)."""
    storages: dict[str, Storage] = {}
    body = dumps_object(obj, legacy=False, storages=storages)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{root}/data.pkl", body)
        if byteorder is not None:
            archive.writestr(f"{root}/byteorder", byteorder)
        for key, storage in storages.items():
            archive.writestr(f"{root}/data/{key}", storage.raw_bytes(byteorder or "little"))
        archive.writestr(f"{root}/version", "3\n")
