"""Batch norm with PyTorch-convention arguments, second-order aware."""
import paddle
import paddle.nn.functional as F
from paddle import nn

from .modes import ModeAware


class BatchNorm2d(ModeAware, nn.BatchNorm2D):
    """``paddle.nn.BatchNorm2D`` built from PyTorch-style arguments.

    ``momentum`` is PyTorch's (weight of the new batch statistic): 0.1 becomes Paddle's 0.9.
    ``affine=False`` (PyTorch's option) normalises without a learnt scale and shift: ``weight`` and
    ``bias`` are None and absent from the state dict, as in PyTorch's non-affine batch norm.
    State names: ``weight``, ``bias``, ``_mean``, ``_variance``. Running variance follows Paddle's
    fused kernel (biased batch variance) in both modes so that the modes stay interchangeable.

    In second-order mode the normalisation is written with elementwise ops and reductions: the fused
    kernel's double grad is extremely slow and fails when only some inputs need gradients.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm2d momentum must be in [0, 1] (PyTorch convention), got {momentum}.")
        learnt = None if affine else False  # False: Paddle creates no parameter
        super().__init__(num_features, momentum=1.0 - momentum, epsilon=eps, weight_attr=learnt,
                         bias_attr=learnt)
        self.affine = affine

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.ndim != 4:
            raise ValueError(f"BatchNorm2d expects an NCHW tensor, got shape {list(x.shape)}.")
        if self.second_order:
            return self._forward_primitive(x)
        # F.batch_norm directly: BatchNorm2D.forward warns on every training call.
        return F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias,
                            training=self.training, momentum=self._momentum, epsilon=self._epsilon)

    def _forward_primitive(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.training:
            mean = x.mean(axis=[0, 2, 3])
            centered = x - mean.reshape([1, -1, 1, 1])
            # centered * centered, not ** 2: pow's double grad fails when its input's grad is not needed.
            var = (centered * centered).mean(axis=[0, 2, 3])
            with paddle.no_grad():
                keep = self._momentum
                paddle.assign(keep * self._mean + (1.0 - keep) * mean, output=self._mean)
                paddle.assign(keep * self._variance + (1.0 - keep) * var, output=self._variance)
        else:
            mean, var = self._mean, self._variance
        scale = paddle.rsqrt(var + self._epsilon)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return x * scale.reshape([1, -1, 1, 1]) + shift.reshape([1, -1, 1, 1])
