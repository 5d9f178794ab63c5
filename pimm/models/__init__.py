"""Models: blocks, architecture-string builder, MobileNetV3, registry and checkpoint loading."""
from .efficientnet_blocks import (ConvBnAct, DepthwiseSeparableConv, InvertedResidual,
                                  SqueezeExcite)
from .efficientnet_builder import (EfficientNetBuilder, decode_arch_def, decode_block_str,
                                   efficientnet_init_weights, encode_block_str, resolve_bn_args,
                                   round_channels)

__all__ = [
    "ConvBnAct", "DepthwiseSeparableConv", "EfficientNetBuilder", "InvertedResidual",
    "SqueezeExcite", "decode_arch_def", "decode_block_str", "efficientnet_init_weights",
    "encode_block_str", "resolve_bn_args", "round_channels",
]
