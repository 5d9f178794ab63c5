"""1x1 convolutions on small feature maps as one matrix product over the whole batch.

Paddle's CPU convolution multiplies the filter with one image at a time. Where a feature map has
few pixels (the last stages of a MobileNet, the squeeze-excite convolutions on 1x1 maps) those
products are tiny and their per-call overhead dominates: the 320->1280 head convolution of
Cream's net 14 on 2x2 maps took 48 ms forward and backward at batch 32, 14 ms as one product.
:func:`pointwise_conv2d` moves the batch next to the pixels (``[C, N*H*W]``), multiplies once and
moves it back; on 1x1 maps it is a plain matrix product without transposes. Values equal Paddle's
up to float32 rounding (the same sums in another order); autograd goes through Paddle's own ops.
Larger maps keep Paddle's kernel, which is as fast there without the two transposes.
"""
from __future__ import annotations

from typing import Optional, Sequence

import paddle

__all__ = ["pointwise_conv2d", "batched_pointwise_fits", "batched_pointwise_ready",
           "MAX_BATCHED_PIXELS"]

#: feature maps up to this many pixels (8x8) take the batched product
MAX_BATCHED_PIXELS = 64


def batched_pointwise_fits(weight_shape: Sequence[int], groups: int, stride: Sequence[int],
                           padding: Sequence[int], padding_algorithm: str,
                           data_format: str) -> bool:
    """Whether a convolution with these static attributes is one :func:`pointwise_conv2d`
    computes: NCHW, a 1x1 filter with stride 1, no padding and no groups."""
    return (data_format == "NCHW" and groups == 1 and tuple(weight_shape[2:]) == (1, 1)
            and tuple(stride) == (1, 1) and padding_algorithm in ("EXPLICIT", "VALID")
            and not any(padding))


def batched_pointwise_ready(x: paddle.Tensor) -> bool:
    """Whether :func:`pointwise_conv2d` should replace Paddle's kernel for this call of a
    convolution that :func:`batched_pointwise_fits`: dygraph, a float32 NCHW CPU input with at
    most :data:`MAX_BATCHED_PIXELS` pixels."""
    return (paddle.in_dynamic_mode() and x.ndim == 4
            and x.shape[2] * x.shape[3] <= MAX_BATCHED_PIXELS and x.dtype == paddle.float32
            and x.place.is_cpu_place())


def pointwise_conv2d(x: paddle.Tensor, weight: paddle.Tensor,
                     bias: Optional[paddle.Tensor] = None) -> paddle.Tensor:
    """``F.conv2d(x, weight, bias)`` for an NCHW ``x`` and a ``[C_out, C_in, 1, 1]`` ``weight``,
    computed as one matrix product over all images."""
    n, c, h, w = x.shape
    out_channels = weight.shape[0]
    if weight.shape[1:] != [c, 1, 1]:
        raise ValueError(f"pointwise_conv2d: weight {list(weight.shape)} does not fit input "
                         f"{list(x.shape)}; expected [C_out, {c}, 1, 1]")
    matrix = weight.reshape([out_channels, c])
    if h * w == 1:
        out = paddle.matmul(x.reshape([n, c]), matrix, transpose_y=True)
        if bias is not None:
            out = out + bias
        return out.reshape([n, out_channels, 1, 1])
    columns = x.transpose([1, 0, 2, 3]).reshape([c, n * h * w])
    out = paddle.matmul(matrix, columns)
    if bias is not None:
        out = out + bias.reshape([out_channels, 1])
    return out.reshape([out_channels, n, h, w]).transpose([1, 0, 2, 3])
