"""SPOS (Single Path One-Shot): the ShuffleNetV2 one-shot space, its supernet and child networks,
FLOPs, and the evolutionary search.

Importing this package registers the child network ``spos_shufflenetv2`` in pimm's model registry.
"""
from lib.spos.cream import cream_path_space
from lib.spos.evolution import Candidate, Evolution, EvolutionConfig, Fitness
from lib.spos.flops import arch_flops, fixed_flops, layer_flops_table
from lib.spos.network import SposChildNet, SposSupernet, build_childnet, build_supernet, spos_shufflenetv2
from lib.spos.paths import Genes, PathSpace, UniformPathSampler, spos_path_space
from lib.spos.space import (CHOICE_NAMES, NUM_CHOICES, NUM_LAYERS, OFFICIAL_WIDTHS, RELEASED_ARCH, Widths,
                            validate_arch)

__all__ = [
    "CHOICE_NAMES", "NUM_CHOICES", "NUM_LAYERS", "OFFICIAL_WIDTHS", "RELEASED_ARCH", "Widths", "Candidate",
    "Evolution", "EvolutionConfig",
    "Fitness", "Genes", "PathSpace", "SposChildNet", "SposSupernet", "UniformPathSampler", "arch_flops",
    "build_childnet", "build_supernet", "cream_path_space", "fixed_flops", "layer_flops_table",
    "spos_path_space", "spos_shufflenetv2", "validate_arch",
]
