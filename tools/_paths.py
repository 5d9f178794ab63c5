"""Imported first by every script in tools/: puts the repository root on ``sys.path`` so that
``python tools/<script>.py`` finds ``pimm`` and ``lib`` from any working directory. Also holds the
command-line argument types the scripts share."""
import argparse
import ast
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


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
