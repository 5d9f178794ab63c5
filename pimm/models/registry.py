"""Model registry: ``@register_model`` entry points and ``create_model`` by name."""
import difflib
import fnmatch
import re
from typing import Any, Callable, Dict, List

import paddle
from paddle import nn

from .checkpoint import load_checkpoint

ModelFn = Callable[..., nn.Layer]

_model_entrypoints: Dict[str, ModelFn] = {}


def register_model(fn: ModelFn) -> ModelFn:
    """Decorator: register a model-building function under its own name."""
    name = fn.__name__
    existing = _model_entrypoints.get(name)
    same_function = existing is not None and (existing.__module__, existing.__qualname__) == (
        fn.__module__, fn.__qualname__)
    if existing is not None and not same_function:
        raise ValueError(f"Model name {name!r} is already registered by {existing.__module__}; "
                         f"rename the new entry point in {fn.__module__}.")
    _model_entrypoints[name] = fn
    return fn


def _natural_key(name: str) -> List[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def list_models(pattern: str = "") -> List[str]:
    """Registered model names, naturally sorted; ``pattern`` is an fnmatch wildcard ('mobilenetv3_*')."""
    names = list(_model_entrypoints)
    if pattern:
        names = fnmatch.filter(names, pattern)
    return sorted(names, key=_natural_key)


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def model_entrypoint(name: str) -> ModelFn:
    """The registered function for ``name``; unknown names raise with the closest matches."""
    if name not in _model_entrypoints:
        close = difflib.get_close_matches(name, list(_model_entrypoints), n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} See pimm.models.list_models() for all "
                       f"{len(_model_entrypoints)} registered names.")
    return _model_entrypoints[name]


def create_model(model_name: str, checkpoint_path: str = "", **kwargs: Any) -> nn.Layer:
    """Build a registered model (``kwargs`` go to its entry point) and optionally load a checkpoint.

    The model is built inside ``paddle.utils.unique_name.guard()`` so its parameters get the same
    auto-generated names in every process: optimizer state is keyed by those names and only then
    resumes correctly.
    """
    entrypoint = model_entrypoint(model_name)
    with paddle.utils.unique_name.guard():
        model = entrypoint(**kwargs)
    if checkpoint_path:
        load_checkpoint(model, checkpoint_path)
    return model
