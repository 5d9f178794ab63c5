"""Layer modes are per model: set on one model's layers, restored on exit (also after an error),
and never seen by another model, in this thread or another."""
import threading

import numpy as np
import paddle
import pytest
from paddle import nn

from pimm.layers import (BatchNorm2d, ModeAware, SelectAdaptivePool2d, Swish, create_conv2d,
                         layer_modes, set_layer_modes)
from pimm.models import InvertedResidual


def _net():
    return nn.Sequential(create_conv2d(3, 8, 3), BatchNorm2d(8), Swish(),
                         InvertedResidual(8, 8, 3, exp_ratio=2, act_layer=Swish, se_ratio=0.25),
                         SelectAdaptivePool2d("max", flatten=True))


def _modes(model):
    return {(layer.second_order, layer.exporting) for layer in model.sublayers(include_self=True)
            if isinstance(layer, ModeAware)}


def _second_derivative(model, x):
    """d/dx of <d(out^2)/dW, 1>: needs double-grad kernels for every op on the path (the
    depthwise conv, the hard-sigmoid gate, swish, batch norm, max pooling)."""
    x = x.detach()
    x.stop_gradient = False
    params = [p for p in model.parameters() if not p.stop_gradient]
    grads = paddle.grad((model(x) ** 2).sum(), params, create_graph=True)
    return paddle.grad(sum(g.sum() for g in grads), [x])[0]


def test_modes_are_set_on_one_model_and_restored():
    a, b = _net(), _net()
    assert _modes(a) == {(False, False)}
    with layer_modes(a, second_order=True) as model:
        assert model is a
        assert _modes(a) == {(True, False)} and _modes(b) == {(False, False)}
        with layer_modes(a, exporting=True):  # nests; None keeps the other mode
            assert _modes(a) == {(True, True)}
        assert _modes(a) == {(True, False)}
    assert _modes(a) == {(False, False)}
    set_layer_modes(b, exporting=True)
    set_layer_modes(b)  # nothing given: nothing changes
    assert _modes(b) == {(False, True)} and _modes(a) == {(False, False)}


def test_modes_are_restored_after_an_exception():
    model = _net()
    set_layer_modes(model[2], second_order=True)  # one layer differs: it gets its own mode back
    with pytest.raises(RuntimeError, match="boom"):
        with layer_modes(model, second_order=True, exporting=True):
            assert _modes(model) == {(True, True)}
            raise RuntimeError("boom")
    assert model[2].second_order and not model[2].exporting
    assert not model[0].second_order and not model[1].second_order


def test_a_second_order_model_does_not_change_another_one_in_any_thread():
    paddle.seed(0)
    a, b = _net(), _net()
    b.set_state_dict(a.state_dict())
    x = paddle.randn([2, 3, 10, 10])
    results = {}

    def use_b():
        with paddle.no_grad():
            results["b"] = b(x).numpy()
        results["b_modes"] = _modes(b)
        try:
            _second_derivative(b, x)
            results["b_error"] = None
        except RuntimeError as err:  # normal mode: Paddle's fast kernels have no double grad
            results["b_error"] = str(err)

    with layer_modes(a, second_order=True):
        thread = threading.Thread(target=use_b)
        thread.start()
        thread.join()
        use_b_here = _modes(b)
        assert np.isfinite(_second_derivative(a, x).numpy()).all()
        with paddle.no_grad():
            second_order_out = a(x).numpy()
    assert results["b_modes"] == use_b_here == {(False, False)}
    assert "doesn't have any grad op" in results["b_error"]
    # the same function in both modes
    np.testing.assert_allclose(second_order_out, results["b"], rtol=1e-5, atol=1e-6)
