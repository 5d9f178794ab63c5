"""Activations used by the MobileNet/EfficientNet family, as functions and as layers.

Each one dispatches on the layer mode: the fastest Paddle kernel normally, an equivalent
expression with double-grad kernels in second-order mode, and the op Paddle Inference fuses in
export mode (see ``pimm.layers.config``).
"""
from typing import Callable, Dict, Type, Union

import paddle
import paddle.nn.functional as F
from paddle import nn

from .config import is_exporting, is_second_order


def swish(x: paddle.Tensor) -> paddle.Tensor:
    """Swish / SiLU: ``x * sigmoid(x)``."""
    if is_second_order():
        return x * F.sigmoid(x)
    if is_exporting():
        # the same function; oneDNN fuses 'swish' into the convolution before it, not 'silu'
        # (dygraph keeps silu: swish's backward kernel is slower)
        return F.swish(x)
    return F.silu(x)


def sigmoid(x: paddle.Tensor) -> paddle.Tensor:
    return F.sigmoid(x)


def relu6(x: paddle.Tensor) -> paddle.Tensor:
    """``min(max(x, 0), 6)``."""
    if is_second_order():
        return paddle.clip(x, 0.0, 6.0)
    return F.relu6(x)


def hard_sigmoid(x: paddle.Tensor) -> paddle.Tensor:
    """``relu6(x + 3) / 6`` (the MobileNetV3 / timm definition, not Paddle's default slope 0.2)."""
    if is_second_order():
        return paddle.clip(x + 3.0, 0.0, 6.0) / 6.0
    return F.hardsigmoid(x, slope=1.0 / 6.0, offset=0.5)


def hard_swish(x: paddle.Tensor) -> paddle.Tensor:
    """``x * relu6(x + 3) / 6``."""
    if is_second_order():
        return x * (paddle.clip(x + 3.0, 0.0, 6.0) / 6.0)
    return F.hardswish(x)


class _Activation(nn.Layer):
    """Parameter-free layer around an activation function (a layer so profilers can hook it)."""

    function: Callable[[paddle.Tensor], paddle.Tensor]

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.function(x)


class Swish(_Activation):
    function = staticmethod(swish)


class Sigmoid(_Activation):
    function = staticmethod(sigmoid)


class ReLU6(_Activation):
    function = staticmethod(relu6)


class HardSigmoid(_Activation):
    function = staticmethod(hard_sigmoid)


class HardSwish(_Activation):
    function = staticmethod(hard_swish)


# ReLU, Tanh and Identity have double-grad kernels already, so Paddle's own layers serve both modes.
_ACT_LAYERS: Dict[str, Type[nn.Layer]] = {
    "relu": nn.ReLU,
    "relu6": ReLU6,
    "swish": Swish,
    "silu": Swish,
    "sigmoid": Sigmoid,
    "hard_sigmoid": HardSigmoid,
    "hard_swish": HardSwish,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def get_act_layer(name: Union[str, Type[nn.Layer]]) -> Type[nn.Layer]:
    """Activation layer class by name ('relu', 'relu6', 'swish', 'hard_sigmoid', 'hard_swish', ...).

    A layer class passes through unchanged, so callers can accept either form.
    """
    if isinstance(name, type) and issubclass(name, nn.Layer):
        return name
    key = str(name).lower().replace("-", "_")
    if key not in _ACT_LAYERS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(_ACT_LAYERS)}.")
    return _ACT_LAYERS[key]
