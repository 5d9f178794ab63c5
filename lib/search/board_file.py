"""``board.json``: the file a search writes into its run folder after every epoch, and reads back
when a child network is retrained or tested from it (``NET.BOARD_JSON``).

Content (``PrioritizedBoard.to_json`` plus the space's resolution): ``paths`` (best first, each
with ``arch``, ``flops``, ``params``, ``prec1``), ``best_in_range`` (with ``val_prec1``, its
validation top-1, once validated), ``flops_minimum``, ``flops_maximum``, ``epoch``, ``resolution``,
and ``validated``: the random paths validated at the end of the epoch, ``prec1`` their validation
top-1 (``pimm.utils.plots`` draws them beside the board).
"""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List

from lib.models import validate_arch
from pimm.utils import atomic_write_text
from pimm.utils.plots import BOARD_FILE

__all__ = ["BOARD_FILE", "write_board_file", "best_board_entry", "board_paths"]



def write_board_file(folder: str, content: Dict[str, Any]) -> str:
    """Write ``content`` as ``folder/board.json`` (atomically); returns the path."""
    path = os.path.join(folder, BOARD_FILE)
    atomic_write_text(json.dumps(content, indent=1) + "\n", path)
    return path


def _number(value: Any, field: str, path: str, unit: str = "MFLOPs") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: {field} is {value!r}, not a number ({unit}); it is not a "
                         "board.json a search wrote")
    return float(value)


def _checked(entry: Dict[str, Any], field: str, path: str) -> Dict[str, Any]:
    """``entry`` with its ``arch`` validated and its ``flops`` and ``params``, when present, numbers."""
    for key, unit in (("flops", "MFLOPs"), ("params", "M params")):
        if entry.get(key) is not None:
            _number(entry[key], f"{field}.{key}", path, unit)
    return dict(entry, arch=validate_arch(entry["arch"]))


def _read_board(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            board = json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path} as JSON ({err})") from err
    if not isinstance(board, dict) or not isinstance(board.get("paths"), list):
        raise ValueError(f"{path} has no 'paths' list; it is not a Cream board.json")
    return board


def best_board_entry(path: str) -> Dict[str, Any]:
    """The best path of a ``board.json`` whose FLOPs lie in the board's own
    ``[flops_minimum, flops_maximum]``: ``best_in_range`` when present, else the first such
    entry of ``paths`` (the board lists them best first). Returns the entry (its ``flops``,
    ``params``, ... as the board has them) with ``arch`` validated.

    Raises FileNotFoundError for a missing file and ValueError, naming the file, for one that is
    not a usable board.
    """
    board = _read_board(path)
    best = board.get("best_in_range")
    if isinstance(best, dict) and best.get("arch"):
        return _checked(best, "best_in_range", path)
    low = _number(board.get("flops_minimum", -math.inf), "flops_minimum", path)
    high = _number(board.get("flops_maximum", math.inf), "flops_maximum", path)
    for i, entry in enumerate(board["paths"]):
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: paths[{i}] is not an object with 'arch' and 'flops'")
        flops = entry.get("flops")
        if entry.get("arch") and (flops is None
                                  or low <= _number(flops, f"paths[{i}].flops", path) <= high):
            return _checked(entry, f"paths[{i}]", path)
    raise ValueError(f"no path in {path} lies within its FLOPs range [{low}, {high}]; give the path "
                     "you want as NET.SELECTION -1 with NET.INPUT_ARCH")


def board_paths(path: str) -> List[List[List[int]]]:
    """Every path of a ``board.json``, best first (same errors as :func:`best_board_entry`)."""
    board = _read_board(path)
    try:
        return [validate_arch(entry["arch"]) for entry in board["paths"]]
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path}: a 'paths' entry has no arch list ({err})") from err
