"""Convolutions: padding rules, a second-order aware Conv2d, TF-style 'same' and mixed kernels."""
import math
from typing import Any, List, Sequence, Union

import paddle
import paddle.nn.functional as F
from paddle import nn

from .depthwise import depthwise_conv2d, native_depthwise_fits, native_depthwise_ready
from .modes import ModeAware
from .pointwise import batched_pointwise_fits, batched_pointwise_ready, pointwise_conv2d

PaddingArg = Union[str, int]


def get_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Symmetric (PyTorch-style) padding: ``((stride - 1) + dilation * (kernel_size - 1)) // 2``."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


def get_same_padding(size: int, kernel_size: int, stride: int, dilation: int) -> int:
    """Total padding TensorFlow's 'SAME' adds along one axis of length ``size``."""
    effective_kernel = (kernel_size - 1) * dilation + 1
    return max((math.ceil(size / stride) - 1) * stride + effective_kernel - size, 0)


def _is_static_same(kernel_size: int, stride: int, dilation: int) -> bool:
    # With stride 1 and an even total padding, 'SAME' is a fixed symmetric padding.
    return stride == 1 and (dilation * (kernel_size - 1)) % 2 == 0


def pad_same(x: paddle.Tensor, kernel_size: Sequence[int], stride: Sequence[int],
             dilation: Sequence[int]) -> paddle.Tensor:
    """Zero-pad an NCHW tensor the way TF 'SAME' does: the odd pixel goes to the bottom/right."""
    pad_h = get_same_padding(x.shape[-2], kernel_size[0], stride[0], dilation[0])
    pad_w = get_same_padding(x.shape[-1], kernel_size[1], stride[1], dilation[1])
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])


class Conv2d(ModeAware, nn.Conv2D):
    """``paddle.nn.Conv2D`` (parameters ``weight``, ``bias``) that honours second-order mode.

    Normal mode uses Paddle's own kernels, except on CPU in dygraph for depthwise convolutions,
    which run on pimm's native kernel (``pimm.layers.depthwise``, several times faster) once it
    is loaded (``pimm.layers.native.build_native_kernels``), and for 1x1 convolutions on small
    maps, which run as one matrix product over the batch (``pimm.layers.pointwise``); both give
    Paddle's values up to float32 rounding. Whether a convolution can take either path is
    decided when it is built.

    Second-order mode runs every convolution on an op with a double-grad kernel: Paddle runs a
    convolution with one group per input channel on its ``depthwise_conv2d`` op, which has none,
    so such a convolution runs as the same grouped convolution over a depth of one on the
    generic ``conv3d`` op (exactly the computation of the generic ``conv2d`` op with those
    groups; groups of several channels with zero filters off their own channel ran 2-3x slower
    on Paddle's CPU kernel). It also ties the input to the weight with ``+ 0 * sum(w)``: Paddle
    3.3's conv double grad silently drops the weight-gradient term when the first ``paddle.grad``
    did not also compute the gradient of the convolution's input. The tie makes that input
    gradient always needed when the weight's is, so the second derivative is right whatever
    tensors the first ``paddle.grad`` was asked for. It adds exact zeros to values and grads.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Union[int, Sequence[int]],
                 stride: Union[int, Sequence[int]] = 1, padding: Union[str, int, Sequence[int]] = 0,
                 dilation: Union[int, Sequence[int]] = 1, groups: int = 1,
                 padding_mode: str = "zeros", weight_attr: Any = None, bias_attr: Any = None,
                 data_format: str = "NCHW") -> None:
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d supports padding_mode 'zeros' only, got {padding_mode!r}; "
                             "pad the input with paddle.nn.functional.pad instead.")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                         dilation=dilation, groups=groups, weight_attr=weight_attr,
                         bias_attr=bias_attr, data_format=data_format)
        # the padding as paddle.nn.functional.conv2d takes it
        explicit = self._padding_algorithm == "EXPLICIT"
        self._conv_padding = self._updated_padding if explicit else self._padding_algorithm
        shape = self.weight.shape
        self._native_depthwise = native_depthwise_fits(
            shape, self.bias is not None, groups, self._updated_padding, self._dilation,
            self._padding_algorithm, data_format)
        self._batched_pointwise = batched_pointwise_fits(
            shape, groups, self._stride, self._updated_padding, self._padding_algorithm,
            data_format)
        # Paddle's rule for running a convolution on depthwise_conv2d, which has no double grad
        self._depthwise_op = in_channels == groups != 1 and out_channels % in_channels == 0
        self._depth_axis = 2 if data_format == "NCHW" else 1
        if explicit:  # the padding of a 3D convolution: none along the depth of one
            pads = list(self._updated_padding)
            self._conv3d_padding = [0] + pads if len(pads) == 2 else [0, 0] + pads
        else:
            self._conv3d_padding = self._padding_algorithm

    def _conv(self, x: paddle.Tensor, weight: paddle.Tensor, groups: int) -> paddle.Tensor:
        return F.conv2d(x, weight, self.bias, stride=self._stride, padding=self._conv_padding,
                        dilation=self._dilation, groups=groups, data_format=self._data_format)

    def _forward_second_order(self, x: paddle.Tensor) -> paddle.Tensor:
        weight = self.weight
        if not weight.stop_gradient:
            x = x + 0.0 * weight.sum()
        if not self._depthwise_op:
            return self._conv(x, weight, self._groups)
        depth = self._depth_axis
        out = F.conv3d(x.unsqueeze(depth), weight.unsqueeze(2), self.bias,
                       stride=[1] + list(self._stride), padding=self._conv3d_padding,
                       dilation=[1] + list(self._dilation), groups=self._groups,
                       data_format="NCDHW" if depth == 2 else "NDHWC")
        return out.squeeze(depth)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.second_order:
            return self._forward_second_order(x)
        if self._native_depthwise and native_depthwise_ready(x, self.weight):
            return depthwise_conv2d(x, self.weight, self._stride, self._updated_padding)
        if self._batched_pointwise and batched_pointwise_ready(x):
            return pointwise_conv2d(x, self.weight, self.bias)
        return self._conv(x, self.weight, self._groups)


class Conv2dSame(Conv2d):
    """Conv2d with TensorFlow 'SAME' padding computed from the input size at run time."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias_attr=None if bias else False)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return super().forward(pad_same(x, self._kernel_size, self._stride, self._dilation))


def create_conv2d_pad(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1,
                      dilation: int = 1, padding: PaddingArg = "", groups: int = 1,
                      bias: bool = False) -> Conv2d:
    """One convolution with a padding rule: '' symmetric, 'same' TF-SAME, 'valid' none, or an int."""
    if isinstance(padding, str):
        rule = padding.lower()
        if rule == "same" and not _is_static_same(kernel_size, stride, dilation):
            return Conv2dSame(in_chs, out_chs, kernel_size, stride=stride, dilation=dilation,
                              groups=groups, bias=bias)
        if rule in ("", "same"):
            padding = get_padding(kernel_size, stride, dilation)
        elif rule == "valid":
            padding = 0
        else:
            raise ValueError(f"Unknown padding {padding!r}; use '', 'same', 'valid' or an int.")
    return Conv2d(in_chs, out_chs, kernel_size, stride=stride, padding=padding, dilation=dilation,
                  groups=groups, bias_attr=None if bias else False)


def split_channels(num_channels: int, num_groups: int) -> List[int]:
    """Split channels into near-equal groups; the first group takes the remainder."""
    split = [num_channels // num_groups] * num_groups
    split[0] += num_channels - sum(split)
    return split


class MixedConv2d(nn.Layer):
    """MixConv: channels split into groups, each convolved with its own kernel size, concatenated.

    Sub-convolutions are named '0', '1', ... (state names ``0.weight``, ``1.weight``, ...).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: List[int], stride: int = 1,
                 dilation: int = 1, padding: PaddingArg = "", depthwise: bool = False,
                 bias: bool = False) -> None:
        super().__init__()
        in_splits = split_channels(in_channels, len(kernel_size))
        out_splits = split_channels(out_channels, len(kernel_size))
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.splits = in_splits
        for idx, (k, in_ch, out_ch) in enumerate(zip(kernel_size, in_splits, out_splits)):
            self.add_sublayer(str(idx), create_conv2d_pad(
                in_ch, out_ch, k, stride=stride, dilation=dilation, padding=padding,
                groups=in_ch if depthwise else 1, bias=bias))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        parts = paddle.split(x, self.splits, axis=1)
        return paddle.concat([conv(part) for conv, part in zip(self.children(), parts)], axis=1)


def create_conv2d(in_chs: int, out_chs: int, kernel_size: Union[int, List[int]], stride: int = 1,
                  dilation: int = 1, padding: PaddingArg = "", depthwise: bool = False,
                  groups: int = 1, bias: bool = False) -> nn.Layer:
    """Convolution factory used by all blocks.

    ``kernel_size`` as a list builds a ``MixedConv2d``; otherwise a ``Conv2d`` (or ``Conv2dSame``
    for dynamic TF 'same' padding), both ``paddle.nn.Conv2D`` subclasses. ``depthwise=True`` sets
    groups to the input channels.
    """
    if isinstance(kernel_size, (list, tuple)):
        return MixedConv2d(in_chs, out_chs, list(kernel_size), stride=stride, dilation=dilation,
                           padding=padding, depthwise=depthwise, bias=bias)
    if depthwise:
        groups = in_chs
    if in_chs % groups or out_chs % groups:
        raise ValueError(f"groups={groups} must divide in_chs={in_chs} and out_chs={out_chs}.")
    return create_conv2d_pad(in_chs, out_chs, kernel_size, stride=stride, dilation=dilation,
                             padding=padding, groups=groups, bias=bias)
