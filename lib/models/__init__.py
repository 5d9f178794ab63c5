"""Cream's networks: the search space and its FLOPs table, the table of searched architectures,
the child networks and the supernet.

Importing this package registers the released child networks ``cream_14`` ... ``cream_604`` in
pimm's model registry.
"""
from lib.models.archs import CREAM_ARCHS, CreamArch, resolve_arch, trained_network, validate_arch
from lib.models.childnet import (CREAM_NETWORK_KWARGS, build_childnet, childnet_arch_def, effective_arch,
                                zero_init_classifier)
from lib.models.convert import ConversionSummary, convert_torch_checkpoint
from lib.models.flops_table import PTFLOPS_RULES, FlopsEst
from lib.models.space import CHOICES, STAGE_TEMPLATES, choice_to_kernel_exp, search_for_layer
from lib.models.supernet import SuperNet, SupernetPath, align_choice_init, build_supernet, layer_flops_table

__all__ = [
    "CHOICES", "CREAM_ARCHS", "align_choice_init", "CREAM_NETWORK_KWARGS", "ConversionSummary", "CreamArch", "FlopsEst",
    "PTFLOPS_RULES", "STAGE_TEMPLATES", "SuperNet", "SupernetPath", "build_childnet", "build_supernet",
    "childnet_arch_def", "choice_to_kernel_exp", "convert_torch_checkpoint", "effective_arch",
    "layer_flops_table", "resolve_arch", "search_for_layer", "trained_network", "validate_arch",
    "zero_init_classifier",
]
