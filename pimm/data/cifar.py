"""CIFAR-10 from its python-pickle batches, read without running anything the files ask for.

The "python version" of CIFAR-10 (``cifar-10-python.tar.gz``, extracted to ``cifar-10-batches-py/``)
holds ``data_batch_1`` .. ``data_batch_5`` (training, 10000 images each) and ``test_batch``: Python 2
pickles of a dict with the keys ``data`` (a uint8 numpy array ``[N, 3072]``: 1024 red, then green,
then blue values of a 32x32 image, row by row), ``labels`` (N ints in 0..9), ``batch_label`` and
``filenames``. Unpickling a file from elsewhere could run arbitrary code, so :func:`read_cifar_batch`
unpickles with an allow-list: the numpy array and dtype rebuilders (and, for batches re-pickled by
Python 3, ``_codecs.encode`` to latin-1) are replaced by local stand-ins that only collect bytes;
every other global stops the load before anything is called. The result is then checked against
the structure above.
"""
from __future__ import annotations

import io
import os
import pickle
import struct
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from PIL import Image

from pimm.utils.file_io import atomic_write_bytes

__all__ = ["CIFAR10", "CIFAR10_CLASSES", "CifarFormatError", "read_cifar_batch", "write_cifar_batch"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_FOLDER = "cifar-10-batches-py"
_IMAGE_BYTES = 32 * 32 * 3
_KEYS = ("data", "labels", "batch_label", "filenames")
# A real batch is 31 MB; anything far larger is not one, and would only cost memory to parse.
_MAX_FILE_BYTES = 256 * 2**20
_HINT = ("expected the python version of CIFAR-10 (cifar-10-python.tar.gz extracted: "
         "cifar-10-batches-py/data_batch_1..5 and test_batch)")


class CifarFormatError(ValueError):
    """A file that is not a CIFAR-10 python batch (or asks the unpickler for anything else)."""


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` as the class argument of ``_reconstruct``."""


class _Dtype:
    """Stands for ``numpy.dtype(spec, align, copy)``; only uint8 ('u1') is accepted."""

    uint8 = False  # set only by a checked construction (not by pickle's NEWOBJ, which skips __init__)

    def __init__(self, spec: Any, align: Any = 0, copy: Any = 0) -> None:
        if _text(spec) != "u1":
            raise CifarFormatError(f"array of dtype {spec!r}; CIFAR images are uint8")
        self.uint8 = True

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or _text(state[1]) != "|":
            raise CifarFormatError(f"unexpected dtype state {state!r}")


class _Array:
    """Collects ``ndarray.__setstate__``'s (version, shape, dtype, fortran, bytes) into ``value``."""

    value: Optional[np.ndarray] = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise CifarFormatError("malformed array state")
        _, shape, dtype, fortran, raw = state
        self.value = _array_from(raw, dtype, shape, fortran)


def _text(value: Any) -> Any:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _array_from(raw: Any, dtype: Any, shape: Any, fortran: Any) -> np.ndarray:
    if not isinstance(dtype, _Dtype) or not dtype.uint8:
        raise CifarFormatError("array without a uint8 numpy dtype")
    if (not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape)
            or fortran not in (False, "C", b"C")):
        raise CifarFormatError(f"array of shape {shape!r} / order {fortran!r}")
    raw = bytes(raw) if isinstance(raw, (bytearray, pickle.PickleBuffer)) else raw
    if not isinstance(raw, bytes) or len(raw) != int(np.prod(shape)):
        raise CifarFormatError(f"array data does not match its shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _reconstruct(cls: Any, shape: Any, code: Any) -> _Array:
    if cls is not _NdarrayClass:
        raise CifarFormatError("array reconstruction of something other than numpy.ndarray")
    return _Array()


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    array = _Array()
    array.value = _array_from(raw, dtype, shape, order)
    return array


def _latin1(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise CifarFormatError(f"_codecs.encode({type(text).__name__}, {encoding!r})")
    return text.encode("latin-1")


_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NdarrayClass,
    ("numpy", "dtype"): _Dtype,
    ("_codecs", "encode"): _latin1,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise CifarFormatError(f"the pickle asks for {module}.{name}, which a CIFAR batch never "
                                   f"holds; refused without calling it") from None


def _unwrap(value: Any) -> Any:
    return value.value if isinstance(value, _Array) else value


def read_cifar_batch(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 32, 32, 3]`` (uint8, RGB) and labels ``[N]`` (int64) of one batch file.

    Raises FileNotFoundError for a missing file and CifarFormatError, naming the file, for anything
    that is not a CIFAR-10 python batch.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CIFAR-10 batch {path} not found; {_HINT}")
    if os.path.getsize(path) > _MAX_FILE_BYTES:
        raise CifarFormatError(f"{path} is {os.path.getsize(path)} bytes, far more than a CIFAR-10 batch; {_HINT}")
    try:
        with open(path, "rb") as f:
            batch = _RestrictedUnpickler(f, encoding="bytes").load()
    except CifarFormatError as err:
        raise CifarFormatError(f"{path} is not a CIFAR-10 python batch: {err}; {_HINT}") from None
    except Exception as err:  # a corrupt pickle raises many types
        raise CifarFormatError(f"{path} is not a readable CIFAR-10 python batch ({type(err).__name__}: "
                               f"{err}); {_HINT}") from None
    return _check_batch(batch, path)


def _check_batch(batch: Any, path: str) -> Tuple[np.ndarray, np.ndarray]:
    def bad(what: str) -> CifarFormatError:
        return CifarFormatError(f"{path} is not a CIFAR-10 python batch: {what}; {_HINT}")

    if not isinstance(batch, dict):
        raise bad(f"it holds a {type(batch).__name__}, not a dict")
    fields = {_text(k) if isinstance(k, (bytes, str)) else k: _unwrap(v) for k, v in batch.items()}
    if sorted(map(str, fields)) != sorted(_KEYS):
        raise bad(f"keys {sorted(map(str, fields))}, expected {sorted(_KEYS)}")
    data, labels, filenames = fields["data"], fields["labels"], fields["filenames"]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES or not len(data):
        raise bad(f"'data' must be a uint8 array [N, {_IMAGE_BYTES}], got "
                  f"{getattr(data, 'shape', type(data).__name__)}")
    count = len(data)
    if (not isinstance(labels, list) or len(labels) != count
            or not all(type(label) is int and 0 <= label < len(CIFAR10_CLASSES) for label in labels)):
        raise bad(f"'labels' must be a list of {count} ints in 0..{len(CIFAR10_CLASSES) - 1}")
    if not isinstance(filenames, list) or len(filenames) != count or not all(
            isinstance(name, (bytes, str)) for name in filenames):
        raise bad(f"'filenames' must be a list of {count} names")
    if not isinstance(fields["batch_label"], (bytes, str)):
        raise bad("'batch_label' must be a string")
    images = np.ascontiguousarray(data.reshape(count, 3, 32, 32).transpose(0, 2, 3, 1))
    return images, np.asarray(labels, dtype=np.int64)


def _pickle_bytes(text: bytes) -> bytes:
    # Python 2 str, as the real batches hold them (loaded as bytes with encoding='bytes')
    if len(text) < 256:
        return b"U" + bytes([len(text)]) + text
    return b"T" + struct.pack("<i", len(text)) + text


def _pickle_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def write_cifar_batch(path: str, images: np.ndarray, labels: Sequence[int], batch_label: str = "synthetic batch",
                      filenames: Optional[Sequence[str]] = None) -> None:
    """Write ``images`` (uint8 ``[N, 32, 32, 3]``) and ``labels`` as a CIFAR-10 python batch, laid
    out as the real files are (a Python 2, protocol-2 pickle): for synthetic data and tests."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise ValueError(f"images must be uint8 [N, 32, 32, 3], got {images.dtype} {list(images.shape)}")
    labels = [int(label) for label in labels]
    if len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    filenames = filenames or [f"image_{i:05d}.png" for i in range(len(images))]
    data = np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), _IMAGE_BYTES))
    dtype = (b"cnumpy\ndtype\n" + _pickle_bytes(b"u1") + _pickle_int(0) + _pickle_int(1) + b"\x87R"
             + b"(" + _pickle_int(3) + _pickle_bytes(b"|") + b"NNN" + b"J\xff\xff\xff\xffJ\xff\xff\xff\xff"
             + _pickle_int(0) + b"tb")
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + _pickle_int(0) + b"\x85"
             + _pickle_bytes(b"b") + b"\x87R"
             + b"(" + _pickle_int(1) + _pickle_int(data.shape[0]) + _pickle_int(data.shape[1]) + b"\x86"
             + dtype + b"\x89" + _pickle_bytes(data.tobytes()) + b"tb")
    out = io.BytesIO()
    out.write(b"\x80\x02}(")  # protocol 2, empty dict, mark
    out.write(_pickle_bytes(b"data") + array)
    out.write(_pickle_bytes(b"labels") + b"](" + b"".join(_pickle_int(label) for label in labels) + b"e")
    out.write(_pickle_bytes(b"batch_label") + _pickle_bytes(batch_label.encode("latin-1")))
    out.write(_pickle_bytes(b"filenames") + b"](" + b"".join(_pickle_bytes(name.encode("latin-1"))
                                                            for name in filenames) + b"e")
    out.write(b"u.")  # set items, stop
    atomic_write_bytes(out.getvalue(), path)


def _batch_folder(root: str) -> str:
    nested = os.path.join(root, _FOLDER)
    if not os.path.isfile(os.path.join(root, TEST_BATCH)) and os.path.isdir(nested):
        return nested
    return root


class CIFAR10(paddle.io.Dataset):
    """CIFAR-10 from ``root`` (the ``cifar-10-batches-py`` folder, or the folder holding it).

    ``train``: the five training batches (50000 images), else ``test_batch``. ``indices`` keeps a
    subset, in that order (P-DARTS searches on two halves of the training set). Items are
    ``(transform(image), label)`` with the image a 32x32 RGB PIL image, as ImageDataset gives;
    ``pimm.data.create_loader(..., pipeline="cifar")`` sets the CIFAR transforms.
    """

    def __init__(self, root: str, train: bool = True, transform: Optional[Callable] = None,
                 indices: Optional[Sequence[int]] = None) -> None:
        super().__init__()
        self.root = _batch_folder(str(root))
        names = TRAIN_BATCHES if train else (TEST_BATCH,)
        missing = [n for n in names if not os.path.isfile(os.path.join(self.root, n))]
        if missing:
            raise FileNotFoundError(f"{self.root} has no {', '.join(missing)}; {_HINT}")
        batches = [read_cifar_batch(os.path.join(self.root, n)) for n in names]
        images = np.concatenate([b[0] for b in batches])
        labels = np.concatenate([b[1] for b in batches])
        if indices is not None:
            indices = np.asarray(indices, dtype=np.int64)
            if indices.size and (indices.min() < 0 or indices.max() >= len(images)):
                raise IndexError(f"indices must lie in [0, {len(images)}) for this split")
            images, labels = images[indices], labels[indices]
        self.images, self.labels = images, labels
        self.transform = transform

    @property
    def classes(self) -> List[str]:
        return list(CIFAR10_CLASSES)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        img = Image.fromarray(self.images[index])
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.labels[index])
