"""Global pooling with a selectable type."""
import paddle
import paddle.nn.functional as F
from paddle import nn

from .modes import ModeAware

POOL_TYPES = ("avg", "max", "avgmax", "catavgmax")


def _global_max_second_order(x: paddle.Tensor) -> paddle.Tensor:
    # Max pooling has no double-grad kernel; picking the arg-max with a constant one-hot mask and a
    # sum gives the same value and gradient from ops that do.
    n, c = x.shape[0], x.shape[1]
    flat = x.reshape([n, c, -1])
    mask = F.one_hot(flat.argmax(axis=-1), flat.shape[-1]).astype(x.dtype)
    return (flat * mask).sum(axis=-1).reshape([n, c, 1, 1])


class SelectAdaptivePool2d(ModeAware, nn.Layer):
    """Global pooling: 'avg', 'max', 'avgmax' (mean of both) or 'catavgmax' (both, concatenated).

    The pooling itself runs in ``paddle.nn.AdaptiveAvgPool2D`` / ``AdaptiveMaxPool2D`` sublayers
    (``avg_pool``, ``max_pool``) so hook-based FLOPs counters see it. Output is ``[N, C*m, 1, 1]``,
    or ``[N, C*m]`` with ``flatten=True``, where ``m = feat_mult()``.
    """

    def __init__(self, pool_type: str = "avg", flatten: bool = False) -> None:
        super().__init__()
        if pool_type not in POOL_TYPES:
            raise ValueError(f"Unknown pool_type {pool_type!r}; choose one of {list(POOL_TYPES)}.")
        self.pool_type = pool_type
        self.flatten = flatten
        self.avg_pool = nn.AdaptiveAvgPool2D(1) if pool_type != "max" else None
        self.max_pool = nn.AdaptiveMaxPool2D(1) if pool_type != "avg" else None

    def feat_mult(self) -> int:
        """How many times the input channels the output has."""
        return 2 if self.pool_type == "catavgmax" else 1

    def _max(self, x: paddle.Tensor) -> paddle.Tensor:
        return _global_max_second_order(x) if self.second_order else self.max_pool(x)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.pool_type == "avg":
            out = self.avg_pool(x)
        elif self.pool_type == "max":
            out = self._max(x)
        elif self.pool_type == "avgmax":
            out = 0.5 * (self.avg_pool(x) + self._max(x))
        else:
            out = paddle.concat([self.avg_pool(x), self._max(x)], axis=1)
        if self.flatten:
            # reshape, not flatten: flatten has no double-grad kernel.
            out = out.reshape([out.shape[0], -1])
        return out

    def extra_repr(self) -> str:
        return f"pool_type={self.pool_type}, flatten={self.flatten}"
