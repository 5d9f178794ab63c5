"""PeleeNet (Wang et al., "Pelee: A Real-Time Object Detection System on Mobile Devices", NeurIPS 2018).

A DenseNet variant for mobile devices: a stem block, two-way dense layers whose bottleneck width is
set per stage (and capped by the layer's input width), 1x1 transition layers that keep the channel
count, and post-activation conv-BN-ReLU everywhere. Parameter names are those of the authors'
PyTorch code (Robert-JunWang/PeleeNet), so its released ``peleenet_acc7208.pth.tar`` loads with
``pimm.models.load_checkpoint(model, path)``.
"""
from typing import Any, Dict, List, Optional, Sequence, Union

import paddle
from paddle import nn

from pimm.layers import BatchNorm2d, create_conv2d, dropout

from .efficientnet_builder import efficientnet_init_weights, resolve_bn_args
from .registry import register_model

IntOrStages = Union[int, Sequence[int]]

# The building blocks' forwards are straight-line tensor code, which runs as it is in a static
# program (paddle.jit.not_to_static): converted by paddle.jit.to_static, each of their ~480
# instances would be converted anew (dy2static caches per bound method), and exporting PeleeNet
# took about 20 s instead of 4 s.


class ConvBnRelu(nn.Layer):
    """conv (no bias) -> BN -> ReLU, named ``conv`` and ``norm`` like the reference's BasicConv2d."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1,
                 **bn_args: Any) -> None:
        super().__init__()
        self.conv = create_conv2d(in_chs, out_chs, kernel_size, stride=stride)
        self.norm = BatchNorm2d(out_chs, **bn_args)
        self.act = nn.ReLU()

    @paddle.jit.not_to_static
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.act(self.norm(self.conv(x)))


class StemBlock(nn.Layer):
    """3x3/2 conv, then two stride-2 branches (1x1 -> 3x3/2 conv; 2x2 max pool), concatenated and
    fused by a 1x1 conv: a cheap 4x downsampling with ``num_init_features`` output channels.

    The max pool rounds up (``ceil_mode``) as Caffe, the authors' original framework, does: the
    result is the reference's wherever the two branches agree in size (inputs with
    ``ceil(size / 2)`` even, e.g. 224 and 320), and other sizes work instead of failing at the concat.
    """

    def __init__(self, in_chans: int, num_init_features: int, **bn_args: Any) -> None:
        super().__init__()
        half = num_init_features // 2
        self.stem1 = ConvBnRelu(in_chans, num_init_features, 3, stride=2, **bn_args)
        self.stem2a = ConvBnRelu(num_init_features, half, 1, **bn_args)
        self.stem2b = ConvBnRelu(half, num_init_features, 3, stride=2, **bn_args)
        self.stem3 = ConvBnRelu(2 * num_init_features, num_init_features, 1, **bn_args)
        self.pool = nn.MaxPool2D(kernel_size=2, stride=2, ceil_mode=True)

    @paddle.jit.not_to_static
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.stem1(x)
        pooled = self.pool(x)
        convolved = self.stem2b(self.stem2a(x))
        return self.stem3(paddle.concat([pooled, convolved], axis=1))


def bottleneck_channels(in_chs: int, growth_rate: int, bottleneck_width: int) -> int:
    """Width of a dense layer's 1x1 bottleneck: ``bottleneck_width`` times a branch's growth
    (half of ``growth_rate``), rounded down to a multiple of 4, but at most about half of the
    input channels ("dynamic number of channels in bottleneck layer" in the paper): early layers
    of a stage have few input channels, and a wider bottleneck would only add cost there."""
    channels = int(growth_rate // 2 * bottleneck_width / 4) * 4
    if channels > in_chs / 2:
        channels = in_chs // 8 * 4
    return channels


class DenseLayer(nn.Layer):
    """Two-way dense layer: a 3x3 branch and a two-3x3 branch (a 5x5 receptive field), each adding
    ``growth_rate / 2`` channels to the input, which is passed on unchanged (concatenated first)."""

    def __init__(self, in_chs: int, growth_rate: int, bottleneck_width: int, **bn_args: Any) -> None:
        super().__init__()
        branch_chs = growth_rate // 2
        inter_chs = bottleneck_channels(in_chs, growth_rate, bottleneck_width)
        self.branch1a = ConvBnRelu(in_chs, inter_chs, 1, **bn_args)
        self.branch1b = ConvBnRelu(inter_chs, branch_chs, 3, **bn_args)
        self.branch2a = ConvBnRelu(in_chs, inter_chs, 1, **bn_args)
        self.branch2b = ConvBnRelu(inter_chs, branch_chs, 3, **bn_args)
        self.branch2c = ConvBnRelu(branch_chs, branch_chs, 3, **bn_args)

    @paddle.jit.not_to_static
    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        branch1 = self.branch1b(self.branch1a(x))
        branch2 = self.branch2c(self.branch2b(self.branch2a(x)))
        return paddle.concat([x, branch1, branch2], axis=1)


def _per_stage(value: IntOrStages, stages: int, name: str) -> List[int]:
    values = [value] * stages if isinstance(value, int) else list(value)
    if len(values) != stages:
        raise ValueError(f"{name} must be one int or {stages} ints (one per stage), got {value!r}.")
    return values


class PeleeNet(nn.Layer):
    """PeleeNet: ``features`` (stemblock, then per stage i ``denseblock<i>`` of ``denselayer<j>``,
    ``transition<i>`` (1x1 conv-BN-ReLU keeping the width) and, except after the last stage,
    ``transition<i>_pool`` (2x2 average pool)), global average pooling, dropout, ``classifier``.

    ``forward_features`` returns the last feature map ``[N, num_features, H/32, W/32]``.
    The global pooling is a plain mean in ``forward_head``, as in the reference, which pools with
    a functional call: thop 0.0.31, and so ``pimm.utils.profile``, counts no multiply-adds for it.
    That makes the profile of the default model at 224 px 513,875,904 multiply-adds (convolutions
    and the classifier 507,757,568, the published "508 M"; batch norms and the transition pools
    the rest) and 2,802,248 parameters: thop 0.0.31's figures for the reference model.
    """

    def __init__(self, growth_rate: IntOrStages = 32, block_config: Sequence[int] = (3, 4, 8, 6),
                 num_init_features: int = 32, bottleneck_width: IntOrStages = (1, 2, 4, 4),
                 num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.05,
                 global_pool: str = "avg", norm_kwargs: Optional[Dict[str, Any]] = None) -> None:
        super().__init__()
        if global_pool != "avg":
            raise ValueError(f"PeleeNet pools by global average only (global_pool='avg'), got "
                             f"{global_pool!r}.")
        bn_args = norm_kwargs or {}
        stages = len(block_config)
        growth_rates = _per_stage(growth_rate, stages, "growth_rate")
        bottleneck_widths = _per_stage(bottleneck_width, stages, "bottleneck_width")
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        features = [("stemblock", StemBlock(in_chans, num_init_features, **bn_args))]
        channels = num_init_features
        for stage, (num_layers, growth, width) in enumerate(
                zip(block_config, growth_rates, bottleneck_widths), start=1):
            layers = []
            for index in range(1, num_layers + 1):
                layers.append((f"denselayer{index}", DenseLayer(channels, growth, width, **bn_args)))
                channels += growth
            features.append((f"denseblock{stage}", nn.Sequential(*layers)))
            features.append((f"transition{stage}", ConvBnRelu(channels, channels, 1, **bn_args)))
            if stage < stages:
                features.append((f"transition{stage}_pool", nn.AvgPool2D(kernel_size=2, stride=2)))
        self.features = nn.Sequential(*features)
        self.num_features = channels
        self.classifier = self._make_classifier(num_classes)

        # Convolutions (fan-out normal) and batch norms are initialised as in the reference, which
        # is what the TF/timm rule gives for ungrouped convolutions; the classifier differs.
        efficientnet_init_weights(self)
        self._init_classifier()

    def _make_classifier(self, num_classes: int) -> nn.Layer:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _init_classifier(self) -> None:
        if isinstance(self.classifier, nn.Linear):
            nn.initializer.Normal(0.0, 0.01)(self.classifier.weight)
            nn.initializer.Constant(0.0)(self.classifier.bias)

    def get_classifier(self) -> nn.Layer:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier with a freshly initialised one (``num_classes`` 0: features only)."""
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)
        self._init_classifier()

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.features(x)

    def forward_head(self, x: paddle.Tensor, pre_logits: bool = False) -> paddle.Tensor:
        x = x.mean(axis=[2, 3])
        if pre_logits:
            return x
        return self.classifier(dropout(x, self.drop_rate, self.training))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.forward_head(self.forward_features(x))


@register_model
def peleenet(**kwargs: Any) -> PeleeNet:
    """PeleeNet as published: growth rate 32, blocks [3, 4, 8, 6], bottleneck widths [1, 2, 4, 4],
    32 stem channels, dropout 0.05 before the classifier (72.6 % ImageNet top-1, 508 M
    multiply-adds, 2.8 M parameters). Keyword arguments go to ``PeleeNet`` (``num_classes``,
    ``in_chans``, ``drop_rate``, ``global_pool``) or to its batch norms (``bn_momentum``,
    ``bn_eps``, ``bn_tf``)."""
    return PeleeNet(norm_kwargs=resolve_bn_args(kwargs), **kwargs)
