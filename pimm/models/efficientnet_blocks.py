"""Blocks of the MobileNetV3 / EfficientNet family (and Cream's child networks and supernet).

Parameter names match timm 0.1.20 and the official Cream checkpoints:
SqueezeExcite ``conv_reduce, conv_expand``; ConvBnAct ``conv, bn1``; DepthwiseSeparableConv
``conv_dw, bn1, se, conv_pw, bn2``; InvertedResidual ``conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3``.
"""
from typing import Any, Dict, Optional, Type, Union

import paddle
from paddle import nn

from pimm.layers import (BatchNorm2d, HardSigmoid, create_conv2d, drop_path, get_act_layer,
                         make_divisible)

KernelSize = Union[int, list]

# Squeeze-excite as MobileNetV3 and Cream configure it: reduced channels from the tensor the SE sees
# (the block's mid channels), rounded to multiples of 8, ReLU inside, hard-sigmoid gate.
SE_DEFAULTS: Dict[str, Any] = dict(act_layer=nn.ReLU, gate_layer=HardSigmoid, divisor=8)


class SqueezeExcite(nn.Layer):
    """x * gate(conv_expand(act(conv_reduce(mean_hw(x))))).

    ``gate_layer``: an activation layer class or name (``pimm.layers.get_act_layer``); a layer
    rather than a function so that it follows the model's layer modes.
    """

    def __init__(self, in_chs: int, se_ratio: float = 0.25, reduced_base_chs: Optional[int] = None,
                 act_layer: Type[nn.Layer] = nn.ReLU,
                 gate_layer: Union[str, Type[nn.Layer]] = HardSigmoid, divisor: int = 8) -> None:
        super().__init__()
        reduced_chs = make_divisible((reduced_base_chs or in_chs) * se_ratio, divisor)
        # A layer rather than x.mean(): hook-based FLOPs counters (thop) count this pooling.
        self.avg_pool = nn.AdaptiveAvgPool2D(1)
        self.conv_reduce = create_conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = act_layer()
        self.conv_expand = create_conv2d(reduced_chs, in_chs, 1, bias=True)
        self.gate = get_act_layer(gate_layer)()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        gate = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * self.gate(gate)


def _make_se(chs: int, se_ratio: Optional[float],
             se_kwargs: Optional[Dict[str, Any]]) -> Optional[SqueezeExcite]:
    if not se_ratio:
        return None
    return SqueezeExcite(chs, se_ratio=se_ratio, **{**SE_DEFAULTS, **(se_kwargs or {})})


def _add_residual(x: paddle.Tensor, shortcut: paddle.Tensor, drop_path_rate: float,
                  training: bool) -> paddle.Tensor:
    if drop_path_rate > 0.0:
        x = drop_path(x, drop_path_rate, training)
    return x + shortcut


class ConvBnAct(nn.Layer):
    """conv -> bn1 -> act1 (no SE, no residual)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: KernelSize, stride: int = 1,
                 dilation: int = 1, pad_type: str = "", act_layer: Type[nn.Layer] = nn.ReLU,
                 norm_layer: Type[nn.Layer] = BatchNorm2d,
                 norm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        self.conv = create_conv2d(in_chs, out_chs, kernel_size, stride=stride, dilation=dilation,
                                  padding=pad_type)
        self.bn1 = norm_layer(out_chs, **(norm_kwargs or {}))
        self.act1 = act_layer()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act1(self.bn1(self.conv(x)))


class DepthwiseSeparableConv(nn.Layer):
    """Depthwise conv -> bn1 -> act1 -> SE -> pointwise conv -> bn2 [-> act2 if pw_act] (+ residual).

    The residual is added when stride is 1 and in_chs == out_chs, unless ``noskip``.
    """

    def __init__(self, in_chs: int, out_chs: int, dw_kernel_size: KernelSize = 3, stride: int = 1,
                 dilation: int = 1, pad_type: str = "", act_layer: Type[nn.Layer] = nn.ReLU,
                 noskip: bool = False, pw_kernel_size: KernelSize = 1, pw_act: bool = False,
                 se_ratio: Optional[float] = 0.0, se_kwargs: Optional[Dict[str, Any]] = None,
                 norm_layer: Type[nn.Layer] = BatchNorm2d,
                 norm_kwargs: Optional[Dict[str, Any]] = None, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        self.has_residual = stride == 1 and in_chs == out_chs and not noskip
        self.drop_path_rate = drop_path_rate

        self.conv_dw = create_conv2d(in_chs, in_chs, dw_kernel_size, stride=stride,
                                     dilation=dilation, padding=pad_type, depthwise=True)
        self.bn1 = norm_layer(in_chs, **norm_kwargs)
        self.act1 = act_layer()
        self.se = _make_se(in_chs, se_ratio, se_kwargs)
        self.conv_pw = create_conv2d(in_chs, out_chs, pw_kernel_size, padding=pad_type)
        self.bn2 = norm_layer(out_chs, **norm_kwargs)
        self.act2 = act_layer() if pw_act else nn.Identity()

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_dw(x)))
        if self.se is not None:
            x = self.se(x)
        x = self.act2(self.bn2(self.conv_pw(x)))
        if self.has_residual:
            x = _add_residual(x, shortcut, self.drop_path_rate, self.training)
        return x


class InvertedResidual(nn.Layer):
    """Pointwise expansion -> bn1 -> act1 -> depthwise -> bn2 -> act2 -> SE -> pointwise linear -> bn3
    (+ residual when stride is 1 and in_chs == out_chs, unless ``noskip``).

    Mid channels are ``make_divisible(in_chs * exp_ratio)``; the SE reduces from the mid channels.
    """

    def __init__(self, in_chs: int, out_chs: int, dw_kernel_size: KernelSize = 3, stride: int = 1,
                 dilation: int = 1, pad_type: str = "", act_layer: Type[nn.Layer] = nn.ReLU,
                 noskip: bool = False, exp_ratio: float = 1.0, exp_kernel_size: KernelSize = 1,
                 pw_kernel_size: KernelSize = 1, se_ratio: Optional[float] = 0.0,
                 se_kwargs: Optional[Dict[str, Any]] = None,
                 norm_layer: Type[nn.Layer] = BatchNorm2d,
                 norm_kwargs: Optional[Dict[str, Any]] = None, drop_path_rate: float = 0.0) -> None:
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        mid_chs = make_divisible(in_chs * exp_ratio)
        self.has_residual = stride == 1 and in_chs == out_chs and not noskip
        self.drop_path_rate = drop_path_rate

        self.conv_pw = create_conv2d(in_chs, mid_chs, exp_kernel_size, padding=pad_type)
        self.bn1 = norm_layer(mid_chs, **norm_kwargs)
        self.act1 = act_layer()
        self.conv_dw = create_conv2d(mid_chs, mid_chs, dw_kernel_size, stride=stride,
                                     dilation=dilation, padding=pad_type, depthwise=True)
        self.bn2 = norm_layer(mid_chs, **norm_kwargs)
        self.act2 = act_layer()
        self.se = _make_se(mid_chs, se_ratio, se_kwargs)
        self.conv_pwl = create_conv2d(mid_chs, out_chs, pw_kernel_size, padding=pad_type)
        self.bn3 = norm_layer(out_chs, **norm_kwargs)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))
        x = self.act2(self.bn2(self.conv_dw(x)))
        if self.se is not None:
            x = self.se(x)
        x = self.bn3(self.conv_pwl(x))
        if self.has_residual:
            x = _add_residual(x, shortcut, self.drop_path_rate, self.training)
        return x
