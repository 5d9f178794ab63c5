"""Models: blocks, architecture-string builder, MobileNetV3, PeleeNet, registry and checkpoint loading."""
from .checkpoint import (CheckpointMismatchError, ResumeState, TorchStateDict, load_checkpoint,
                         load_model_weights, load_state_dict, read_checkpoint_file, restore_optimizer_state,
                         resume_checkpoint, select_state_dict, weights_entry)
from .efficientnet_blocks import (ConvBnAct, DepthwiseSeparableConv, InvertedResidual,
                                  SqueezeExcite)
from .efficientnet_builder import (EfficientNetBuilder, decode_arch_def, decode_block_str,
                                   efficientnet_init_weights, encode_block_str, resolve_bn_args,
                                   round_channels)
from .mobilenetv3 import MobileNetV3
from pimm.utils.paddle_checkpoint import PaddleCheckpointError, read_paddle_checkpoint
from .peleenet import PeleeNet
from .registry import create_model, is_model, list_models, model_entrypoint, register_model
from pimm.utils.restricted_pickle import CheckpointReadError
from pimm.utils.torch_checkpoint import (TorchCheckpointError, UnsafeCheckpointError, extract_state_dict,
                               is_torch_checkpoint, read_torch_checkpoint, torch_to_paddle_state_dict)

__all__ = [
    "CheckpointMismatchError", "CheckpointReadError", "ConvBnAct", "DepthwiseSeparableConv",
    "EfficientNetBuilder", "InvertedResidual", "MobileNetV3", "PaddleCheckpointError", "PeleeNet",
    "ResumeState", "SqueezeExcite", "TorchCheckpointError", "TorchStateDict",
    "UnsafeCheckpointError", "create_model", "decode_arch_def", "decode_block_str",
    "efficientnet_init_weights", "encode_block_str", "extract_state_dict", "is_model",
    "is_torch_checkpoint", "list_models", "load_checkpoint", "load_model_weights", "load_state_dict",
    "model_entrypoint", "read_checkpoint_file", "read_paddle_checkpoint", "read_torch_checkpoint",
    "register_model", "resolve_bn_args", "restore_optimizer_state", "resume_checkpoint", "round_channels",
    "select_state_dict", "torch_to_paddle_state_dict", "weights_entry",
]
