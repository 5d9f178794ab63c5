"""Cream's search above its networks (``lib.models``): the prioritized path board, path sampling
and the meta-matching network."""
from lib.search.board import PICK_METHODS, SAMPLING_MODES, BoardEntry, PathSampler, PrioritizedBoard, select_teacher
from lib.search.meta_matching import MetaMatchingNetwork, MetaUpdate, matching_scores, simulated_step

__all__ = [
    "PICK_METHODS", "SAMPLING_MODES", "BoardEntry", "PathSampler", "PrioritizedBoard", "select_teacher",
    "MetaMatchingNetwork", "MetaUpdate", "matching_scores", "simulated_step",
]
