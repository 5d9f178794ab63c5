"""Weight initialisations that other frameworks apply by default."""
from __future__ import annotations

import math

from paddle import nn

__all__ = ["torch_default_init"]


def _uniform(param, bound: float) -> None:
    nn.initializer.Uniform(-bound, bound)(param)


def torch_default_init(model: nn.Layer) -> nn.Layer:
    """Re-initialise every convolution and linear layer of ``model`` as PyTorch initialises a
    new ``nn.Conv2d`` / ``nn.Linear``: weights and biases uniform in +-1/sqrt(fan_in) (its
    kaiming_uniform with a=sqrt(5)). Returns ``model``.

    Paddle's defaults differ (convolutions normal with std sqrt(2/fan_in), linear layers
    Xavier-uniform): about 2.4x larger convolution weights, which changes the effective learning
    rate of every batch-normalised layer under weight decay. Networks ported from PyTorch code
    that relies on its defaults (DARTS, P-DARTS) train as published only with these.
    """
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.Conv2D):
            fan_in = math.prod(layer.weight.shape[1:])  # [out, in / groups, kh, kw]
        elif isinstance(layer, nn.Linear):
            fan_in = layer.weight.shape[0]  # Paddle stores [in, out]
        else:
            continue
        bound = 1.0 / math.sqrt(fan_in)
        _uniform(layer.weight, bound)
        if layer.bias is not None:
            _uniform(layer.bias, bound)
    return model
