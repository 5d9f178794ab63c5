"""Global layer modes.

Second-order mode: Paddle 3.3 lacks double-grad kernels for several fast ops (depthwise conv,
swish, hardsigmoid, relu6, max pooling, flatten, dropout) and the fused batch-norm double grad is
very slow. Under ``layer_config(second_order=True)`` every pimm layer switches to an equivalent
formulation built from ops that do have double-grad kernels, so that
``paddle.grad(..., create_graph=True)`` followed by a second ``paddle.grad`` works and is correct.
Forward values are the same in both modes (up to float rounding).
"""
from contextlib import contextmanager
from typing import Iterator, Optional

_second_order = False


def is_second_order() -> bool:
    """True while layers must build graphs that support a second derivative."""
    return _second_order


def set_layer_config(second_order: Optional[bool] = None) -> None:
    """Set the global layer modes; an argument left as None keeps its current value."""
    global _second_order
    if second_order is not None:
        _second_order = bool(second_order)


@contextmanager
def layer_config(second_order: Optional[bool] = None) -> Iterator[None]:
    """Temporarily set layer modes (see ``set_layer_config``); restores the previous ones on exit."""
    previous = _second_order
    set_layer_config(second_order=second_order)
    try:
        yield
    finally:
        set_layer_config(second_order=previous)
