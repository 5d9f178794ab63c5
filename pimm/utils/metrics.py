"""Running averages and top-k accuracy."""
from __future__ import annotations

from typing import List, Sequence

import paddle

__all__ = ["AverageMeter", "accuracy"]


class AverageMeter:
    """Latest value, sum, count and mean of a stream of (value, weight) updates."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.sum = 0.0
        self.count = 0
        self.avg = 0.0

    def update(self, val: float, n: int = 1) -> None:
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.sum / self.count


def accuracy(output: paddle.Tensor, target: paddle.Tensor,
             topk: Sequence[int] = (1,)) -> List[paddle.Tensor]:
    """Top-k accuracy in percent for each k, as 0-d tensors on the output's device.

    Nothing is copied to the host, so calling this every step does not stall a GPU; call
    ``float()`` (or ``.item()``) when the number is needed. ``k`` above the number of classes
    counts every sample as correct (timm would fail there; tiny test models hit it with top-5).
    """
    batch_size, num_classes = output.shape[0], output.shape[1]
    if batch_size == 0:
        raise ValueError("accuracy: empty batch")
    maxk = min(max(topk), num_classes)
    _, pred = paddle.topk(output, k=maxk, axis=1)
    correct = (pred == target.reshape([-1, 1]).astype(pred.dtype)).astype("float32")
    return [correct[:, :min(k, num_classes)].sum() * (100.0 / batch_size) for k in topk]
