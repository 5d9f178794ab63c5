"""Losses (timm's label smoothing and soft-target cross-entropy), safe for second-order gradients."""
from .cross_entropy import (
    LabelSmoothingCrossEntropy,
    SoftTargetCrossEntropy,
    log_softmax,
    soft_target_cross_entropy,
    softmax,
)

__all__ = [
    "LabelSmoothingCrossEntropy",
    "SoftTargetCrossEntropy",
    "log_softmax",
    "soft_target_cross_entropy",
    "softmax",
]
