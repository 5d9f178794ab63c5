"""RMSprop in its two flavours: TensorFlow's (what the EfficientNet/Cream retrain recipes were tuned
with) and PyTorch's.

Per step, with gradient ``g``, smoothing ``alpha``, momentum ``mu`` and learning rate ``lr``::

    g   = g + wd * p                  (L2 decay; decoupled_decay instead does p = p - wd * p)
    s   = s + (1 - alpha) * (g^2 - s)            [centered: a = a + (1 - alpha) * (g - a)]
    d   = sqrt(s + eps)      TF (eps inside the root)   [centered: sqrt(s - a^2 + eps)]
        = sqrt(s) + eps      PyTorch
    TF, lr inside the momentum buffer:  b = mu * b + lr * g / d ;  p = p - b
    PyTorch, lr outside:                b = mu * b + g / d      ;  p = p - lr * b
    without momentum:                   p = p - lr * g / d

TF starts ``s`` at 1, PyTorch at 0. Keeping ``lr`` inside the buffer matters when the rate changes:
TF's buffer keeps the old rates for past gradients, PyTorch rescales the whole buffer.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import paddle
from paddle import _C_ops
from paddle.nn.clip import GradientClipBase
from paddle.regularizer import L2Decay

from .state import materialize_optimizer_state

__all__ = ["RMSpropTF", "RMSprop"]

_DECAY_KEY = "rmsprop_weight_decay"  # our own group key (see _take_weight_decay)


def _decay_coeff(weight_decay) -> float:
    if weight_decay is None:
        return 0.0
    if isinstance(weight_decay, L2Decay):
        return float(weight_decay._coeff)
    if isinstance(weight_decay, (int, float)):
        return float(weight_decay)
    raise TypeError(
        f"RMSprop supports L2 weight decay given as a float (or L2Decay), got {weight_decay!r}"
    )


class _RMSpropBase(paddle.optimizer.Optimizer):
    """Shared implementation; the public classes fix the flavour (see module docstring)."""

    _square_avg_acc = "square_avg"
    _momentum_acc = "momentum_buffer"
    _grad_avg_acc = "grad_avg"

    def __init__(
        self,
        learning_rate: float,
        parameters: Sequence,
        alpha: float,
        epsilon: float,
        momentum: float,
        weight_decay: Optional[Union[float, L2Decay]],
        centered: bool,
        decoupled_decay: bool,
        lr_in_momentum: bool,
        eps_inside_sqrt: bool,
        square_avg_init: float,
        grad_clip: Optional[GradientClipBase],
        name: Optional[str],
    ) -> None:
        for label, value in (("learning_rate", learning_rate), ("epsilon", epsilon),
                             ("momentum", momentum), ("alpha", alpha)):
            if value < 0:
                raise ValueError(f"{type(self).__name__}: {label} must be >= 0, got {value}")
        if parameters is None:
            raise ValueError(f"{type(self).__name__}: pass the parameters (or parameter groups)")
        self._weight_decay = _decay_coeff(weight_decay)
        if self._weight_decay < 0:
            raise ValueError(f"{type(self).__name__}: weight_decay must be >= 0")
        super().__init__(
            learning_rate=float(learning_rate),
            parameters=self._take_weight_decay(list(parameters)),
            weight_decay=None,
            grad_clip=grad_clip,
            name=name,
        )
        self.type = "rmsprop"
        self._alpha = float(alpha)
        self._epsilon = float(epsilon)
        self._momentum = float(momentum)
        self._centered = bool(centered)
        self._decoupled_decay = bool(decoupled_decay)
        self._lr_in_momentum = bool(lr_in_momentum)
        self._eps_inside_sqrt = bool(eps_inside_sqrt)
        self._square_avg_init = float(square_avg_init)
        materialize_optimizer_state(self)

    def _take_weight_decay(self, parameters: list) -> list:
        # Paddle's base class turns a group's 'weight_decay' into `param.regularizer`, an attribute
        # that stays on the parameter and would add L2 to the gradient for any later optimizer
        # too. Weight decay is applied here instead, so groups keep it under our own key.
        if not parameters or not isinstance(parameters[0], dict):
            return parameters
        groups = []
        for group in parameters:
            group = dict(group)
            group[_DECAY_KEY] = _decay_coeff(group.pop("weight_decay", self._weight_decay))
            group["weight_decay"] = None
            groups.append(group)
        return groups

    def _create_accumulators(self, block, parameters) -> None:
        if isinstance(parameters, dict):
            parameters = parameters["params"]
        for p in parameters:
            if p.name in self._already_create_accumulator:
                continue
            self._add_accumulator(self._square_avg_acc, p, fill_value=self._square_avg_init)
            if self._momentum > 0:
                self._add_accumulator(self._momentum_acc, p)
            if self._centered:
                self._add_accumulator(self._grad_avg_acc, p)
            self._already_create_accumulator.add(p.name)

    def _create_regularization_of_grad(self, param, grad, regularization=None):
        return grad  # decay is applied in _append_optimize_op (coupled or decoupled)

    def _append_optimize_op(self, block, param_and_grad):
        if isinstance(param_and_grad, dict):
            weight_decay = param_and_grad[_DECAY_KEY]
            param_and_grad = param_and_grad["params"]
        else:
            weight_decay = self._weight_decay
        param, grad = param_and_grad
        lr = self._create_param_lr(param_and_grad)
        if lr.dtype != param.dtype:
            lr = lr.astype(param.dtype)
        if weight_decay:
            if self._decoupled_decay:
                # decay not scaled by lr, as in timm's RMSpropTF
                param.scale_(1.0 - weight_decay)
            else:
                grad = grad + weight_decay * param
        square_avg = self._get_accumulator(self._square_avg_acc, param)
        grad_avg = self._get_accumulator(self._grad_avg_acc, param) if self._centered else None
        if self._eps_inside_sqrt and self._lr_in_momentum and self._momentum > 0:
            # Paddle's fused rmsprop kernel is exactly the TF update (given s starts at 1)
            _C_ops.rmsprop_(
                param, square_avg, grad, self._get_accumulator(self._momentum_acc, param), lr,
                grad_avg, None, self._epsilon, self._alpha, self._momentum, self._centered, False,
            )
            return None
        one_minus_alpha = 1.0 - self._alpha
        square_avg.add_(one_minus_alpha * (grad * grad - square_avg))
        variance = square_avg
        if self._centered:
            grad_avg.add_(one_minus_alpha * (grad - grad_avg))
            variance = square_avg - grad_avg * grad_avg
        if self._eps_inside_sqrt:
            denom = paddle.sqrt(variance + self._epsilon)
        else:
            denom = paddle.sqrt(variance) + self._epsilon
        if self._momentum > 0:
            buf = self._get_accumulator(self._momentum_acc, param)
            buf.scale_(self._momentum)
            if self._lr_in_momentum:
                buf.add_(lr * grad / denom)
                param.subtract_(buf)
            else:
                buf.add_(grad / denom)
                param.subtract_(lr * buf)
        else:
            param.subtract_(lr * grad / denom)
        return None


class RMSpropTF(_RMSpropBase):
    """RMSprop with TensorFlow semantics (timm's ``RMSpropTF``): eps inside the square root, the
    squared average starts at 1, and the learning rate is applied inside the momentum buffer.

    Parameter groups may set ``weight_decay`` and ``learning_rate`` (a multiplier of the global
    rate, Paddle's convention). Parameters without a gradient are skipped, value and state.
    ``decoupled_decay`` shrinks weights by ``weight_decay`` per step (not scaled by lr) instead of
    adding L2 to the gradient. The state is created eagerly (see :mod:`pimm.optim.state`).
    """

    def __init__(
        self,
        learning_rate: float = 0.01,
        parameters: Optional[Sequence] = None,
        alpha: float = 0.9,
        epsilon: float = 1e-10,
        momentum: float = 0.0,
        weight_decay: Optional[Union[float, L2Decay]] = 0.0,
        centered: bool = False,
        decoupled_decay: bool = False,
        lr_in_momentum: bool = True,
        grad_clip: Optional[GradientClipBase] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(
            learning_rate, parameters, alpha, epsilon, momentum, weight_decay, centered,
            decoupled_decay, lr_in_momentum, eps_inside_sqrt=True, square_avg_init=1.0,
            grad_clip=grad_clip, name=name,
        )


class RMSprop(_RMSpropBase):
    """RMSprop with PyTorch semantics (``torch.optim.RMSprop``): eps added after the square root,
    the squared average starts at 0, and the learning rate scales the update, not the buffer.
    (Paddle's own ``RMSProp`` follows TF's eps placement, hence this class.)"""

    def __init__(
        self,
        learning_rate: float = 0.01,
        parameters: Optional[Sequence] = None,
        alpha: float = 0.99,
        epsilon: float = 1e-8,
        momentum: float = 0.0,
        weight_decay: Optional[Union[float, L2Decay]] = 0.0,
        centered: bool = False,
        grad_clip: Optional[GradientClipBase] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(
            learning_rate, parameters, alpha, epsilon, momentum, weight_decay, centered,
            decoupled_decay=False, lr_in_momentum=False, eps_inside_sqrt=False,
            square_avg_init=0.0, grad_clip=grad_clip, name=name,
        )
