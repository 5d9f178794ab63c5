"""Cream's search space: the per-layer choices of stages 1-5."""
from __future__ import annotations

from typing import Tuple

__all__ = ["CHOICES", "choice_to_kernel_exp"]

# Choice index -> (depthwise kernel size, expansion ratio); the order is the reference's and the
# released checkpoints' (the supernet's choice index is part of their parameter names).
CHOICES: Tuple[Tuple[int, int], ...] = ((3, 4), (3, 6), (5, 4), (5, 6), (7, 4), (7, 6))


def choice_to_kernel_exp(choice: int) -> Tuple[int, int]:
    if not 0 <= choice < len(CHOICES):
        raise ValueError(f"choice index {choice} is outside 0..{len(CHOICES) - 1}")
    return CHOICES[choice]
