"""Read training options from either timm-style args or a Cream yacs config.

timm passes an argparse namespace with lower-case attributes (``args.lr``); Cream passes a yacs
``CfgNode`` with upper-case keys (``cfg.LR``). Factories call :func:`read_options` once and then
work with a namespace of lower-case names, so neither spelling leaks further into the code.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

__all__ = ["REQUIRED", "read_options", "to_plain_dict"]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: marks an option that has no default: reading it from a source that lacks it raises
REQUIRED: Any = _Required()

_MISSING = object()


def _lookup(source: Any, name: str) -> Any:
    for key in (name, name.upper()):
        if isinstance(source, Mapping):
            if key in source:
                return source[key]
        elif hasattr(source, key):
            return getattr(source, key)
    return _MISSING


def read_options(source: Any, spec: Mapping[str, Any], caller: str) -> SimpleNamespace:
    """Look every ``name`` of ``spec`` up in ``source`` as ``name`` or ``NAME``.

    ``spec`` maps lower-case option names to defaults (or :data:`REQUIRED`). ``source`` may be an
    object with attributes (argparse namespace), a mapping (dict, yacs ``CfgNode``), or None (all
    defaults). ``caller`` names the function in error messages.
    """
    values = {}
    for name, default in spec.items():
        value = _MISSING if source is None else _lookup(source, name)
        if value is _MISSING:
            if default is REQUIRED:
                raise ValueError(
                    f"{caller}: option '{name}' (config key '{name.upper()}') is missing from "
                    f"the given {type(source).__name__}; set it in the config or args"
                )
            value = default
        values[name] = value
    return SimpleNamespace(**values)


def to_plain_dict(obj: Any) -> dict:
    """A config/args object as nested plain dicts, lists and scalars (safe to pickle and read
    back without the class that produced it: yacs ``CfgNode`` becomes ``dict``)."""
    if obj is None:
        return {}
    if isinstance(obj, Mapping):
        mapping = obj
    elif hasattr(obj, "__dict__"):
        mapping = vars(obj)
    else:
        raise TypeError(
            f"expected a mapping or an argparse-style namespace for the run config, got "
            f"{type(obj).__name__}"
        )
    return {str(k): _to_plain(v) for k, v in mapping.items()}


def _to_plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "size", 1) == 1:  # numpy / paddle scalars
        return value.item()
    return str(value)
