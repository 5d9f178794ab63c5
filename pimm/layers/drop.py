"""Stochastic depth (drop path) and a second-order aware dropout."""
import paddle
import paddle.nn.functional as F
from paddle import nn


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {p}.")


def drop_path(x: paddle.Tensor, drop_prob: float = 0.0, training: bool = False) -> paddle.Tensor:
    """Zero whole samples with probability ``drop_prob``, scale survivors by ``1 / (1 - drop_prob)``.

    Used on the residual branch of a block (stochastic depth). Identity when not training.
    """
    _check_prob("drop_prob", drop_prob)
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    mask = paddle.floor(keep_prob + paddle.rand(shape, dtype=x.dtype))
    return x / keep_prob * mask


class DropPath(nn.Layer):
    """Layer form of ``drop_path``; active only in training mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        _check_prob("drop_prob", drop_prob)
        self.drop_prob = drop_prob

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


def dropout(x: paddle.Tensor, p: float = 0.5, training: bool = True,
            second_order: bool = False) -> paddle.Tensor:
    """Element-wise dropout scaled in training (``F.dropout``'s default).

    Paddle's dropout op has no double-grad kernel, so with ``second_order=True`` (the caller's
    layer mode, ``pimm.layers.modes``) it multiplies by a constant mask instead.
    """
    _check_prob("dropout p", p)
    if p == 0.0 or not training:
        return x
    if not second_order:
        return F.dropout(x, p=p, training=True)
    mask = (paddle.rand(x.shape, dtype=x.dtype) >= p).astype(x.dtype)
    return x * mask / (1.0 - p)
