"""lib.engine.test: which weights a test loads, and the evaluation backend (TEST.INFERENCE)."""
import logging
import os

import numpy as np
import paddle
import pytest

import lib.engine.test as test_engine
from lib.deploy import LOGITS_TOLERANCE
from lib.engine.child import ChildSpec
from lib.engine.common import RunError
from lib.engine.test import AUTO_MIN_IMAGES, load_weights_for_test, select_test_model
from lib.models import CREAM_ARCHS, build_childnet
from pimm.deploy import InferenceLayer, relative_difference


def test_weights_are_ema_when_present_and_plain_otherwise(tmp_path):
    arch = CREAM_ARCHS[14].arch_list()
    spec = ChildSpec(arch, 64, 14, "selection 14")
    plain, ema = build_childnet(14, num_classes=4), build_childnet(14, num_classes=4)
    with paddle.no_grad():
        for p in ema.parameters():
            p.set_value(p + 1.0)
    both = str(tmp_path / "both.pdparams")
    paddle.save({"state_dict": plain.state_dict(), "state_dict_ema": ema.state_dict()}, both)
    only = str(tmp_path / "plain.pdparams")
    paddle.save({"state_dict": plain.state_dict()}, only)  # a run without EMA

    for path, use_ema, expected in ((both, True, "state_dict_ema"), (both, False, "state_dict"),
                                    (only, True, "state_dict")):
        model = build_childnet(14, num_classes=4)
        assert load_weights_for_test(model, path, spec, use_ema=use_ema) == expected
        source = ema if expected == "state_dict_ema" else plain
        np.testing.assert_array_equal(model.conv_stem.weight.numpy(),
                                      source.conv_stem.weight.numpy())
    with pytest.raises(RunError, match="does not fit selection 14"):
        load_weights_for_test(build_childnet(14, num_classes=5), only, spec, use_ema=True)


def test_weights_of_the_peleenet_reproduction_layout_and_misfit_hints(tmp_path):
    from pimm.models import create_model

    spec = ChildSpec(None, 224, -1, "model peleenet", model="peleenet")
    plain, ema = create_model("peleenet", num_classes=3), create_model("peleenet", num_classes=3)
    with paddle.no_grad():
        ema.classifier.bias.set_value(ema.classifier.bias + 1.0)
    path = str(tmp_path / "reproduction.pdparams")  # the PaddlePaddle reproduction's keys
    paddle.save({"model": plain.state_dict(), "model_ema": ema.state_dict(),
                 "args": {"NET": {"MODEL": "peleenet"}}}, path)
    for use_ema, expected, source in ((True, "model_ema", ema), (False, "model", plain)):
        model = create_model("peleenet", num_classes=3)
        assert load_weights_for_test(model, path, spec, use_ema=use_ema) == expected
        np.testing.assert_array_equal(model.classifier.bias.numpy(), source.classifier.bias.numpy())
    with pytest.raises(RunError, match=r"does not fit model peleenet .*: shape mismatch classifier.weight.* Set NET.MODEL and "
                                       "DATASET.NUM_CLASSES"):
        load_weights_for_test(create_model("peleenet", num_classes=4), path, spec, use_ema=True)
    with pytest.raises(RunError, match=r"does not fit selection 14 \(it was trained with NET.MODEL "
                                       r"peleenet\): .* Set NET.SELECTION \(or NET.INPUT_ARCH\)"):
        load_weights_for_test(build_childnet(14, num_classes=3), path,
                              ChildSpec(CREAM_ARCHS[14].arch_list(), 64, 14, "selection 14"),
                              use_ema=True)


def _size(exported):
    return exported[1].info["preprocess"]["image_size"]


def test_select_test_model_backends(exported_14, tmp_path, caplog):
    model, size = exported_14[0], _size(exported_14)
    same, backend = select_test_model(model, size, "dygraph", str(tmp_path), num_images=50_000)
    assert same is model and backend == "dygraph"
    # a small evaluation set does not pay for the export
    same, backend = select_test_model(model, size, "auto", str(tmp_path), num_images=AUTO_MIN_IMAGES - 1)
    assert same is model and backend == "dygraph"
    assert not os.listdir(tmp_path)
    with caplog.at_level(logging.INFO, logger="lib.engine.test"):
        fast, backend = select_test_model(model, size, "auto", str(tmp_path), num_images=AUTO_MIN_IMAGES)
    assert backend == "paddle_inference" and isinstance(fast, InferenceLayer)  # CPU, big set: fast path
    assert "Paddle Inference on cpu" in caplog.text
    x = paddle.randn([3, 3, size, size])
    with paddle.no_grad():
        assert relative_difference(fast(x), model(x)) < LOGITS_TOLERANCE
    with pytest.raises(ValueError, match="TEST.INFERENCE 'fast' is not one of"):
        select_test_model(model, size, "fast", str(tmp_path), num_images=1)


def test_export_mismatch_falls_back_or_raises(exported_14, tmp_path, monkeypatch, caplog):
    model, predictor, _ = exported_14
    size = _size(exported_14)
    # a predictor whose logits disagree with dygraph's (export itself is tested above)
    monkeypatch.setattr(test_engine, "export_child_network", lambda *args, **kwargs: None)
    monkeypatch.setattr(test_engine, "InferenceModel", lambda *args, **kwargs: predictor)
    monkeypatch.setattr(test_engine, "exported_logits_difference", lambda *args, **kwargs: 0.5)
    with caplog.at_level(logging.WARNING, logger="lib.engine.test"):
        chosen, backend = select_test_model(model, size, "auto", str(tmp_path), num_images=10**6)
    assert chosen is model and backend == "dygraph"
    assert "differ from dygraph's by 5.00e-01" in caplog.text
    with pytest.raises(RuntimeError, match="set TEST.INFERENCE dygraph"):
        select_test_model(model, size, "paddle_inference", str(tmp_path), num_images=1)
