"""An exclusive lock on a run folder, held for the run's lifetime.

``fcntl.flock`` on ``<folder>/run.lock``: the kernel releases it when the holder exits, however it
exits (kill -9 included), so a crashed run never leaves a stale lock and the next run needs no
clean-up. The file itself stays; while the lock is held it names the holder (pid, host, start
time, what it runs), which is what a second run is told. Where ``fcntl`` does not exist
(Windows) folders are not locked.
"""
from __future__ import annotations

import json
import os
import socket
import time
from typing import IO, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None

__all__ = ["RunLock", "RunFolderBusyError", "LOCK_FILE"]

LOCK_FILE = "run.lock"


class RunFolderBusyError(RuntimeError):
    """Another live process holds the folder's lock; the message names it."""


class RunLock:
    """``RunLock(folder).acquire(what)`` or raise :class:`RunFolderBusyError`; ``release()``
    (or the process ending) frees it. Also a context manager."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = os.path.join(folder, LOCK_FILE)
        self._file: Optional[IO[str]] = None

    def acquire(self, what: str = "") -> "RunLock":
        if fcntl is None or self._file is not None:
            return self
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read()
            handle.close()
            raise RunFolderBusyError(f"{self.folder} is in use by another run "
                                     f"({_describe(holder)})") from None
        except BaseException:
            handle.close()
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}))
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the descriptor releases the flock
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        return (f"pid {info['pid']} on host {info['host']}, started {info['started']}"
                + (f", {info['what']}" if info.get("what") else ""))
    except (ValueError, KeyError, TypeError):
        return "holder unknown: it has not written its name yet"
