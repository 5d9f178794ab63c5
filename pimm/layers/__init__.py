"""Framework-level layers: activations, convolutions, batch norm, pooling, drop path, layer modes."""
from .activations import (HardSigmoid, HardSwish, ReLU6, Sigmoid, Swish, get_act_layer,
                          hard_sigmoid, hard_swish, relu6, sigmoid, swish)
from .conv2d import (Conv2d, Conv2dSame, MixedConv2d, create_conv2d, get_padding,
                     get_same_padding, pad_same, split_channels)
from .drop import DropPath, drop_path, dropout
from .helpers import make_divisible
from .modes import ModeAware, layer_modes, set_layer_modes
from .norm import BatchNorm2d, SyncBatchNorm2d, convert_sync_batchnorm
from .pooling import SelectAdaptivePool2d
from .weight_init import torch_default_init

__all__ = [
    "BatchNorm2d", "Conv2d", "Conv2dSame", "DropPath", "HardSigmoid", "HardSwish", "MixedConv2d",
    "ReLU6", "SelectAdaptivePool2d", "Sigmoid", "Swish", "create_conv2d", "drop_path", "dropout",
    "get_act_layer", "get_padding", "get_same_padding", "hard_sigmoid", "hard_swish",
    "layer_modes", "make_divisible", "ModeAware", "pad_same", "relu6", "set_layer_modes", "sigmoid",
    "split_channels", "swish", "SyncBatchNorm2d", "convert_sync_batchnorm", "torch_default_init",
]
