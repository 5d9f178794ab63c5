import pytest

from pimm.layers import is_second_order, layer_config, set_layer_config


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
