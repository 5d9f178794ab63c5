"""Cross-entropy losses written with ops Paddle can differentiate twice.

Paddle 3.3 has no double-grad kernel for ``log_softmax``, ``softmax`` or ``cross_entropy``; Cream's
meta-matching update differentiates through its KD and CE losses a second time. Building the
log-softmax from max/exp/log keeps that possible, costs little on logits, and stays stable: the
row maximum is subtracted first (it is detached, which changes no derivative since the result does
not depend on it).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


def log_softmax(logits: paddle.Tensor, axis: int = -1) -> paddle.Tensor:
    shifted = logits - logits.max(axis=axis, keepdim=True).detach()
    return shifted - paddle.log(paddle.exp(shifted).sum(axis=axis, keepdim=True))


def softmax(logits: paddle.Tensor, axis: int = -1) -> paddle.Tensor:
    return paddle.exp(log_softmax(logits, axis))


def soft_target_cross_entropy(logits: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
    """Mean over the batch of ``-sum_k target_k * log_softmax(logits)_k``."""
    return -(target * log_softmax(logits, axis=-1)).sum(axis=-1).mean()


class SoftTargetCrossEntropy(nn.Layer):
    """Cross-entropy against a distribution per sample (Mixup targets, a teacher's softmax)."""

    def forward(self, x: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        return soft_target_cross_entropy(x, target)


class LabelSmoothingCrossEntropy(nn.Layer):
    """Cross-entropy with integer labels smoothed: ``(1 - s) * NLL + s * mean_k(-log p_k)``.

    Equal to the cross-entropy against the target ``(1 - s) * one_hot + s / K``; ``smoothing=0``
    gives the plain (double-differentiable) cross-entropy.
    """

    def __init__(self, smoothing: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"label smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = smoothing
        self.confidence = 1.0 - smoothing

    def forward(self, x: paddle.Tensor, target: paddle.Tensor) -> paddle.Tensor:
        num_classes = x.shape[-1]
        hot = F.one_hot(target.reshape([-1]).astype("int64"), num_classes).astype(x.dtype)
        return soft_target_cross_entropy(x, hot * self.confidence + self.smoothing / num_classes)

    def extra_repr(self) -> str:
        return f"smoothing={self.smoothing}"
