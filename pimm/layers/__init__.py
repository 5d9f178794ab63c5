"""Framework-level layers: activations, convolutions, batch norm, pooling, drop path, layer modes."""
from .activations import (HardSigmoid, HardSwish, ReLU6, Sigmoid, Swish, get_act_layer,
                          hard_sigmoid, hard_swish, relu6, sigmoid, swish)
from .config import is_exporting, is_second_order, layer_config, set_layer_config
from .conv2d import (Conv2d, Conv2dSame, MixedConv2d, create_conv2d, get_padding,
                     get_same_padding, pad_same, split_channels)
from .drop import DropPath, drop_path, dropout
from .helpers import make_divisible
from .norm import BatchNorm2d
from .pooling import SelectAdaptivePool2d
from .weight_init import torch_default_init

__all__ = [
    "BatchNorm2d", "Conv2d", "Conv2dSame", "DropPath", "HardSigmoid", "HardSwish", "MixedConv2d",
    "ReLU6", "SelectAdaptivePool2d", "Sigmoid", "Swish", "create_conv2d", "drop_path", "dropout",
    "get_act_layer", "get_padding", "get_same_padding", "hard_sigmoid", "hard_swish",
    "is_exporting", "is_second_order", "layer_config", "make_divisible", "pad_same", "relu6", "set_layer_config",
    "sigmoid", "split_channels", "swish", "torch_default_init",
]
