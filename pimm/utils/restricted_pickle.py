"""Unpickling that runs nothing a file asks for and allocates no more than the file can fill.

Both checkpoint formats this project reads are pickles: ``.pdparams`` (``paddle.save``) and
PyTorch's ``.pth``/``.pth.tar``. A pickle may name any Python global (``posix.system``,
``builtins.eval``) and call it while it is being read, so plain ``pickle.load``/``paddle.load``
on a file from elsewhere runs whatever code the file carries. The readers built on this module
(``pimm.utils.paddle_checkpoint``, ``pimm.utils.torch_checkpoint``) resolve only an explicit
allow-list of globals, each mapped to a local stand-in, and refuse anything else before it can
be called.

A pickle can also claim sizes it does not hold (a byte string of 10**12 bytes, an array shape
far beyond its buffer, a view that repeats one float a billion times). Declared lengths are
checked against the bytes really present before the unpickler allocates them, and what a reader
builds from the file is charged to a :class:`MemoryBudget` tied to the file's size.
"""
from __future__ import annotations

import pickle
import pickletools
import struct
from collections import OrderedDict
from typing import Any, BinaryIO, Callable, Mapping

__all__ = [
    "CheckpointReadError",
    "UnsafeCheckpointError",
    "Malformed",
    "RefusedGlobal",
    "MemoryBudget",
    "RestrictedUnpickler",
    "ArgsNamespace",
    "materialize",
    "READ_ERRORS",
    "check_declared_lengths",
    "format_bytes",
    "refusal_message",
]

# What a reader may allocate beyond its file's size: room for small containers and metadata.
_SLACK_BYTES = 1 << 20


class CheckpointReadError(ValueError):
    """A checkpoint file could not be read (corrupt, truncated, forged sizes, unsupported)."""


class UnsafeCheckpointError(CheckpointReadError):
    """A checkpoint's pickle names a Python global outside the allow-list; nothing was run."""


class Malformed(Exception):
    """The bytes do not follow the format; readers report it with the file's path on top."""


class ArgsNamespace(dict):
    """Stand-in for ``argparse.Namespace``, which training scripts save as the run's ``args``: its
    attributes arrive as the pickle's state dict and are kept as plain items; nothing runs."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise Malformed("an argparse.Namespace record carries something other than attributes")
        self.update(state)


class RefusedGlobal(Exception):
    """The pickle names a global that is not on the reader's allow-list."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.qualified_name = f"{module}.{name}"


def refusal_message(path: str, error: RefusedGlobal) -> str:
    """The one message both readers give for a refused global."""
    return (f"refused to load {path}: its pickle references the Python global "
            f"'{error.qualified_name}', which a checkpoint never needs; only load checkpoints "
            "you trust")


def format_bytes(count: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


class MemoryBudget:
    """Bytes a reader may still allocate for what a file describes: ``factor`` times the file's
    size (plus a little), so a small file cannot make the reader allocate gigabytes."""

    def __init__(self, file_size: int, factor: int = 2) -> None:
        self.file_size = file_size
        self.left = factor * file_size + _SLACK_BYTES

    def charge(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise Malformed(
                f"{what} would take {format_bytes(nbytes)}, more than a file of "
                f"{format_bytes(self.file_size)} can hold")
        self.left -= nbytes


# --------------------------------------------------------------------------------------------
# Declared lengths


# Argument layouts of pickletools' descriptors whose length comes first: (prefix bytes, signed).
_COUNTED = {
    pickletools.TAKEN_FROM_ARGUMENT1: (1, False),
    pickletools.TAKEN_FROM_ARGUMENT4: (4, True),
    pickletools.TAKEN_FROM_ARGUMENT4U: (4, False),
    pickletools.TAKEN_FROM_ARGUMENT8U: (8, False),
}
_OPCODES = {op.code.encode("latin-1"): op for op in pickletools.opcodes}


def check_declared_lengths(file: BinaryIO) -> None:
    """Walk one pickle's opcodes from the file's position to its STOP without building anything,
    and fail when an argument claims more bytes than the file has left; the position is
    restored. The C unpickler allocates a declared byte string before reading it, so a 20-byte
    pickle claiming a terabyte would otherwise reach ``malloc``."""
    start = file.tell()
    end = file.seek(0, 2)
    file.seek(start)
    try:
        while True:
            code = file.read(1)
            op = _OPCODES.get(code)
            if op is None:
                raise Malformed("the pickle ends before its STOP opcode" if not code
                                else f"unknown pickle opcode {code!r} at byte {file.tell() - 1}")
            if op.name == "STOP":
                return
            arg = op.arg
            if arg is None:
                continue
            if arg.n >= 0:
                value = file.read(arg.n)
                if len(value) != arg.n:
                    raise Malformed(f"the file ends inside a {op.name} record")
                if op.name == "FRAME":  # the unpickler reads a whole frame at once
                    _check_room(file, int.from_bytes(value, "little"), end, op.name)
                continue
            if arg.n == pickletools.UP_TO_NEWLINE:
                for _ in range(2 if arg.name == "stringnl_noescape_pair" else 1):
                    if not file.readline().endswith(b"\n"):
                        raise Malformed(f"the file ends inside a {op.name} record")
                continue
            width, signed = _COUNTED[arg.n]
            prefix = file.read(width)
            if len(prefix) != width:
                raise Malformed(f"the file ends inside a {op.name} record")
            length = int.from_bytes(prefix, "little", signed=signed)
            if length < 0:
                raise Malformed(f"a {op.name} record claims a negative length")
            _check_room(file, length, end, op.name)
            file.seek(length, 1)
    finally:
        file.seek(start)


def _check_room(file: BinaryIO, length: int, end: int, what: str) -> None:
    left = end - file.tell()
    if length > left:
        raise Malformed(f"a {what} record claims {format_bytes(length)} but the file has only "
                        f"{format_bytes(left)} left")


# --------------------------------------------------------------------------------------------
# The unpickler


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals in ``allowed`` (``(module, name) -> stand-in``) and checks the
    pickle's declared lengths before loading; ``persistent_load`` handles persistent ids
    (PyTorch storages), which are refused when it is None. ``file`` must be seekable."""

    def __init__(self, file: BinaryIO, allowed: Mapping[tuple[str, str], Any],
                 persistent_load: Callable[[Any], Any] | None = None,
                 encoding: str = "utf-8") -> None:
        super().__init__(file, encoding=encoding)
        self._file = file
        self._allowed = allowed
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        # Python-2-compatible pickles (protocol <= 2) spell the builtins module __builtin__.
        module = "builtins" if module == "__builtin__" else module
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent_load is None:
            raise Malformed("a persistent reference appears where none is expected")
        return self._persistent_load(pid)

    def load(self) -> Any:
        check_declared_lengths(self._file)
        return super().load()


def materialize(obj: Any, convert: Callable[[Any], Any]) -> Any:
    """Rebuild ``obj`` with every stand-in replaced by ``convert(stand_in)``.

    ``convert`` is called for every object that is not a container and returns it unchanged when
    it is no stand-in. OrderedDicts stay OrderedDicts; other dicts (dict-based stand-ins such as
    yacs' CfgNode included) become plain dicts. Shared references stay shared and cycles are
    kept, as the unpickler built them, so a file cannot multiply its objects through them.
    """
    memo: dict[int, Any] = {}

    def walk(item: Any) -> Any:
        key = id(item)
        if key in memo:
            return memo[key]
        if isinstance(item, dict):
            result: Any = OrderedDict() if isinstance(item, OrderedDict) else {}
            memo[key] = result
            for name, value in item.items():
                result[name] = walk(value)
            return result
        if isinstance(item, list):
            result = []
            memo[key] = result
            result.extend(walk(value) for value in item)
            return result
        if isinstance(item, (tuple, set, frozenset)):
            result = type(item)(walk(value) for value in item)
        else:
            result = convert(item)
        memo[key] = result
        return result

    return walk(obj)


# Errors the unpickler, the stand-ins and numpy raise on bytes that are not a valid checkpoint.
READ_ERRORS = (Malformed, pickle.UnpicklingError, EOFError, struct.error, KeyError, IndexError,
               TypeError, AttributeError, ValueError, UnicodeDecodeError, OverflowError,
               RecursionError, MemoryError)
