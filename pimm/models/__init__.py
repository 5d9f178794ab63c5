"""Models: blocks, architecture-string builder, MobileNetV3, registry and checkpoint loading."""
from .checkpoint import (CheckpointMismatchError, ResumeState, load_checkpoint, load_model_weights,
                         load_state_dict, read_checkpoint_file, resume_checkpoint)
from .efficientnet_blocks import (ConvBnAct, DepthwiseSeparableConv, InvertedResidual,
                                  SqueezeExcite)
from .efficientnet_builder import (EfficientNetBuilder, decode_arch_def, decode_block_str,
                                   efficientnet_init_weights, encode_block_str, resolve_bn_args,
                                   round_channels)
from .mobilenetv3 import MobileNetV3
from .registry import create_model, is_model, list_models, model_entrypoint, register_model

__all__ = [
    "CheckpointMismatchError", "ConvBnAct", "DepthwiseSeparableConv", "EfficientNetBuilder",
    "InvertedResidual", "MobileNetV3", "ResumeState", "SqueezeExcite", "create_model",
    "decode_arch_def", "decode_block_str", "efficientnet_init_weights", "encode_block_str",
    "is_model", "list_models", "load_checkpoint", "load_model_weights", "load_state_dict",
    "model_entrypoint", "read_checkpoint_file", "register_model", "resolve_bn_args",
    "resume_checkpoint", "round_channels",
]
