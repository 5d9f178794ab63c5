import paddle
import pytest

from pimm.models import create_model, is_model, list_models, model_entrypoint, register_model
from pimm.models import registry


def test_list_and_is_model():
    assert {"mobilenetv3_large_100", "mobilenetv3_small_100"} <= set(list_models())
    assert list_models("mobilenetv3_small*") == ["mobilenetv3_small_100"]
    assert list_models("mobilenetv3_large_*") == ["mobilenetv3_large_075", "mobilenetv3_large_100"]
    assert is_model("mobilenetv3_large_100") and not is_model("resnet50")


def test_unknown_model_lists_close_matches():
    with pytest.raises(ValueError, match="Unknown model 'mobilenetv3_large'.*mobilenetv3_large_100"):
        create_model("mobilenetv3_large")
    with pytest.raises(ValueError, match="Unknown model 'zzz'. See pimm.models.list_models"):
        model_entrypoint("zzz")


def test_register_and_duplicate_names(monkeypatch):
    monkeypatch.setattr(registry, "_model_entrypoints", dict(registry._model_entrypoints))

    def tiny_test_net(num_classes=3):
        return paddle.nn.Linear(4, num_classes)

    register_model(tiny_test_net)
    register_model(tiny_test_net)  # re-registering the same function (e.g. a module reload) is fine
    assert create_model("tiny_test_net", num_classes=2).weight.shape == [4, 2]

    def other():
        return paddle.nn.Linear(1, 1)
    other.__name__ = other.__qualname__ = "mobilenetv3_small_100"
    with pytest.raises(ValueError, match="already registered"):
        register_model(other)


def test_parameter_names_are_deterministic():
    first = [p.name for p in create_model("mobilenetv3_small_100").parameters()]
    paddle.nn.Linear(3, 3)  # advances Paddle's global name counters
    second = [p.name for p in create_model("mobilenetv3_small_100").parameters()]
    assert first == second and first[0] == "conv2d_0.w_0"
