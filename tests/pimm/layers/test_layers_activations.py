import numpy as np
import paddle
import pytest

from pimm.layers import (HardSigmoid, HardSwish, ReLU6, Sigmoid, Swish, get_act_layer, hard_sigmoid,
                         hard_swish, relu6, set_layer_modes, sigmoid, swish)

# Includes the kinks of the piecewise activations (-3, 0, 3, 6).
X = np.array([-8.0, -4.0, -3.0, -1.5, -0.5, 0.0, 0.5, 1.5, 3.0, 4.5, 6.0, 9.0], dtype="float32")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


EXPECTED = {
    "swish": (swish, Swish, X * _sigmoid(X)),
    "sigmoid": (sigmoid, Sigmoid, _sigmoid(X)),
    "relu6": (relu6, ReLU6, np.minimum(np.maximum(X, 0.0), 6.0)),
    "hard_sigmoid": (hard_sigmoid, HardSigmoid, np.minimum(np.maximum(X + 3.0, 0.0), 6.0) / 6.0),
    "hard_swish": (hard_swish, HardSwish, X * np.minimum(np.maximum(X + 3.0, 0.0), 6.0) / 6.0),
}


@pytest.mark.parametrize("second_order", [False, True])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_activation_values_match_formula_in_both_modes(name, second_order):
    fn, layer_cls, expected = EXPECTED[name]
    x = paddle.to_tensor(X)
    modes = {} if fn is sigmoid else {"second_order": second_order}  # sigmoid has one form
    np.testing.assert_allclose(fn(x, **modes).numpy(), expected, rtol=1e-6, atol=1e-6)
    layer = layer_cls()
    set_layer_modes(layer, second_order=second_order)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_swish_in_export_mode_keeps_its_values():
    x = paddle.to_tensor(X)
    layer = Swish()
    set_layer_modes(layer, exporting=True)
    expected = X * _sigmoid(X)
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(swish(x, exporting=True).numpy(), expected, rtol=1e-6, atol=1e-6)


def test_hard_sigmoid_is_relu6_based_not_paddle_default():
    # Paddle's F.hardsigmoid defaults to slope 0.2; MobileNetV3 / timm use relu6(x + 3) / 6.
    assert float(hard_sigmoid(paddle.to_tensor(1.0))) == pytest.approx(4.0 / 6.0)


def test_get_act_layer_names_and_passthrough():
    assert get_act_layer("swish") is Swish
    assert get_act_layer("silu") is Swish
    assert get_act_layer("hard_sigmoid") is HardSigmoid
    assert get_act_layer("hard-swish") is HardSwish
    assert get_act_layer("relu6") is ReLU6
    assert get_act_layer("relu") is paddle.nn.ReLU
    assert get_act_layer(HardSwish) is HardSwish
    with pytest.raises(ValueError, match="Unknown activation 'gelu'.*hard_swish"):
        get_act_layer("gelu")
