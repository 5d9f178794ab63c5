"""The engines: one module per (mode, method) pair, chosen by :func:`engine_for`.

An engine module exposes ``run(ctx: lib.engine.common.RunContext) -> dict`` (the run's final
metrics; ``lib.engine.common.prepare_run`` builds the context) and ``preflight(cfg)`` (the checks a
launcher makes once before starting several processes, each of which would fail on them).
Modules are imported on demand. Adding a method's mode is one line of :data:`ENGINES`.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, Tuple

from lib.config import ConfigError

__all__ = ["ENGINES", "MODES", "METHODS", "engine_for"]

#: (mode of tools/main.py, METHOD) -> the module that runs it. ``train`` is the method's search
#: (Cream: supernet training with prioritized paths; SPOS: supernet training with uniform paths;
#: P-DARTS: the progressive differentiable search), ``evolve`` SPOS's evolutionary search of a
#: trained supernet (SPOS's or Cream's), ``retrain`` trains a child network from scratch, ``test``
#: evaluates a checkpoint, ``correlation`` compares how a supernet ranks paths with their
#: accuracies trained alone.
ENGINES: Dict[Tuple[str, str], str] = {
    ("train", "cream"): "lib.engine.search",
    ("retrain", "cream"): "lib.engine.retrain",
    ("test", "cream"): "lib.engine.test",
    ("train", "pdarts"): "lib.engine.darts_search",
    ("retrain", "pdarts"): "lib.engine.retrain",
    ("test", "pdarts"): "lib.engine.test",
    ("train", "spos"): "lib.engine.spos_train",
    ("evolve", "spos"): "lib.engine.evolve",
    ("evolve", "cream"): "lib.engine.evolve",
    ("retrain", "spos"): "lib.engine.retrain",
    ("test", "spos"): "lib.engine.test",
    ("correlation", "cream"): "lib.engine.correlation",
}
MODES: Tuple[str, ...] = tuple(sorted({mode for mode, _ in ENGINES}))
METHODS: Tuple[str, ...] = tuple(sorted({method for _, method in ENGINES}))


def engine_for(mode: str, method: str) -> ModuleType:
    """The engine module of ``mode`` for ``METHOD`` ``method``; a ConfigError names what exists."""
    if (mode, method) not in ENGINES:
        offered = sorted(m for md, m in ENGINES if md == mode)
        if not offered:
            raise ConfigError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        raise ConfigError(f"METHOD {method!r} has no {mode!r} mode; set METHOD to one of "
                          f"{', '.join(offered)}")
    name = ENGINES[(mode, method)]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        raise ConfigError(f"mode {mode!r} is not available in this checkout: {name} is "
                          "missing") from None
