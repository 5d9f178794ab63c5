"""Batch norm with PyTorch-convention arguments and PyTorch's running statistics, second-order aware."""
from typing import Callable

import paddle
import paddle.distributed as dist
import paddle.nn.functional as F
from paddle import nn

from .modes import ModeAware

__all__ = ["BatchNorm2d", "SyncBatchNorm2d", "convert_sync_batchnorm"]


def _bessel_factor(x: paddle.Tensor, replicas: int = 1) -> float:
    """``n / (n - 1)`` for the ``n`` values per channel a training batch normalises over."""
    n = int(x.shape[0]) * int(x.shape[2]) * int(x.shape[3]) * replicas
    if n < 2:
        # the unbiased variance of one value is undefined; torch refuses such batches too
        raise ValueError(f"batch norm needs more than 1 value per channel when training, got input "
                         f"shape {list(x.shape)}: use a larger batch or evaluation mode")
    return n / (n - 1.0)


def _fused_with_unbiased_update(layer: nn.Layer, factor: float,
                                fused: Callable[[paddle.Tensor], paddle.Tensor]) -> paddle.Tensor:
    """Run ``fused(running_variance)``, a Paddle batch-norm kernel in training mode that updates the
    running variance it is given in place with the *biased* batch variance ``v``, so that the
    layer's running variance gets torch's unbiased update instead:

        running <- m * running + (1 - m) * v * factor

    The kernel receives ``running / factor`` (a new tensor: the kernel keeps it for its backward,
    so it must not change afterwards) and stores ``m * running / factor + (1 - m) * v``; that
    times ``factor`` is the unbiased update, exact up to two float roundings. Costs two
    channel-sized scalings and a copy per call.
    """
    variance = paddle.scale(layer._variance, 1.0 / factor)
    out = fused(variance)
    paddle.assign(paddle.scale(variance, factor), output=layer._variance)
    return out


class BatchNorm2d(ModeAware, nn.BatchNorm2D):
    """``paddle.nn.BatchNorm2D`` built from PyTorch-style arguments, with PyTorch's statistics.

    ``momentum`` is PyTorch's (weight of the new batch statistic): 0.1 becomes Paddle's 0.9.
    ``affine=False`` (PyTorch's option) normalises without a learnt scale and shift: ``weight`` and
    ``bias`` are None and absent from the state dict, as in PyTorch's non-affine batch norm.
    State names: ``weight``, ``bias``, ``_mean``, ``_variance``.

    Training normalises with the biased batch variance (as both frameworks do) but, like PyTorch,
    stores the *unbiased* one (``x n/(n-1)``, ``n`` values per channel) in the running variance,
    in both modes: Paddle's own kernel stores the biased one, which drifts from the reference's
    statistics (and its checkpoints') by about 1/n per update. A training batch with a single value
    per channel raises ValueError, as in PyTorch.

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
        if not self.training:
            return self._fused(x, self._variance, training=False)
        return _fused_with_unbiased_update(self, _bessel_factor(x),
                                           lambda variance: self._fused(x, variance, training=True))

    def _fused(self, x: paddle.Tensor, variance: paddle.Tensor, training: bool) -> paddle.Tensor:
        # F.batch_norm directly: BatchNorm2D.forward warns on every training call.
        return F.batch_norm(x, self._mean, variance, weight=self.weight, bias=self.bias,
                            training=training, momentum=self._momentum, epsilon=self._epsilon)

    def _forward_primitive(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.training:
            factor = _bessel_factor(x)
            mean = x.mean(axis=[0, 2, 3])
            centered = x - mean.reshape([1, -1, 1, 1])
            # centered * centered, not ** 2: pow's double grad fails when its input's grad is not needed.
            var = (centered * centered).mean(axis=[0, 2, 3])
            with paddle.no_grad():
                keep = self._momentum
                paddle.assign(keep * self._mean + (1.0 - keep) * mean, output=self._mean)
                paddle.assign(keep * self._variance + ((1.0 - keep) * factor) * var, output=self._variance)
        else:
            mean, var = self._mean, self._variance
        scale = paddle.rsqrt(var + self._epsilon)
        if self.weight is not None:
            scale = scale * self.weight
        shift = -mean * scale
        if self.bias is not None:
            shift = shift + self.bias
        return x * scale.reshape([1, -1, 1, 1]) + shift.reshape([1, -1, 1, 1])


class SyncBatchNorm2d(nn.SyncBatchNorm):
    """``paddle.nn.SyncBatchNorm`` (statistics over the whole global batch, GPU only) that stores
    PyTorch's unbiased running variance, like :class:`BatchNorm2d`. ``n`` counts the values per
    channel of all ranks, assuming every rank's batch has the same size, as training loaders give
    (they drop the last partial batch, and the distributed sampler pads the shards to equal length).
    """

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if not self.training:
            return super().forward(x)
        return _fused_with_unbiased_update(self, _bessel_factor(x, max(1, dist.get_world_size())),
                                           lambda variance: self._sync_forward(x, variance))

    def _sync_forward(self, x: paddle.Tensor, variance: paddle.Tensor) -> paddle.Tensor:
        # the parent's forward updates the running variance the layer holds: hand it ``variance``
        held = self._parameters["_variance"]
        self._parameters["_variance"] = variance
        try:
            return super().forward(x)
        finally:
            self._parameters["_variance"] = held


def convert_sync_batchnorm(model: nn.Layer) -> nn.Layer:
    """``model`` with every 2-D batch norm replaced by a :class:`SyncBatchNorm2d` that shares its
    parameters and running statistics (``paddle.nn.SyncBatchNorm.convert_sync_batchnorm`` converts
    to Paddle's, which stores the biased running variance). Building the layers calls no device API,
    so the conversion also runs on CPU; only their training forward needs a GPU."""
    if isinstance(model, nn.BatchNorm2D) and not isinstance(model, SyncBatchNorm2d):
        converted = SyncBatchNorm2d(model._num_features, model._momentum, model._epsilon,
                                    weight_attr=False if model.weight is None else None,
                                    bias_attr=False if model.bias is None else None,
                                    data_format=model._data_format)
        if model.weight is not None:
            converted.weight = model.weight
            converted.bias = model.bias
        converted._mean = model._mean
        converted._variance = model._variance
        converted.training = model.training
        model = converted
    for name, child in list(model.named_children()):
        model.add_sublayer(name, convert_sync_batchnorm(child))
    return model
