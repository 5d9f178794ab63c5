"""Loading model weights and resuming training from checkpoint files.

Paddle checkpoints are ``paddle.save``d dicts (``.pdparams``) with the keys of docs/DEVELOPING.md:
``state_dict``, ``state_dict_ema``, ``optimizer``, ``scheduler``, ``epoch``, ``version``, ...
Weights are also read from checkpoints of the ``model`` / ``model_ema`` layout (the PaddlePaddle
PeleeNet reproduction, DeiT-style training code), from a bare state dict (name -> tensor) and from
PyTorch files (legacy and zip ``torch.save`` formats, read without torch by
``pimm.utils.torch_checkpoint``). Every file is read by ``read_checkpoint_file``, the single place
that tells file formats apart; neither format's reader runs code from the
file (``pimm.utils.restricted_pickle``).
"""
import logging
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle
from paddle import nn

from pimm.utils.paddle_checkpoint import read_paddle_checkpoint
from pimm.utils.torch_checkpoint import is_torch_checkpoint, read_torch_checkpoint, torch_to_paddle_state_dict

_logger = logging.getLogger(__name__)

# Prefixes that wrappers add to parameter names: torch DataParallel/DDP and paddle.DataParallel.
_WRAPPER_PREFIXES = ("module.", "_layers.")
_ZIP_MAGIC = b"PK"
# Files named like PyTorch checkpoints are only ever opened by the allow-listing torch reader, so
# a pickle downloaded as "model.pth.tar" cannot run code even when it is no torch file at all.
_TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt")
# Checkpoint entries that hold model weights, as (weights, EMA weights): this project's layout
# first, then the one of the PaddlePaddle PeleeNet reproduction and DeiT-style code.
_WEIGHT_LAYOUTS = (("state_dict", "state_dict_ema"), ("model", "model_ema"))
_WEIGHT_KEYS = tuple(key for layout in _WEIGHT_LAYOUTS for key in layout)


class CheckpointMismatchError(ValueError):
    """A checkpoint's weights do not fit the model (missing / unexpected names, wrong shapes).
    ``problems``: each problem in short (at most a few names), for one-line errors."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)

    @property
    def first_problem(self) -> str:
        """The first problem in short (a missing or unexpected name, a shape), for a one-line
        error; the whole message when it lists none."""
        return self.problems[0] if self.problems else str(self)


def _names(kind: str, names: Sequence[str], shown: Optional[int] = None) -> str:
    listed = ", ".join(names[:shown]) + (", ..." if shown is not None and len(names) > shown else "")
    return f"{kind} ({len(names)}): {listed}"


class TorchStateDict(OrderedDict):
    """Weights read from a PyTorch file, still in torch's names and layouts (``running_mean``,
    ``num_batches_tracked``, Linear weights ``[out, in]``). ``load_model_weights`` converts them
    for the model it loads them into (only the model tells which tensors are Linear weights)."""


def _is_torch_file(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(len(_ZIP_MAGIC))
    return head == _ZIP_MAGIC or path.lower().endswith(_TORCH_SUFFIXES) or is_torch_checkpoint(path)


def _mark_torch_weights(checkpoint: Any) -> Any:
    if _is_state_dict(checkpoint):
        return TorchStateDict(checkpoint)
    if isinstance(checkpoint, dict):
        return {key: TorchStateDict(value) if key in _WEIGHT_KEYS and _is_state_dict(value) else value
                for key, value in checkpoint.items()}
    return checkpoint


def read_checkpoint_file(path: str) -> Any:
    """Read a checkpoint file into Python objects, whatever its format.

    PyTorch files (zip or legacy ``torch.save`` format, or any file named ``*.pth``, ``*.pt``,
    ``*.tar``, ``*.ckpt``) are read by ``pimm.utils.torch_checkpoint``: tensors come back as numpy
    arrays, yacs configs as dicts, and the weights under ``state_dict`` / ``state_dict_ema`` (or a
    bare state dict) as ``TorchStateDict``. Anything else is read as a ``paddle.save`` file by
    ``pimm.utils.paddle_checkpoint`` (what ``paddle.load`` returns). Neither runs code from the file.

    Raises FileNotFoundError for a missing file, ``UnsafeCheckpointError`` for a file whose pickle
    names anything but the containers, arrays and tensors a checkpoint holds, and
    ``CheckpointReadError`` (a ValueError) for a corrupt, truncated or forged file.
    """
    if not path or not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint file at {path!r}: check the path (and the run "
                                f"directory it should be in).")
    if _is_torch_file(path):
        return _mark_torch_weights(read_torch_checkpoint(path))
    return read_paddle_checkpoint(path)


def _strip_wrapper_prefixes(name: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix):]
                stripped = True
    return name


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, (paddle.Tensor, np.ndarray)) for k, v in obj.items())


def _weight_layout(checkpoint: Any) -> Optional[Tuple[str, str]]:
    """The (weights, EMA weights) keys of a checkpoint dict; None for a bare state dict."""
    if not isinstance(checkpoint, dict) or _is_state_dict(checkpoint):
        return None
    return next((layout for layout in _WEIGHT_LAYOUTS if layout[0] in checkpoint), None)


def weights_entry(checkpoint: Any, use_ema: bool = False) -> Optional[str]:
    """The entry of a checkpoint (as ``read_checkpoint_file`` returns it) whose weights
    :func:`select_state_dict` takes: ``state_dict`` or ``model``, or with ``use_ema`` their EMA
    twin (``state_dict_ema``, ``model_ema``) when it holds weights; None for a bare state dict."""
    layout = _weight_layout(checkpoint)
    if layout is None:
        return None
    key, ema_key = layout
    return ema_key if use_ema and checkpoint.get(ema_key) else key


def select_state_dict(checkpoint: Any, path: str, use_ema: bool = False) -> Dict[str, Any]:
    """The model weights of a checkpoint read by ``read_checkpoint_file`` (from ``path``, named
    in messages): see :func:`load_state_dict`."""
    key = weights_entry(checkpoint, use_ema)
    if key is not None:
        if use_ema and not key.endswith("_ema"):
            # The reference crashes here; falling back keeps evaluation of non-EMA runs possible.
            _logger.warning("%s has no EMA weights (%s_ema); using %s.", path, key, key)
        state_dict = checkpoint[key]
    else:
        state_dict = checkpoint
    if not _is_state_dict(state_dict):
        expected = " or ".join(repr(weights) for weights, _ in _WEIGHT_LAYOUTS)
        raise ValueError(f"{path!r} holds no model weights: expected a dict with {expected} or a "
                         f"dict of name -> tensor, got {type(state_dict).__name__}.")
    stripped = OrderedDict((_strip_wrapper_prefixes(k), v) for k, v in state_dict.items())
    return TorchStateDict(stripped) if isinstance(state_dict, TorchStateDict) else stripped


def load_state_dict(path: str, use_ema: bool = False) -> Dict[str, Any]:
    """The model weights in a checkpoint file (EMA weights with ``use_ema`` when present), with
    ``module.`` / ``_layers.`` wrapper prefixes removed. Weights from a PyTorch file come as a
    ``TorchStateDict`` (torch names and layouts, converted when loaded into a model)."""
    return select_state_dict(read_checkpoint_file(path), path, use_ema)


def _shape(value: Any) -> Tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def load_model_weights(model: nn.Layer, state_dict: Dict[str, Any], strict: bool = True,
                       source: str = "state dict") -> Tuple[List[str], List[str]]:
    """Copy ``state_dict`` into ``model``, checking names and shapes.

    ``Layer.set_state_dict`` only warns about shape mismatches and skips them; here, with ``strict``,
    any missing name, unexpected name or shape mismatch raises one ``CheckpointMismatchError`` that
    lists them all. Without ``strict`` the fitting entries are loaded and the rest logged.
    A ``TorchStateDict`` is first converted to Paddle's names and layouts for ``model``.
    Returns (missing keys, unexpected keys).
    """
    if isinstance(state_dict, TorchStateDict):
        state_dict = torch_to_paddle_state_dict(state_dict, model)
    model_state = model.state_dict()
    missing = [k for k in model_state if k not in state_dict]
    unexpected = [k for k in state_dict if k not in model_state]
    mismatched = [(k, _shape(state_dict[k]), _shape(v)) for k, v in model_state.items()
                  if k in state_dict and _shape(state_dict[k]) != _shape(v)]
    if missing or unexpected or mismatched:
        lines = [f"{source} does not fit {type(model).__name__}:"]
        problems = []  # the same, with at most 5 names each
        for kind, names in (("missing keys", missing), ("unexpected keys", unexpected)):
            if names:
                lines.append("  " + _names(kind, names))
                problems.append(_names(kind, names, shown=5))
        for name, ckpt_shape, model_shape in mismatched:
            lines.append(f"  shape mismatch {name}: checkpoint {list(ckpt_shape)}, model {list(model_shape)}")
            problems.append(lines[-1].strip())
        if strict:
            lines.append("Build the model that wrote the checkpoint, or load with strict=False.")
            raise CheckpointMismatchError("\n".join(lines), problems)
        _logger.warning("\n".join(lines))
    skip = {name for name, _, _ in mismatched}
    with warnings.catch_warnings():
        # Paddle warns once per entry it skips; the mismatches were reported above already.
        warnings.filterwarnings("ignore", message="Skip loading for")
        model.set_state_dict({k: v for k, v in state_dict.items() if k in model_state and k not in skip})
    return missing, unexpected


def load_checkpoint(model: nn.Layer, path: str, use_ema: bool = False,
                    strict: bool = True) -> Tuple[List[str], List[str]]:
    """Load a checkpoint file's weights into ``model`` (see ``load_model_weights``)."""
    return load_model_weights(model, load_state_dict(path, use_ema), strict, source=f"Checkpoint {path!r}")


@dataclass
class ResumeState:
    """What ``resume_checkpoint`` recovered besides the weights."""

    start_epoch: Optional[int]  # first epoch to run; None for a bare state dict
    metric: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)  # arch, args and engine-specific entries


_CONSUMED_KEYS = ("state_dict", "state_dict_ema", "optimizer", "scheduler", "epoch", "version", "metric")


def _optimizer_parameter_names(optimizer: paddle.optimizer.Optimizer) -> List[str]:
    groups = optimizer._param_groups  # Paddle has no public accessor: a list of params or of dicts
    params = [p for g in groups for p in g["params"]] if groups and isinstance(groups[0], dict) else groups
    return [p.name for p in params]


def _match_optimizer_state(optimizer: paddle.optimizer.Optimizer, state: Dict[str, Any],
                           path: str) -> Dict[str, Any]:
    """Rename saved accumulators (``<param name>_<kind>_<n>``) to the names this optimizer uses.

    Paddle names accumulators ``<param>_<kind>_<n>`` with a process-wide counter ``n`` and refuses
    a state whose names differ, so resuming in a process that already built an optimizer over
    same-named parameters (tests, search followed by retraining) would fail. Accumulators are
    matched by (parameter, kind) instead. Entries that match no parameter mean the model's
    auto-generated names differ from the saved run's: raised, since Paddle would drop them.
    """
    names = sorted(_optimizer_parameter_names(optimizer), key=len, reverse=True)
    generator = paddle.base.unique_name.generator
    renamed, orphans = {}, []
    for key, value in state.items():
        if not isinstance(value, (paddle.Tensor, np.ndarray)):
            renamed[key] = value  # LR_Scheduler, master_weights
            continue
        param = next((n for n in names if key.startswith(n + "_")), None)
        kind = key[len(param) + 1:].rpartition("_")[0] if param else ""
        if not kind:
            orphans.append(key)
            continue
        existing = optimizer._accumulators.get(kind, {}).get(param)
        if existing is not None:
            renamed[existing.name] = value
        else:  # the name Paddle will generate when the accumulator is created at the first step
            prefix = f"{param}_{kind}"
            renamed[f"{generator.prefix}{prefix}_{generator.ids.get(prefix, 0)}"] = value
    if orphans:
        raise CheckpointMismatchError(
            f"Optimizer state in {path!r} does not match the model's parameter names "
            f"({len(orphans)} entries, e.g. {orphans[:3]}; the model has e.g. {names[-3:]}). Build "
            f"the model inside paddle.utils.unique_name.guard() (create_model does) so names are stable.")
    return renamed


def restore_optimizer_state(optimizer: paddle.optimizer.Optimizer, state: Dict[str, Any], path: str) -> None:
    """Load ``state`` (an ``optimizer.state_dict()`` saved by this project, e.g. an engine's second
    optimizer in a checkpoint's extra state) into ``optimizer``, matching accumulators by
    parameter and kind; ``path`` names the file in errors."""
    optimizer.set_state_dict(_match_optimizer_state(optimizer, state, path))


def _load_scheduler_state(scheduler: Any, state: Dict[str, Any]) -> None:
    setter = getattr(scheduler, "set_state_dict", None) or getattr(scheduler, "load_state_dict", None)
    if setter is None:
        raise TypeError(f"{type(scheduler).__name__} has no set_state_dict/load_state_dict to resume.")
    setter(state)


def resume_checkpoint(model: nn.Layer, path: str, optimizer: Optional[paddle.optimizer.Optimizer] = None,
                      scheduler: Any = None, ema_model: Optional[nn.Layer] = None,
                      strict: bool = True) -> ResumeState:
    """Restore model (and optionally optimizer, scheduler and EMA model) state from a checkpoint.

    ``start_epoch`` is ``epoch + 1`` for ``version >= 2`` files (the epoch stored is the last one
    completed) and ``epoch`` for older ones. Entries that are asked for but absent raise.
    """
    checkpoint = read_checkpoint_file(path)
    load_model_weights(model, select_state_dict(checkpoint, path, use_ema=False), strict,
                       source=f"Checkpoint {path!r}")
    layout = _weight_layout(checkpoint)
    if layout != _WEIGHT_LAYOUTS[0]:
        # Other codebases' optimizer state is keyed by their own parameter names: weights only.
        if optimizer is not None or scheduler is not None or ema_model is not None:
            kind = "a bare state dict" if layout is None else "another codebase's checkpoint"
            raise ValueError(f"{path!r} is {kind}: it has no optimizer, scheduler or EMA state this "
                             f"project can resume from. Load its weights (load_checkpoint) and "
                             f"start a new schedule.")
        return ResumeState(start_epoch=None)

    def required(key: str) -> Any:
        if checkpoint.get(key) is None:
            raise ValueError(f"Checkpoint {path!r} has no {key!r} entry to resume from.")
        return checkpoint[key]

    if isinstance(checkpoint["state_dict"], TorchStateDict) and (optimizer is not None or scheduler is not None):
        raise ValueError(f"{path!r} is a PyTorch checkpoint: its optimizer and scheduler state cannot "
                         f"drive a Paddle optimizer. Load its weights (load_checkpoint, or resume with "
                         f"the model and EMA model only) and start a new schedule.")

    if optimizer is not None:
        restore_optimizer_state(optimizer, required("optimizer"), path)
    if scheduler is not None:
        _load_scheduler_state(scheduler, required("scheduler"))
    if ema_model is not None:
        ema_state = select_state_dict({"state_dict": required("state_dict_ema")}, path, use_ema=False)
        load_model_weights(ema_model, ema_state, strict, source=f"EMA weights in {path!r}")
    start_epoch = None
    if checkpoint.get("epoch") is not None:
        start_epoch = int(checkpoint["epoch"]) + (1 if checkpoint.get("version", 1) >= 2 else 0)
    metric = checkpoint.get("metric")
    extra = {k: v for k, v in checkpoint.items() if k not in _CONSUMED_KEYS}
    return ResumeState(start_epoch=start_epoch, metric=None if metric is None else float(metric), extra=extra)
