import pytest

import numpy as np
import paddle

from pimm.layers import is_exporting, is_second_order, layer_config, set_layer_config, swish


def test_default_is_first_order():
    assert is_second_order() is False


def test_set_layer_config_none_keeps_value():
    set_layer_config(second_order=True)
    try:
        set_layer_config()
        assert is_second_order() is True
    finally:
        set_layer_config(second_order=False)
    assert is_second_order() is False


def test_layer_config_nests_and_restores_on_error():
    with layer_config(second_order=True):
        assert is_second_order()
        with layer_config(second_order=False):
            assert not is_second_order()
        assert is_second_order()
        with pytest.raises(RuntimeError):
            with layer_config(second_order=False):
                raise RuntimeError("boom")
        assert is_second_order()
    assert not is_second_order()


def test_export_mode_is_independent_and_keeps_swish_values():
    x = paddle.linspace(-6.0, 6.0, 25)
    expected = x.numpy() / (1.0 + np.exp(-x.numpy()))
    with layer_config(exporting=True):
        assert is_exporting() and not is_second_order()
        with layer_config(second_order=True):
            assert is_exporting() and is_second_order()
        exported = swish(x).numpy()
    assert not is_exporting()
    np.testing.assert_allclose(exported, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(swish(x).numpy(), expected, rtol=1e-6, atol=1e-6)
