"""The operations of the DARTS space and the cell preprocessing layers.

Layer and attribute names follow the official code (``op.1.weight``, ``conv_1``, ``bn``, ...) so
that its checkpoints load by name. Batch norm is ``pimm.layers.BatchNorm2d`` with PyTorch's
defaults (eps 1e-5, momentum 0.1); ``affine=False`` in the search network, as officially.
"""
from __future__ import annotations

from typing import Callable, Dict

import paddle
from paddle import nn

from pimm.layers import BatchNorm2d, create_conv2d

__all__ = ["OPS", "DilConv", "FactorizedReduce", "ReLUConvBN", "SepConv", "Zero", "build_op"]


class ReLUConvBN(nn.Layer):
    """ReLU, convolution, batch norm (``op.0``, ``op.1``, ``op.2``)."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            create_conv2d(C_in, C_out, kernel_size, stride=stride, padding=padding),
            BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.op(x)


class DilConv(nn.Layer):
    """ReLU, dilated depthwise convolution, 1x1 convolution, batch norm."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int, dilation: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            create_conv2d(C_in, C_in, kernel_size, stride=stride, dilation=dilation, padding=padding,
                          groups=C_in),
            create_conv2d(C_in, C_out, 1, padding=0),
            BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.op(x)


class SepConv(nn.Layer):
    """Two stacked separable convolutions (ReLU, depthwise, 1x1, batch norm); only the first strides."""

    def __init__(self, C_in: int, C_out: int, kernel_size: int, stride: int, padding: int,
                 affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(),
            create_conv2d(C_in, C_in, kernel_size, stride=stride, padding=padding, groups=C_in),
            create_conv2d(C_in, C_in, 1, padding=0),
            BatchNorm2d(C_in, affine=affine),
            nn.ReLU(),
            create_conv2d(C_in, C_in, kernel_size, stride=1, padding=padding, groups=C_in),
            create_conv2d(C_in, C_out, 1, padding=0),
            BatchNorm2d(C_out, affine=affine),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.op(x)


class Zero(nn.Layer):
    """The 'none' operation: zeros of the shape every other operation of the edge produces."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        # Strided slicing rounds up like the stride-2 convolutions with padding do; the official
        # version rounds down and fails on odd sizes.
        return paddle.zeros_like(x[:, :, ::self.stride, ::self.stride])


class FactorizedReduce(nn.Layer):
    """Halve the resolution with two 1x1 stride-2 convolutions, the second shifted by one pixel,
    concatenated to ``C_out`` channels."""

    def __init__(self, C_in: int, C_out: int, affine: bool = True) -> None:
        super().__init__()
        if C_out % 2:
            raise ValueError(f"FactorizedReduce needs an even number of output channels, got {C_out}")
        self.relu = nn.ReLU()
        self.conv_1 = create_conv2d(C_in, C_out // 2, 1, stride=2, padding=0)
        self.conv_2 = create_conv2d(C_in, C_out // 2, 1, stride=2, padding=0)
        self.bn = BatchNorm2d(C_out, affine=affine)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.relu(x)
        return self.bn(paddle.concat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], axis=1))


OpBuilder = Callable[[int, int, bool], nn.Layer]

# name -> builder(C, stride, affine); every name of PRIMITIVES.
OPS: Dict[str, OpBuilder] = {
    "none": lambda C, stride, affine: Zero(stride),
    # exclusive: the average ignores the padding (PyTorch's count_include_pad=False)
    "avg_pool_3x3": lambda C, stride, affine: nn.AvgPool2D(3, stride=stride, padding=1, exclusive=True),
    "max_pool_3x3": lambda C, stride, affine: nn.MaxPool2D(3, stride=stride, padding=1),
    "skip_connect": lambda C, stride, affine: (nn.Identity() if stride == 1
                                               else FactorizedReduce(C, C, affine=affine)),
    "sep_conv_3x3": lambda C, stride, affine: SepConv(C, C, 3, stride, 1, affine=affine),
    "sep_conv_5x5": lambda C, stride, affine: SepConv(C, C, 5, stride, 2, affine=affine),
    "dil_conv_3x3": lambda C, stride, affine: DilConv(C, C, 3, stride, 2, 2, affine=affine),
    "dil_conv_5x5": lambda C, stride, affine: DilConv(C, C, 5, stride, 4, 2, affine=affine),
}


def build_op(name: str, C: int, stride: int, affine: bool) -> nn.Layer:
    """The operation ``name`` on ``C`` channels; stride 2 on the input edges of a reduction cell."""
    if name not in OPS:
        raise ValueError(f"unknown DARTS operation {name!r}; use one of {', '.join(OPS)}")
    return OPS[name](C, stride, affine)
