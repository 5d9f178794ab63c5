"""Crash-safe file writes: a reader never sees a half-written file under a real name.

Everything is first written to a hidden temporary file in the destination folder (same file
system, so the final ``os.replace`` is an atomic rename), flushed to disk, then renamed into place.
A crash before the rename leaves the previous file untouched and at most a stale
``.<name>.<random>.tmp`` behind, which :func:`remove_stale_temp_files` clears. A full disk (or
quota) fails the write with an ``OSError`` whose ``errno`` is ``ENOSPC`` (``EDQUOT``) and whose
``filename`` is the destination, not the temporary name; the temporary file is removed.
"""
from __future__ import annotations

import errno
import functools
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Iterable

import paddle

__all__ = ["atomic_save", "atomic_write_bytes", "atomic_write_text", "atomic_link",
           "remove_stale_temp_files", "is_disk_full"]

_TEMP_SUFFIX = ".tmp"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for want of space (a full disk or quota)."""
    return isinstance(err, OSError) and err.errno in _DISK_FULL


def _fsync_path(path: str) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(folder: str) -> None:
    # Makes the rename itself durable on POSIX; not every platform can open a directory.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@functools.lru_cache(maxsize=None)
def _new_file_mode() -> int:
    # what open() gives a new file under this process's umask, read at the first write (not at
    # import) and once: os.umask can only be read by setting it
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _temp_path_for(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=_TEMP_SUFFIX,
                               dir=folder)
    try:
        # mkstemp makes the file private (0600); the renamed file should be readable like any
        # other the user writes (a shared run folder, a web server showing the plots)
        os.fchmod(fd, _new_file_mode())
    finally:
        os.close(fd)
    return tmp


def _write_then_rename(path: str, write: Callable[[str], None]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    try:
        tmp = _temp_path_for(path)
    except OSError as err:
        if is_disk_full(err):
            raise OSError(err.errno, err.strerror, path) from err
        raise
    try:
        write(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if is_disk_full(err):  # name the file the caller asked for, not the temporary one
            raise OSError(err.errno, err.strerror, path) from err
        raise
    _fsync_dir(folder)


def atomic_save(obj: Any, path: str) -> None:
    """``paddle.save(obj, path)`` through a temporary file and an atomic rename."""
    _write_then_rename(path, lambda tmp: paddle.save(obj, tmp))


def atomic_write_bytes(data: bytes, path: str) -> None:
    """Write ``data`` to ``path`` atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    _write_then_rename(path, write)


def atomic_write_text(text: str, path: str) -> None:
    """Write a small text file (an index, a summary) atomically, UTF-8 encoded."""
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_link(src: str, dst: str) -> None:
    """Make ``dst`` hold the content of ``src`` (a hard link when the file system allows it,
    else a copy), replacing an existing ``dst`` atomically."""
    if os.path.exists(dst) and os.path.samefile(src, dst):
        # already linked; rename() of one hard link onto another of the same file does nothing,
        # which would leave the temporary link behind
        return

    def write(tmp: str) -> None:
        os.remove(tmp)  # os.link refuses an existing target
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)

    _write_then_rename(dst, write)


def remove_stale_temp_files(folder: str, target_patterns: Iterable[str]) -> list:
    """Delete temporaries left by a crash for targets whose basename matches one of the regular
    expressions in ``target_patterns``; returns the removed paths."""
    if not os.path.isdir(folder):
        return []
    targets = [re.compile(p) for p in target_patterns]
    temp_name = re.compile(r"^\.(?P<target>.+)\.[^.]+" + re.escape(_TEMP_SUFFIX) + "$")
    removed = []
    for name in os.listdir(folder):
        m = temp_name.match(name)
        if m and any(t.fullmatch(m.group("target")) for t in targets):
            path = os.path.join(folder, name)
            os.remove(path)
            removed.append(path)
    return removed
