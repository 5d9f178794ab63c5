"""Cream's search space and its FLOPs accounting, the prioritized path board and the meta-matching network."""
from lib.search.board import PICK_METHODS, SAMPLING_MODES, BoardEntry, PathSampler, PrioritizedBoard, select_teacher
from lib.search.flops_table import PTFLOPS_RULES, FlopsEst, layer_flops_table
from lib.search.meta_matching import MetaMatchingNetwork, MetaUpdate, matching_scores, simulated_step
from lib.search.space import CHOICES, STAGE_TEMPLATES, choice_to_kernel_exp, search_for_layer

__all__ = [
    "CHOICES", "FlopsEst", "PTFLOPS_RULES", "STAGE_TEMPLATES", "choice_to_kernel_exp",
    "layer_flops_table", "search_for_layer",
    "PICK_METHODS", "SAMPLING_MODES", "BoardEntry", "PathSampler", "PrioritizedBoard", "select_teacher",
    "MetaMatchingNetwork", "MetaUpdate", "matching_scores", "simulated_step",
]
