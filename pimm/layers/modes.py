"""Layer modes: how a built layer computes, held by each layer and set per model.

Second-order mode: Paddle 3.3 lacks double-grad kernels for several fast ops (depthwise conv,
swish, hardsigmoid, relu6, max pooling, flatten, dropout) and the fused batch-norm double grad is
very slow. A layer in second-order mode computes with an equivalent formulation built from ops
that do have double-grad kernels, so that ``paddle.grad(..., create_graph=True)`` followed by a
second ``paddle.grad`` works and is correct.

Export mode: while a model is traced for Paddle Inference (``pimm.deploy.export_model`` sets it),
its layers emit the ops Paddle Inference's CPU (oneDNN) passes fuse into the preceding
convolution, where dygraph's fastest op differs: ``swish`` rather than ``silu``, whose unfused
kernel and layout conversions made exported nets 1.7x slower.

Forward values are the same in every mode (up to float rounding). The modes are attributes of the
layers (:class:`ModeAware`), not process-wide flags: switching one model's layers with
:func:`set_layer_modes` or :func:`layer_modes` leaves every other model, in any thread, as it was.
"""
from contextlib import contextmanager
from typing import Iterator, List, Optional, Tuple

from paddle import nn

__all__ = ["ModeAware", "set_layer_modes", "layer_modes"]


class ModeAware:
    """Mixin for layers whose computation depends on the layer modes. Instances start in normal
    mode (the class defaults below) until :func:`set_layer_modes` switches them."""

    #: build graphs that support a second derivative
    second_order: bool = False
    #: emit the ops Paddle Inference fuses
    exporting: bool = False


def _mode_aware(model: nn.Layer) -> List[ModeAware]:
    return [layer for layer in model.sublayers(include_self=True) if isinstance(layer, ModeAware)]


def set_layer_modes(model: nn.Layer, second_order: Optional[bool] = None,
                    exporting: Optional[bool] = None) -> None:
    """Set the modes of ``model`` and of all its mode-aware sublayers; an argument left as None
    keeps each layer's current value."""
    for layer in _mode_aware(model):
        if second_order is not None:
            layer.second_order = bool(second_order)
        if exporting is not None:
            layer.exporting = bool(exporting)


@contextmanager
def layer_modes(model: nn.Layer, second_order: Optional[bool] = None,
                exporting: Optional[bool] = None) -> Iterator[nn.Layer]:
    """Set ``model``'s layer modes (see :func:`set_layer_modes`) for the ``with`` block; each
    layer gets its previous modes back on exit, also when the block raises."""
    previous: List[Tuple[ModeAware, bool, bool]] = [
        (layer, layer.second_order, layer.exporting) for layer in _mode_aware(model)]
    set_layer_modes(model, second_order=second_order, exporting=exporting)
    try:
        yield model
    finally:
        for layer, was_second_order, was_exporting in previous:
            layer.second_order = was_second_order
            layer.exporting = was_exporting
