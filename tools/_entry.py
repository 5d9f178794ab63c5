"""Imported first by every script in tools/: the start-up they all share.

Puts the repository root on ``sys.path`` (so ``python tools/<script>.py`` finds ``pimm`` and
``lib`` from any working directory without ``pip install -e .``), quiets Paddle's glog lines
(before its C++ core loads) and its warning about a missing ccache, and provides
:func:`entry_point`, which turns a user's mistake (or a full disk) into one ``error: ...`` line
and exit status 2, :func:`stop_on_signals`, and the argument types the scripts share.
"""
import argparse
import ast
import functools
import os
import signal
import sys
import warnings
from typing import Callable, List, Optional, Type

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
os.environ.setdefault("GLOG_minloglevel", "2")
warnings.filterwarnings("ignore", message=".*ccache.*")

Main = Callable[[Optional[List[str]]], int]


def entry_point(*user_errors: Type[BaseException], threads: bool = False) -> Callable[[Main], Main]:
    """Decorate a script's ``main(argv) -> int``: ``lib.config.ConfigError``,
    ``lib.engine.common.RunError``, ``user_errors`` and a write that found the disk full print
    ``error: <message>`` on stderr and return 2. ``threads``: use every available core first
    (Paddle defaults to one)."""
    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Optional[List[str]] = None) -> int:
            from lib.config import ConfigError
            from lib.engine.common import RunError
            from pimm.utils import is_disk_full

            try:
                if threads:
                    from pimm.utils import set_num_threads

                    set_num_threads()
                return main(argv)
            except (ConfigError, RunError, *user_errors) as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
            except OSError as err:
                if not is_disk_full(err):
                    raise
                print(f"error: {_disk_full_message(err)}", file=sys.stderr)
                return 2
        return run
    return decorate


def _disk_full_message(err: OSError) -> str:
    # pimm.utils.file_io names the file it was writing, and removed its temporary copy
    if not err.filename:
        return f"{err.strerror}: free space on the output disk and run the same command again"
    path = os.path.abspath(str(err.filename))
    return (f"{err.strerror} in {os.path.dirname(path)} (writing {os.path.basename(path)}): free "
            "space there, or write elsewhere (SAVE_PATH), and run the same command again; the "
            "files written before are intact")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised in the main thread, so a run stops as on Ctrl-C (loader workers
    shut down, files closed) instead of dying in Paddle's handler."""


_stop_signal = [None]  # the signal that is stopping this process, once one arrived


def _stop(signum, frame):
    _stop_signal[0] = signum
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def stop_on_signals() -> None:
    """Make SIGTERM (what ``kill`` and schedulers such as Slurm send) raise :class:`Terminated`
    and Ctrl-C KeyboardInterrupt, remembering which arrived (:func:`stopped_by`). Paddle is
    imported first: its C++ core installs a SIGTERM handler that prints a ``FatalError`` dump and
    kills the process, leaving loader workers behind; this one replaces it."""
    import paddle  # noqa: F401

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop)


def stopped_by(err: BaseException) -> Optional[int]:
    """The signal that made ``err`` propagate: SIGTERM or SIGINT, also when Paddle wrapped the
    exception (one raised inside a PyLayer's backward reaches the caller as an OSError); None for
    any other error."""
    if isinstance(err, Terminated) or _stop_signal[0] == signal.SIGTERM:
        return signal.SIGTERM
    if isinstance(err, KeyboardInterrupt) or _stop_signal[0] == signal.SIGINT:
        return signal.SIGINT
    return None


def arch_list(text: str) -> list:
    """argparse type of ``--arch``: a Python list literal such as ``[[0], [3], [3, 3], ...]``."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"--arch {text!r} is not a list such as "
                                         f"'[[0], [3], [3, 3], [3, 3], [3], [3], [0]]'")
    return value
