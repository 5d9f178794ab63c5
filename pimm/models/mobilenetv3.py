"""MobileNetV3 (Howard et al., "Searching for MobileNetV3", 2019) and the generic network class.

``MobileNetV3`` is the "efficient head" network: stem -> blocks -> global pool -> 1x1 conv_head
(with bias, no BN) -> act -> classifier. Pooling comes before ``conv_head``. Cream's child networks
are instances of this class.
"""
from typing import Any, Dict, List, Optional, Type

import paddle
from paddle import nn

from pimm.layers import (BatchNorm2d, HardSigmoid, HardSwish, ModeAware, SelectAdaptivePool2d,
                         create_conv2d, dropout)

from .efficientnet_builder import (BlockArgs, EfficientNetBuilder, decode_arch_def,
                                   efficientnet_init_weights, resolve_bn_args, round_channels)
from .registry import register_model


class MobileNetV3(ModeAware, nn.Layer):
    """Sublayers: conv_stem, bn1, act1, blocks (stages of blocks), global_pool, conv_head, act2,
    classifier. ``forward_features`` ends after act2 with shape ``[N, num_features, 1, 1]``;
    ``forward`` flattens, applies dropout (``drop_rate``, in the network's own layer mode) and
    the classifier.
    """

    def __init__(self, block_args: List[List[BlockArgs]], num_classes: int = 1000, in_chans: int = 3,
                 stem_size: int = 16, num_features: int = 1280, head_bias: bool = True,
                 channel_multiplier: float = 1.0, pad_type: str = "",
                 act_layer: Type[nn.Layer] = nn.ReLU, drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0, se_kwargs: Optional[Dict[str, Any]] = None,
                 norm_layer: Type[nn.Layer] = BatchNorm2d,
                 norm_kwargs: Optional[Dict[str, Any]] = None, global_pool: str = "avg") -> None:
        super().__init__()
        norm_kwargs = norm_kwargs or {}
        self.num_classes = num_classes
        self.num_features = num_features
        self.drop_rate = drop_rate

        stem_size = round_channels(stem_size, channel_multiplier)
        self.conv_stem = create_conv2d(in_chans, stem_size, 3, stride=2, padding=pad_type)
        self.bn1 = norm_layer(stem_size, **norm_kwargs)
        self.act1 = act_layer()

        builder = EfficientNetBuilder(channel_multiplier, 8, None, 32, pad_type, act_layer, se_kwargs,
                                      norm_layer, norm_kwargs, drop_path_rate)
        self.blocks = nn.Sequential(*builder(stem_size, block_args))
        self._head_in_chs = builder.in_chs

        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool)
        # timm builds conv_head from the block channels only, which breaks 'catavgmax' (the pool
        # doubles the channels before conv_head); the pooled width is used here.
        self.conv_head = create_conv2d(self._head_in_chs * self.global_pool.feat_mult(), num_features,
                                       1, padding=pad_type, bias=head_bias)
        self.act2 = act_layer()
        self.classifier = self._make_classifier(num_classes)

        efficientnet_init_weights(self)

    def _make_classifier(self, num_classes: int) -> nn.Layer:
        # num_classes 0 gives a feature extractor (timm 0.1.20 sets None here and then crashes).
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def get_classifier(self) -> nn.Layer:
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str = "avg") -> None:
        """Replace the classifier (freshly initialised) and the pooling type.

        The pooling feeds ``conv_head``, so only pooling types with the same width multiplier keep
        ``conv_head`` valid; others raise.
        """
        pool = SelectAdaptivePool2d(pool_type=global_pool)
        if pool.feat_mult() != self.global_pool.feat_mult():
            raise ValueError(f"global_pool {global_pool!r} changes conv_head's input width; build the "
                             f"model with global_pool={global_pool!r} instead.")
        self.global_pool = pool
        self.num_classes = num_classes
        self.classifier = self._make_classifier(num_classes)
        efficientnet_init_weights(self.classifier)

    def forward_features(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.global_pool(x)
        return self.act2(self.conv_head(x))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.forward_features(x)
        # reshape and pimm's dropout: flatten and F.dropout have no double-grad kernels.
        x = x.reshape([x.shape[0], -1])
        x = dropout(x, self.drop_rate, self.training, self.second_order)
        return self.classifier(x)


# Stage definitions from the paper's Tables 1 and 2 (expansion = exp size / input channels).
_LARGE_ARCH = [
    ["ds_r1_k3_s1_e1_c16_nre"],
    ["ir_r1_k3_s2_e4_c24_nre", "ir_r1_k3_s1_e3_c24_nre"],
    ["ir_r3_k5_s2_e3_c40_se0.25_nre"],
    ["ir_r1_k3_s2_e6_c80", "ir_r1_k3_s1_e2.5_c80", "ir_r2_k3_s1_e2.3_c80"],
    ["ir_r2_k3_s1_e6_c112_se0.25"],
    ["ir_r3_k5_s2_e6_c160_se0.25"],
    ["cn_r1_k1_s1_c960"],
]
_SMALL_ARCH = [
    ["ds_r1_k3_s2_e1_c16_se0.25_nre"],
    ["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
    ["ir_r1_k5_s2_e4_c40_se0.25", "ir_r2_k5_s1_e6_c40_se0.25"],
    ["ir_r2_k5_s1_e3_c48_se0.25"],
    ["ir_r3_k5_s2_e6_c96_se0.25"],
    ["cn_r1_k1_s1_c576"],
]


def _gen_mobilenet_v3(arch_def: List[List[str]], num_features: int, channel_multiplier: float,
                      **kwargs: Any) -> MobileNetV3:
    return MobileNetV3(
        block_args=decode_arch_def(arch_def),
        num_features=num_features,
        stem_size=16,
        channel_multiplier=channel_multiplier,
        norm_kwargs=resolve_bn_args(kwargs),
        act_layer=HardSwish,
        se_kwargs=dict(act_layer=nn.ReLU, gate_layer=HardSigmoid, divisor=8),
        **kwargs,
    )


@register_model
def mobilenetv3_large_100(**kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Large, width 1.0 (hard-swish, 1280 head features)."""
    return _gen_mobilenet_v3(_LARGE_ARCH, 1280, 1.0, **kwargs)


@register_model
def mobilenetv3_large_075(**kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Large, width 0.75."""
    return _gen_mobilenet_v3(_LARGE_ARCH, 1280, 0.75, **kwargs)


@register_model
def mobilenetv3_small_100(**kwargs: Any) -> MobileNetV3:
    """MobileNetV3-Small, width 1.0 (hard-swish, 1024 head features)."""
    return _gen_mobilenet_v3(_SMALL_ARCH, 1024, 1.0, **kwargs)
