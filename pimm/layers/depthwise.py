"""Depthwise convolution on pimm's native CPU kernel (``pimm.layers.native``).

Paddle 3.3 runs a depthwise convolution on CPU as im2col plus one tiny matrix product per channel
and image: 4-5x slower than PyTorch's forward on 2 cores, and the main cost of training the
MobileNetV3-style networks (docs/BENCHMARKS.md). ``depthwise_conv2d`` computes the same function
with a direct loop (forward, and the input and filter gradients through a ``PyLayer``), equal to
Paddle's result up to float32 rounding. ``Conv2d`` uses it by itself where it applies: when it is
built, it decides whether it fits the kernel (:func:`native_depthwise_fits`), and each call checks
the input and that the kernels are loaded (:func:`native_depthwise_ready`); everything else stays
on Paddle's kernels.
"""
from __future__ import annotations

from typing import Sequence, Tuple

import paddle
from paddle.autograd import PyLayer

from .native import kernel_threads, native_library

__all__ = ["depthwise_conv2d", "native_depthwise_fits", "native_depthwise_ready"]

_MAX_TAPS, _MAX_WIDTH = 256, 16  # the C kernel's per-channel buffers


def _output_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _contiguous(tensor: paddle.Tensor) -> paddle.Tensor:
    return tensor if tensor.is_contiguous() else tensor.contiguous()


def _geometry(x: paddle.Tensor, weight: paddle.Tensor, stride: Sequence[int], padding: Sequence[int]
              ) -> Tuple[int, ...]:
    n, c, h, w = x.shape
    kh, kw = weight.shape[2:]
    sh, sw = stride
    ph, pw = padding
    out_h, out_w = _output_size(h, kh, sh, ph), _output_size(w, kw, sw, pw)
    return (n, c, h, w, kh, kw, sh, sw, ph, pw, out_h, out_w)


def _forward(x: paddle.Tensor, weight: paddle.Tensor, geometry: Tuple[int, ...]) -> paddle.Tensor:
    n, c = geometry[:2]
    out = paddle.empty([n, c, geometry[10], geometry[11]], dtype=x.dtype)
    native_library().pimm_depthwise_conv2d_forward(
        x.data_ptr(), weight.data_ptr(), out.data_ptr(), *geometry, kernel_threads())
    return out


class _DepthwiseConv2d(PyLayer):
    @staticmethod
    def forward(ctx, x, weight, geometry):
        ctx.geometry = geometry
        ctx.save_for_backward(x, weight)
        return _forward(x, weight, geometry)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensor()
        grad_out = _contiguous(grad_out)
        grad_x = None if x.stop_gradient else paddle.empty_like(x)
        grad_w = None if weight.stop_gradient else paddle.empty_like(weight)
        native_library().pimm_depthwise_conv2d_backward(
            x.data_ptr(), weight.data_ptr(), grad_out.data_ptr(),
            grad_x.data_ptr() if grad_x is not None else None,
            grad_w.data_ptr() if grad_w is not None else None, *ctx.geometry, kernel_threads())
        return grad_x, grad_w


def native_depthwise_fits(weight_shape: Sequence[int], has_bias: bool, groups: int,
                          padding: Sequence[int], dilation: Sequence[int], padding_algorithm: str,
                          data_format: str) -> bool:
    """Whether a convolution with these static attributes is one :func:`depthwise_conv2d`
    computes: NCHW, one filter per channel (``weight_shape`` ``[C, 1, kh, kw]``, ``groups`` C)
    within the kernel's buffers, no bias or dilation, explicit symmetric padding."""
    return (not has_bias and data_format == "NCHW" and padding_algorithm == "EXPLICIT"
            and len(padding) == 2 and tuple(dilation) == (1, 1) and len(weight_shape) == 4
            and groups == weight_shape[0] and weight_shape[1] == 1
            and weight_shape[2] * weight_shape[3] <= _MAX_TAPS and weight_shape[3] <= _MAX_WIDTH)


def native_depthwise_ready(x: paddle.Tensor, weight: paddle.Tensor) -> bool:
    """Whether this call of a convolution that :func:`native_depthwise_fits` can run on the
    native kernel: the kernels are loaded (``pimm.layers.native.build_native_kernels``), dygraph,
    float32 CPU tensors, an NCHW input with the filter's channels."""
    return (native_library() is not None and paddle.in_dynamic_mode() and x.ndim == 4
            and x.shape[1] == weight.shape[0] and x.dtype == paddle.float32
            and weight.dtype == paddle.float32 and x.place.is_cpu_place())


def depthwise_conv2d(x: paddle.Tensor, weight: paddle.Tensor, stride: Sequence[int],
                     padding: Sequence[int]) -> paddle.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding, groups=C)`` for NCHW float32 CPU
    tensors with ``weight`` of shape ``[C, 1, kh, kw]`` (see :func:`native_depthwise_fits`) once the
    native kernels are loaded.
    ``padding`` is ``[pad_h, pad_w]`` zeros on both sides."""
    if len(stride) != 2 or len(padding) != 2:
        raise ValueError(f"depthwise_conv2d: stride and padding need two values, got {stride}, "
                         f"{padding}")
    x, weight = _contiguous(x), _contiguous(weight)
    geometry = _geometry(x, weight, stride, padding)
    if geometry[10] < 1 or geometry[11] < 1:
        raise ValueError(f"depthwise_conv2d: input {list(x.shape)} is smaller than the kernel "
                         f"{list(weight.shape[2:])} with padding {list(padding)}")
    if paddle.is_grad_enabled() and not (x.stop_gradient and weight.stop_gradient):
        return _DepthwiseConv2d.apply(x, weight, geometry)
    return _forward(x, weight, geometry)
