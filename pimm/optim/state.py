"""Optimizer state that resumes reliably.

Paddle creates an optimizer's per-parameter state ("accumulators") lazily, the first time a
parameter receives a gradient, and names it ``<param name>_<state>_<n>`` with ``n`` from the
process-wide name counter. Two problems follow for one-shot NAS, where only the sampled path gets
gradients:

* after ``set_state_dict`` Paddle keeps the loaded tensors in a holder and asserts that every
  accumulator created later is in it; a block that was never sampled before the checkpoint was
  written has no saved state, so the first step that samples it raises an AssertionError;
* ``state_dict()`` returns only the accumulators created so far, so state loaded for blocks not
  sampled since the resume is silently dropped at the next save.

:func:`materialize_optimizer_state` creates every accumulator up front, under a fresh
``unique_name.guard()`` so the names do not depend on what the process created before. The update
rule is unchanged (the initial values are the ones the lazy path would use), and a parameter
without gradient is still skipped by ``step()``: its value and its state stay untouched.
"""
from __future__ import annotations

from typing import Mapping

import paddle
from paddle.utils import unique_name

__all__ = ["materialize_optimizer_state", "load_optimizer_state"]

# entries of Optimizer.state_dict() that are not per-parameter accumulators
_NON_ACCUMULATOR_KEYS = ("LR_Scheduler", "master_weights")


def _trainable(params) -> list:
    return [p for p in params if not p.stop_gradient]


def materialize_optimizer_state(optimizer: paddle.optimizer.Optimizer) -> None:
    """Create the state of every trainable parameter of ``optimizer`` now (see module doc)."""
    block = paddle.static.default_main_program().global_block()
    groups = optimizer._param_groups
    with unique_name.guard():
        if groups and isinstance(groups[0], dict):
            for group in groups:
                # _create_accumulators reads group options (e.g. momentum) from the dict form
                group_view = dict(group, params=_trainable(group["params"]))
                optimizer._create_accumulators(block, group_view)
        else:
            optimizer._create_accumulators(block, _trainable(groups))


def _accumulator_keys(state: Mapping) -> set:
    return {k for k in state if k not in _NON_ACCUMULATOR_KEYS}


def load_optimizer_state(optimizer: paddle.optimizer.Optimizer, state: Mapping) -> None:
    """``optimizer.set_state_dict(state)`` after checking that the state fits.

    Raises ValueError naming the missing/unexpected/mis-shaped entries instead of Paddle's bare
    assertion (or, for shapes, a silent partial load).
    """
    own = optimizer.state_dict()
    expected, given = _accumulator_keys(own), _accumulator_keys(state)
    problems = []
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if missing:
        problems.append(f"{len(missing)} missing (e.g. {missing[:3]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    mismatched = [
        f"{k}: saved {list(state[k].shape)} vs {list(own[k].shape)}"
        for k in sorted(expected & given)
        if list(state[k].shape) != list(own[k].shape)
    ]
    if mismatched:
        problems.append(f"{len(mismatched)} with another shape (e.g. {mismatched[:3]})")
    if problems:
        raise ValueError(
            "optimizer state does not fit this optimizer: " + "; ".join(problems) + ". Build the "
            "model the same way (inside paddle.utils.unique_name.guard(), as create_model does) "
            "and create the optimizer with pimm.optim.create_optimizer and the same settings."
        )
    optimizer.set_state_dict(dict(state))
    # Every accumulator already exists, so Paddle's holder of loaded tensors is never consumed;
    # emptying it frees a full copy of the state (and keeps _add_accumulator's check inactive).
    optimizer._accumulators_holder = {}
