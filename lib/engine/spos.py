"""The SPOS keys of a config (``SPOS.*``, README "SPOS") turned into ``lib.spos`` objects, for the
engines of METHOD 'spos': supernet training (``lib.engine.spos_train``), the evolution
(``lib.engine.evolve``) and the child network of retrain / test (``lib.engine.child``).

Paths are priced in MFLOPs everywhere a config or a file names FLOPs (``SPOS.FLOPS_RANGE``,
``SPOS.EVOLUTION.FLOPS_LIMIT``, ``evolution.json``), as Cream's are.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Tuple

from yacs.config import CfgNode

from lib.config import ConfigError
from lib.engine.common import RunError
from lib.spos import (RELEASED_ARCH, PathSpace, SposSupernet, UniformPathSampler, Widths, build_supernet,
                      spos_path_space, validate_arch)

__all__ = ["MFLOPS", "spos_widths", "spos_space", "build_spos_supernet", "spos_path_sampler",
           "read_evolution_file", "spos_child_arch"]

MFLOPS = 1e6


def spos_widths(cfg: CfgNode) -> Widths:
    """``SPOS.STAGE_CHANNELS`` / ``SPOS.HEAD_CHANNELS`` (ConfigError naming them when invalid)."""
    try:
        return Widths(tuple(int(c) for c in cfg.SPOS.STAGE_CHANNELS), int(cfg.SPOS.HEAD_CHANNELS))
    except (TypeError, ValueError) as err:
        raise ConfigError(f"SPOS.STAGE_CHANNELS / SPOS.HEAD_CHANNELS: {err}") from None


def spos_space(cfg: CfgNode) -> PathSpace:
    """SPOS's path space for the configured widths and classes, in MFLOPs."""
    return spos_path_space(spos_widths(cfg), int(cfg.DATASET.NUM_CLASSES), flops_unit=MFLOPS)


def build_spos_supernet(cfg: CfgNode) -> SposSupernet:
    """The SPOS supernet of the config (classes, ``NET.DROPOUT_RATE``, widths)."""
    return build_supernet(num_classes=int(cfg.DATASET.NUM_CLASSES), drop_rate=float(cfg.NET.DROPOUT_RATE),
                          widths=spos_widths(cfg))


def spos_path_sampler(cfg: CfgNode, space: PathSpace, seed: int) -> UniformPathSampler:
    """Uniform paths, within ``SPOS.FLOPS_RANGE`` bin by bin (``SPOS.FLOPS_BIN``) when it is set."""
    window = [float(v) for v in cfg.SPOS.FLOPS_RANGE]
    if window and len(window) != 2:
        raise ConfigError(f"SPOS.FLOPS_RANGE is [lower, upper] in MFLOPs (e.g. [290, 360]) or [], got {window}")
    try:
        return UniformPathSampler(space, window or None, float(cfg.SPOS.FLOPS_BIN), seed=seed)
    except ValueError as err:
        raise ConfigError(f"SPOS.FLOPS_RANGE / SPOS.FLOPS_BIN: {err}") from None


def read_evolution_file(path: str) -> Dict[str, Any]:
    """An ``evolution.json`` (written by ``tools/main.py evolve``); RunError naming the file when it
    is missing or not one."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise RunError(f"no evolution.json at {path}: point SPOS.EVOLUTION_JSON at the file an evolve run "
                       "wrote into its run folder") from None
    except (OSError, ValueError) as err:
        raise RunError(f"{path} is not a readable evolution.json: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("best"), dict) or "arch" not in data["best"]:
        raise RunError(f"{path} has no best path (a 'best' entry with an 'arch'): is it an evolution.json "
                       "of a search that scored at least one path?")
    return data


def spos_child_arch(cfg: CfgNode) -> Tuple[Tuple[int, ...], str]:
    """``(arch, where it came from)`` for METHOD spos: ``SPOS.ARCH``, else the best path of
    ``SPOS.EVOLUTION_JSON`` (a search on this config's widths), else the officially released path."""
    arch, evolution = list(cfg.SPOS.ARCH), str(cfg.SPOS.EVOLUTION_JSON or "")
    if arch and evolution:
        raise ConfigError("SPOS.ARCH and SPOS.EVOLUTION_JSON are both set: keep one of them")
    if arch:
        try:
            return validate_arch(arch), "SPOS.ARCH"
        except ValueError as err:
            raise ConfigError(f"SPOS.ARCH: {err}") from None
    if not evolution:
        return RELEASED_ARCH, "the released SPOS path"
    data = read_evolution_file(evolution)
    method: Optional[str] = data.get("method")
    if method != "spos":
        raise RunError(f"{evolution} is an evolution on the {method} supernet, not SPOS's: retrain its best "
                       "path with METHOD cream and NET.INPUT_ARCH")
    widths = spos_widths(cfg)
    searched = data.get("widths", {})
    if searched != widths.record():
        raise ConfigError(f"{evolution} searched a network of widths {searched}; set SPOS.STAGE_CHANNELS and "
                          "SPOS.HEAD_CHANNELS to them (the path's FLOPs hold for those widths only)")
    try:
        return validate_arch(data["best"]["arch"]), f"best path of {evolution}"
    except ValueError as err:
        raise RunError(f"{evolution}: its best path is not an SPOS path: {err}") from None
