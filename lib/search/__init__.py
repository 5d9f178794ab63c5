"""Cream's search space and its FLOPs accounting."""
from lib.search.flops_table import PTFLOPS_RULES, FlopsEst, layer_flops_table
from lib.search.space import CHOICES, STAGE_TEMPLATES, choice_to_kernel_exp, search_for_layer

__all__ = [
    "CHOICES", "FlopsEst", "PTFLOPS_RULES", "STAGE_TEMPLATES", "choice_to_kernel_exp",
    "layer_flops_table", "search_for_layer",
]
