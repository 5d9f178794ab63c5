"""Automatic mixed precision for training steps: Paddle's O1/O2 autocast and the dynamic loss
scaler, as one object whose state goes into checkpoints.

``Amp(level, dtype)``: ``'O0'`` is plain float32 (every method passes through, so engines use one
code path); ``'O1'`` runs the ops on Paddle's white list (convolutions, matrix products) in
``dtype`` and keeps the rest in float32; ``'O2'`` also stores the model's parameters in ``dtype``,
with float32 master weights in the optimizer (:meth:`Amp.decorate`). With float16 a
``paddle.amp.GradScaler`` scales the loss so small gradients survive, skips the steps whose
gradients overflowed and adapts the scale; bfloat16 has float32's range and needs none.
Paddle's autocast and loss scaling work on GPUs only (on CPU its autocast changes nothing and its
scaler disables itself), so :func:`check_amp` refuses the mixed levels elsewhere.

The scaler's state (:meth:`Amp.state_dict`) is plain numbers, so it passes the restricted
checkpoint readers; a run resumed with AMP continues with the scale it had reached.
"""
from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Dict, Optional, Tuple

import numpy as np
import paddle

__all__ = ["AMP_LEVELS", "AMP_DTYPES", "Amp", "FLOAT32", "check_amp", "parse_amp_level"]

AMP_LEVELS = ("O0", "O1", "O2")
AMP_DTYPES = ("float16", "bfloat16")
# the loss scaler's state: GradScaler.state_dict() keys and the type each is stored as
_SCALER_FIELDS = {"scale": float, "incr_ratio": float, "decr_ratio": float,
                  "incr_every_n_steps": int, "decr_every_n_nan_or_inf": int, "incr_count": int,
                  "decr_count": int, "use_dynamic_loss_scaling": bool}


def parse_amp_level(value: Any) -> str:
    """An AMP setting as a level: ``False``/``''``/``'O0'`` -> 'O0', ``True`` -> 'O1' (the
    reference's boolean AMP key), ``'O1'``/``'O2'`` as they are (case-insensitive)."""
    if isinstance(value, bool):
        return "O1" if value else "O0"
    level = str(value or "O0").strip().upper()
    if level in ("FALSE", "NONE", "OFF"):
        return "O0"
    if level not in AMP_LEVELS:
        raise ValueError(f"AMP must be one of {AMP_LEVELS} (or True/False), got {value!r}")
    return level


def _check_level_and_dtype(level: str, dtype: str) -> None:
    if level not in AMP_LEVELS:
        raise ValueError(f"AMP level must be one of {AMP_LEVELS}, got {level!r}")
    if dtype not in AMP_DTYPES:
        raise ValueError(f"AMP dtype must be one of {AMP_DTYPES}, got {dtype!r}")


def check_amp(level: str, dtype: str, device: str) -> None:
    """Raise ValueError with the fix unless ``level``/``dtype`` can run on ``device`` ('cpu',
    'gpu' or 'gpu:N')."""
    _check_level_and_dtype(level, dtype)
    if level != "O0" and not str(device).startswith("gpu"):
        raise ValueError(f"AMP {level} needs a GPU: Paddle's autocast changes nothing on "
                         f"{device} and its loss scaler disables itself there. Set AMP False "
                         "(float32) for CPU runs")


class Amp:
    """Mixed precision of one training loop (see the module doc)."""

    def __init__(self, level: str = "O0", dtype: str = "float16",
                 init_loss_scaling: float = 2.0 ** 15) -> None:
        _check_level_and_dtype(level, dtype)
        self.level = level
        self.dtype = dtype
        self.scaler: Optional[paddle.amp.GradScaler] = None
        if level != "O0" and dtype == "float16":
            self.scaler = paddle.amp.GradScaler(init_loss_scaling=init_loss_scaling)

    @property
    def enabled(self) -> bool:
        return self.level != "O0"

    def decorate(self, model: paddle.nn.Layer, optimizer: paddle.optimizer.Optimizer
                 ) -> Tuple[paddle.nn.Layer, paddle.optimizer.Optimizer]:
        """For O2, the model with ``dtype`` parameters (batch norm stays float32) and the optimizer
        with float32 master weights; the same objects otherwise. Call before wrapping the model
        (DataParallel) and before loading a checkpoint into the optimizer."""
        if self.level != "O2":
            return model, optimizer
        return paddle.amp.decorate(models=model, optimizers=optimizer, level="O2",
                                   dtype=self.dtype, master_weight=True, save_dtype="float32")

    def autocast(self) -> ContextManager:
        """The forward pass's context: Paddle's autocast at this level (nothing at O0)."""
        if not self.enabled:
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(level=self.level, dtype=self.dtype)

    def backward(self, loss: paddle.Tensor) -> None:
        """``loss.backward()``, of the scaled loss with a scaler."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, optimizer: paddle.optimizer.Optimizer) -> None:
        """``optimizer.step()``; with a scaler: unscale the gradients, skip the step if any is
        inf/NaN, and update the scale."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> Dict[str, Any]:
        """The loss scaler's state as plain numbers (empty without a scaler)."""
        if self.scaler is None:
            return {}
        state = self.scaler.state_dict()
        if not state:  # Paddle disabled the scaler: not on a GPU
            return {}
        return {key: cast(np.asarray(state[key]).reshape(-1)[0]) if key == "scale"
                else cast(state[key]) for key, cast in _SCALER_FIELDS.items()}

    def load_state_dict(self, state: Dict[str, Any]) -> bool:
        """Restore :meth:`state_dict`'s result; returns False (and changes nothing) when this
        Amp has no scaler, Paddle disabled it (not on a GPU) or ``state`` is empty (a checkpoint
        written without loss scaling). A state with other keys is a ValueError."""
        if self.scaler is None or not state:
            return False
        if set(state) != set(_SCALER_FIELDS):
            raise ValueError(f"loss scaler state: expected the keys {sorted(_SCALER_FIELDS)}, got "
                             f"{sorted(state)}")
        if not self.scaler.is_enable():
            return False
        restored = {key: _SCALER_FIELDS[key](value) for key, value in state.items()}
        restored["scale"] = np.array([restored["scale"]], dtype=np.float32)
        self.scaler.load_state_dict(restored)
        return True

    def __repr__(self) -> str:
        scaler = "loss scaling" if self.scaler is not None else "no loss scaling"
        return f"Amp({self.level}, {self.dtype}, {scaler})" if self.enabled else "Amp(O0: float32)"


#: plain float32 training (no autocast, no loss scaler, no state): the loops' default
FLOAT32 = Amp()
