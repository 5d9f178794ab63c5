from .board import PICK_METHODS, SAMPLING_MODES, BoardEntry, PathSampler, PrioritizedBoard, select_teacher
from .meta_matching import MetaMatchingNetwork, MetaUpdate, matching_scores, simulated_step
