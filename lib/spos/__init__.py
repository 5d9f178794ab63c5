"""SPOS (Single Path One-Shot): the ShuffleNetV2 one-shot space, its supernet and child networks,
FLOPs, and the evolutionary search.

Importing this package registers the child network ``spos_shufflenetv2`` in pimm's model registry.
"""
from lib.spos.flops import arch_flops, fixed_flops, layer_flops_table
from lib.spos.network import SposChildNet, SposSupernet, build_childnet, build_supernet, spos_shufflenetv2
from lib.spos.space import CHOICE_NAMES, NUM_CHOICES, NUM_LAYERS, RELEASED_ARCH, validate_arch

__all__ = [
    "CHOICE_NAMES", "NUM_CHOICES", "NUM_LAYERS", "RELEASED_ARCH", "SposChildNet", "SposSupernet",
    "arch_flops", "build_childnet", "build_supernet", "fixed_flops", "layer_flops_table",
    "spos_shufflenetv2", "validate_arch",
]
