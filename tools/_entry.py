"""Imported first by every script in tools/: the start-up they all share.

Puts the repository root on ``sys.path`` (so ``python tools/<script>.py`` finds ``pimm`` and
``lib`` from any working directory without ``pip install -e .``), quiets Paddle's glog lines
(before its C++ core loads) and its warning about a missing ccache, and provides
:func:`entry_point`, which turns a user's mistake into one ``error: ...`` line and exit status 2,
and the argument types the scripts share.
"""
import argparse
import ast
import functools
import os
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
    ``lib.engine.common.RunError`` and ``user_errors`` print ``error: <message>`` on stderr and
    return 2. ``threads``: use every available core first (Paddle defaults to one)."""
    def decorate(main: Main) -> Main:
        @functools.wraps(main)
        def run(argv: Optional[List[str]] = None) -> int:
            from lib.config import ConfigError
            from lib.engine.common import RunError

            try:
                if threads:
                    from pimm.utils import set_num_threads

                    set_num_threads()
                return main(argv)
            except (ConfigError, RunError, *user_errors) as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        return run
    return decorate


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
