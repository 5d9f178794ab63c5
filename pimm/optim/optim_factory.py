"""Optimizer factory with timm 0.1.20's names and semantics, on Paddle optimizers.

Paddle's Momentum (with or without Nesterov), Adam and AdamW perform the same arithmetic as
``torch.optim.SGD``/``Adam`` and timm's ``AdamW`` (checked in tests/pimm/optim against numpy
references of the torch formulas); RMSprop has its own classes in :mod:`pimm.optim.rmsprop`.

Learning rates: the optimizer has one global rate, moved by schedulers through ``set_lr``; a
parameter group's ``learning_rate`` is a *multiplier* of it (Paddle's convention).
"""
from __future__ import annotations

from typing import Any, Iterable, List, Optional, Sequence, Union

import paddle
from paddle.nn.clip import GradientClipBase

from pimm.utils.options import REQUIRED, read_options

from .rmsprop import RMSprop, RMSpropTF
from .state import materialize_optimizer_state

__all__ = ["create_optimizer", "add_weight_decay", "OPTIMIZER_NAMES"]

OPTIMIZER_NAMES = ("sgd", "nesterov", "momentum", "adam", "adamw", "rmsprop", "rmsproptf")

# Missing options take the defaults of timm's train.py (which Cream's config repeats).
_OPTIONS = {"opt": REQUIRED, "lr": REQUIRED, "weight_decay": 1e-4, "momentum": 0.9,
            "opt_eps": 1e-8}


def _named_trainable(model: paddle.nn.Layer):
    # paddle.DataParallel wraps the real model (as _layers, a name other models use for other things)
    layer = model._layers if isinstance(model, paddle.DataParallel) else model
    return [(n, p) for n, p in layer.named_parameters() if not p.stop_gradient]


def add_weight_decay(
    model_or_named_params: Union[paddle.nn.Layer, Iterable],
    weight_decay: float,
    skip_list: Sequence[str] = (),
    learning_rate: float = 1.0,
) -> List[dict]:
    """Two parameter groups: ``[no decay, decay]``. Biases, every 1-D parameter (BatchNorm
    weight/bias) and names in ``skip_list`` get no weight decay; frozen parameters are left out.

    Accepts a model or ``(name, param)`` pairs (e.g. a filtered ``named_parameters()``), so
    callers can build extra groups, e.g. the supernet's meta layer with its own ``learning_rate``
    multiplier. Empty groups are dropped (Paddle cannot take them).
    """
    if isinstance(model_or_named_params, paddle.nn.Layer):
        named = _named_trainable(model_or_named_params)
    else:
        named = [(n, p) for n, p in model_or_named_params if not p.stop_gradient]
    no_decay, decay = [], []
    for name, param in named:
        if len(param.shape) == 1 or name.endswith(".bias") or name in skip_list:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": no_decay, "weight_decay": 0.0, "learning_rate": learning_rate},
        {"params": decay, "weight_decay": float(weight_decay), "learning_rate": learning_rate},
    ]
    return [g for g in groups if g["params"]]


def _check_groups(groups: List[dict]) -> None:
    for i, group in enumerate(groups):
        if "params" not in group:
            raise ValueError(f"parameter group {i} has no 'params' entry")
        if "lr" in group:
            raise ValueError(
                f"parameter group {i} sets 'lr'. Paddle groups take 'learning_rate', a multiplier "
                "of the global rate (e.g. META_LR / LR), not torch's absolute 'lr'"
            )


def _normalize_group_decay(groups: List[dict], default: float, zero_as_none: bool) -> List[dict]:
    # Paddle optimizers need a float (an int 0 crashes the regularizer path); Adam adds an
    # L2Decay term even for 0.0, so there an explicit None skips that work.
    out = []
    for group in groups:
        group = dict(group, params=list(group["params"]))
        wd = float(group.get("weight_decay", default) or 0.0)
        group["weight_decay"] = None if (zero_as_none and wd == 0.0) else wd
        out.append(group)
    return [g for g in out if g["params"]]


def create_optimizer(
    cfg_or_args: Any,
    model_or_params: Union[paddle.nn.Layer, Sequence],
    filter_bias_and_bn: bool = True,
    grad_clip: Optional[GradientClipBase] = None,
) -> paddle.optimizer.Optimizer:
    """Build the optimizer named by ``opt``/``OPT`` (one of :data:`OPTIMIZER_NAMES`).

    ``cfg_or_args``: timm-style args (``opt, lr, weight_decay, momentum, opt_eps``) or Cream's
    yacs config (``OPT, LR, WEIGHT_DECAY, MOMENTUM, OPT_EPS``). ``model_or_params``: a model (then
    bias/1-D parameters get no weight decay when ``filter_bias_and_bn``), a list of parameters, or
    a list of Paddle parameter-group dicts (used as given; a group without ``weight_decay`` gets
    ``WEIGHT_DECAY``). ``sgd`` and ``nesterov`` are SGD with Nesterov momentum (timm), ``momentum``
    without. All state is created up front (see :mod:`pimm.optim.state`).
    """
    opts = read_options(cfg_or_args, _OPTIONS, "create_optimizer")
    name = str(opts.opt).lower()
    if name not in OPTIMIZER_NAMES:
        raise ValueError(
            f"create_optimizer: unknown optimizer OPT={opts.opt!r}; choose one of {OPTIMIZER_NAMES}"
        )
    lr = float(opts.lr)
    weight_decay = float(opts.weight_decay)
    if name == "adamw":
        # timm 0.1.20 divides by the initial rate because AdamW multiplies the decay by the current
        # rate: the per-step decay is then weight_decay * (current lr / initial lr).
        weight_decay /= lr

    if isinstance(model_or_params, paddle.nn.Layer):
        if weight_decay and filter_bias_and_bn:
            groups = add_weight_decay(model_or_params, weight_decay)
        else:
            groups = [{"params": [p for _, p in _named_trainable(model_or_params)]}]
    else:
        params = list(model_or_params)
        if not params:
            raise ValueError("create_optimizer: no parameters given")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        _check_groups(groups)
    groups = _normalize_group_decay(groups, weight_decay, zero_as_none=(name == "adam"))
    if not groups:
        raise ValueError("create_optimizer: the model has no trainable parameters")

    common = dict(learning_rate=lr, parameters=groups, grad_clip=grad_clip)
    if name in ("sgd", "nesterov", "momentum"):
        optimizer = paddle.optimizer.Momentum(
            momentum=float(opts.momentum), use_nesterov=(name != "momentum"), **common)
    elif name == "adam":
        optimizer = paddle.optimizer.Adam(epsilon=float(opts.opt_eps), **common)
    elif name == "adamw":
        # AdamW's own default decay (0.01) must not apply to groups; each group carries its own
        optimizer = paddle.optimizer.AdamW(
            epsilon=float(opts.opt_eps), weight_decay=0.0, **common)
    else:
        rmsprop_cls = RMSpropTF if name == "rmsproptf" else RMSprop
        # alpha 0.9 for both, as timm's factory sets it
        optimizer = rmsprop_cls(
            alpha=0.9, epsilon=float(opts.opt_eps), momentum=float(opts.momentum), **common)
    materialize_optimizer_state(optimizer)
    return optimizer
