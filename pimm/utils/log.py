"""Logging set-up for training scripts and output folders."""
from __future__ import annotations

import logging
import os
import sys
from typing import Optional

__all__ = ["setup_logger", "get_outdir"]

_FORMAT = "%(asctime)s | %(message)s"
_DATEFMT = "%m/%d %H:%M:%S"


def setup_logger(name: str = "cream", log_file: Optional[str] = None, rank: int = 0,
                 level: int = logging.INFO) -> logging.Logger:
    """Logger ``name``: on rank 0 to stdout and, if given, to ``log_file`` (appended; its folder
    is created); on other ranks only errors reach the console. Calling it again replaces the
    handlers it installed before instead of adding duplicates."""
    logger = logging.getLogger(name)
    for handler in [h for h in logger.handlers if getattr(h, "_pimm_handler", False)]:
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(_FORMAT, datefmt=_DATEFMT)
    handlers = [logging.StreamHandler(sys.stdout)]
    if rank == 0 and log_file:
        folder = os.path.dirname(os.path.abspath(log_file))
        os.makedirs(folder, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    for handler in handlers:
        handler._pimm_handler = True
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(level if rank == 0 else logging.ERROR)
    logger.propagate = False  # the root logger would print every line a second time
    return logger


def get_outdir(path: str, *paths: str, inc: bool = False) -> str:
    """``os.path.join(path, *paths)``, created if missing. With ``inc`` an existing folder is
    not reused: the first free ``<folder>-1``, ``<folder>-2``, ... is created instead."""
    outdir = os.path.join(path, *paths)
    if not os.path.exists(outdir):
        os.makedirs(outdir)
        return outdir
    if not os.path.isdir(outdir):
        raise NotADirectoryError(f"output path {outdir} exists and is not a folder")
    if not inc:
        return outdir
    count = 1
    while os.path.exists(f"{outdir}-{count}"):
        count += 1
    outdir = f"{outdir}-{count}"
    os.makedirs(outdir)
    return outdir
