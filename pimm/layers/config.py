"""Global layer modes.

Second-order mode: Paddle 3.3 lacks double-grad kernels for several fast ops (depthwise conv,
swish, hardsigmoid, relu6, max pooling, flatten, dropout) and the fused batch-norm double grad is
very slow. Under ``layer_config(second_order=True)`` every pimm layer switches to an equivalent
formulation built from ops that do have double-grad kernels, so that
``paddle.grad(..., create_graph=True)`` followed by a second ``paddle.grad`` works and is correct.

Export mode: while a model is traced for Paddle Inference (``pimm.utils.inference.export_model``
sets it), layers emit the ops Paddle Inference's CPU (oneDNN) passes fuse into the preceding
convolution, where dygraph's fastest op differs: ``swish`` rather than ``silu``, whose unfused
kernel and layout conversions made exported nets 1.7x slower.

Forward values are the same in every mode (up to float rounding).
"""
from contextlib import contextmanager
from typing import Iterator, Optional

_second_order = False
_exporting = False


def is_second_order() -> bool:
    """True while layers must build graphs that support a second derivative."""
    return _second_order


def is_exporting() -> bool:
    """True while layers are traced for an exported (Paddle Inference) program."""
    return _exporting


def set_layer_config(second_order: Optional[bool] = None, exporting: Optional[bool] = None) -> None:
    """Set the global layer modes; an argument left as None keeps its current value."""
    global _second_order, _exporting
    if second_order is not None:
        _second_order = bool(second_order)
    if exporting is not None:
        _exporting = bool(exporting)


@contextmanager
def layer_config(second_order: Optional[bool] = None,
                 exporting: Optional[bool] = None) -> Iterator[None]:
    """Temporarily set layer modes (see ``set_layer_config``); restores the previous ones on exit."""
    previous = (_second_order, _exporting)
    set_layer_config(second_order=second_order, exporting=exporting)
    try:
        yield
    finally:
        set_layer_config(second_order=previous[0], exporting=previous[1])
