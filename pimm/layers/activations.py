"""Activations used by the MobileNet/EfficientNet family, as functions and as layers.

The functions take the layer modes (``pimm.layers.modes``) as arguments: the fastest Paddle
kernel normally, an equivalent expression with double-grad kernels with ``second_order=True``,
and the op Paddle Inference fuses with ``exporting=True``. The layers pass their own modes.
"""
from typing import Dict, Type, Union

import paddle
import paddle.nn.functional as F
from paddle import nn

from .modes import ModeAware


def swish(x: paddle.Tensor, second_order: bool = False, exporting: bool = False) -> paddle.Tensor:
    """Swish / SiLU: ``x * sigmoid(x)``."""
    if second_order:
        return x * F.sigmoid(x)
    if exporting:
        # the same function; oneDNN fuses 'swish' into the convolution before it, not 'silu'
        # (dygraph keeps silu: swish's backward kernel is slower)
        return F.swish(x)
    return F.silu(x)


def sigmoid(x: paddle.Tensor) -> paddle.Tensor:
    """The logistic function (Paddle's kernel has a double grad: the same in every mode)."""
    return F.sigmoid(x)


def relu6(x: paddle.Tensor, second_order: bool = False) -> paddle.Tensor:
    """``min(max(x, 0), 6)``."""
    if second_order:
        return paddle.clip(x, 0.0, 6.0)
    return F.relu6(x)


def hard_sigmoid(x: paddle.Tensor, second_order: bool = False) -> paddle.Tensor:
    """``relu6(x + 3) / 6`` (the MobileNetV3 / timm definition, not Paddle's default slope 0.2)."""
    if second_order:
        return paddle.clip(x + 3.0, 0.0, 6.0) / 6.0
    return F.hardsigmoid(x, slope=1.0 / 6.0, offset=0.5)


def hard_swish(x: paddle.Tensor, second_order: bool = False) -> paddle.Tensor:
    """``x * relu6(x + 3) / 6``."""
    if second_order:
        return x * (paddle.clip(x + 3.0, 0.0, 6.0) / 6.0)
    return F.hardswish(x)


# Parameter-free layers around the functions (layers so profilers can hook them and so they
# carry their modes).
class Swish(ModeAware, nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return swish(x, self.second_order, self.exporting)


class Sigmoid(nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return sigmoid(x)


class ReLU6(ModeAware, nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return relu6(x, self.second_order)


class HardSigmoid(ModeAware, nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return hard_sigmoid(x, self.second_order)


class HardSwish(ModeAware, nn.Layer):
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return hard_swish(x, self.second_order)


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
