"""pimm.deploy: export with to_static + jit.save, run with Paddle Inference (oneDNN)."""
import json
import os

import numpy as np
import paddle
import pytest

from PIL import Image

from pimm.deploy import (InferenceLayer, InferenceModel, eval_preprocess, eval_transform_from_info,
                         exported_files, export_model, read_export_info, relative_difference)
from pimm.layers import BatchNorm2d, ModeAware, Swish, create_conv2d


class TinyNet(paddle.nn.Layer):
    """Stem conv, BN, Swish, a depthwise 5x5 conv, pooling and a classifier: the ops the Cream
    nets export (including the fusions oneDNN applies)."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.conv = create_conv2d(3, 8, 3, stride=2)
        self.bn = BatchNorm2d(8)
        self.act = Swish()
        self.dw = create_conv2d(8, 8, 5, depthwise=True)
        self.bn_dw = BatchNorm2d(8)
        self.pool = paddle.nn.AdaptiveAvgPool2D(1)
        self.fc = paddle.nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x)))
        x = self.act(self.bn_dw(self.dw(x)))
        return self.fc(self.pool(x).reshape([x.shape[0], -1]))


def _trained_statistics(model: TinyNet) -> TinyNet:
    # non-trivial running statistics, so the exported BN fusion has something to get wrong
    model.train()
    paddle.seed(1)
    for _ in range(3):
        model(paddle.randn([4, 3, 16, 16]) * 2.0 + 0.5)
    return model


@pytest.fixture
def exported(tmp_path):
    paddle.seed(0)
    model = _trained_statistics(TinyNet())
    prefix = str(tmp_path / "sub" / "tiny")
    files = export_model(model, prefix, 16, class_names=["a", "b", "c"], info={"source": "test"})
    return model, prefix, files


def test_export_writes_program_weights_and_info(exported):
    model, prefix, files = exported
    assert files == exported_files(prefix)
    assert files == {"program": prefix + ".json", "params": prefix + ".pdiparams", "info": prefix + ".info.json"}
    assert all(os.path.isfile(path) for path in files.values())
    with open(files["info"]) as f:
        info = json.load(f)
    assert info == {"source": "test", "input_shape": [3, 16, 16], "num_classes": 3,
                    "class_names": ["a", "b", "c"], "preprocess": eval_preprocess(16)}
    assert info["preprocess"] == {"image_size": 16, "interpolation": "bilinear", "crop_pct": 0.875,
                                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                  "max_pixel_value": 255.0, "color_order": "rgb"}
    assert read_export_info(prefix) == info


def test_info_records_any_models_classes_and_preprocessing(tmp_path):
    model = paddle.nn.Sequential(create_conv2d(3, 4, 3), paddle.nn.AdaptiveAvgPool2D(1))
    files = export_model(model, str(tmp_path / "plain"), [12, 20],
                         preprocess=eval_preprocess([12, 20], interpolation="bicubic", crop_pct=1.0))
    info = read_export_info(str(tmp_path / "plain"))
    assert info["num_classes"] is None and info["class_names"] is None  # no num_classes attribute
    assert info["input_shape"] == [3, 12, 20] and info["preprocess"]["image_size"] == [12, 20]
    assert files["info"].endswith("plain.info.json")
    # the recorded transform gives the predictor's input shape
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 40, 3), np.uint8))
    assert eval_transform_from_info(info)(image).shape == (3, 12, 20)
    # files exported before max_pixel_value / color_order were recorded: 0-255 RGB, as then
    older = {"preprocess": {k: v for k, v in info["preprocess"].items() if k not in ("max_pixel_value", "color_order")}}
    np.testing.assert_array_equal(eval_transform_from_info(older)(image), eval_transform_from_info(info)(image))
    raw_bgr = {"preprocess": eval_preprocess([12, 20], interpolation="bicubic", crop_pct=1.0, mean=(0, 0, 0),
                                             std=(1, 1, 1), max_pixel_value=1.0, color_order="bgr")}
    plain = eval_preprocess([12, 20], interpolation="bicubic", crop_pct=1.0, mean=(0, 0, 0), std=(1, 1, 1))
    np.testing.assert_allclose(eval_transform_from_info(raw_bgr)(image),
                               eval_transform_from_info({"preprocess": plain})(image)[::-1] * 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="2 class names given for a network with 3 classes"):
        export_model(TinyNet(3), str(tmp_path / "bad"), 16, class_names=["a", "b"])
    with pytest.raises(ValueError, match="no 'preprocess' entry"):
        eval_transform_from_info({})


def test_predictor_reproduces_dygraph_logits_for_any_batch_size(exported):
    model, prefix, _ = exported
    predictor = InferenceModel(prefix, threads=1)
    assert predictor.info["class_names"] == ["a", "b", "c"]
    model.eval()
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        with paddle.no_grad():
            expected = model(paddle.to_tensor(x)).numpy()
        actual = predictor(x)
        assert isinstance(actual, np.ndarray) and actual.shape == (batch, 3)
        assert relative_difference(actual, expected) < 1e-5
    # without oneDNN too: the same program on Paddle's native kernels
    plain = InferenceModel(prefix, onednn=False, threads=1)
    assert relative_difference(plain(x), expected) < 1e-5


def test_export_leaves_the_dygraph_model_as_it_was(exported):
    model, _, _ = exported
    # the fixture exported a model in train mode: it must still be in train mode, running dygraph
    assert model.training and model.bn.training
    assert "forward" not in vars(model)
    before = model.bn._mean.numpy().copy()
    out = model(paddle.randn([2, 3, 24, 24]))  # another size and batch: no static shape baked in
    assert out.shape == [2, 3] and not out.stop_gradient
    assert not np.allclose(model.bn._mean.numpy(), before)  # batch statistics still update


def test_swish_is_exported_as_the_op_onednn_fuses(exported):
    # 'silu' is not fused into the convolution by Paddle Inference's oneDNN passes; 'swish' is
    model, prefix, files = exported
    with open(files["program"], encoding="utf-8") as f:
        program = f.read()
    assert '"1.swish"' in program and "silu" not in program
    modes = [layer.exporting for layer in model.sublayers() if isinstance(layer, ModeAware)]
    assert modes and not any(modes)  # dygraph is back on its own kernel
    with paddle.no_grad():
        model.eval()
        x = paddle.randn([2, 3, 16, 16])
        assert relative_difference(InferenceModel(prefix, threads=1)(x.numpy()), model(x)) < 1e-5


def test_inference_layer_serves_evaluation_loops(exported):
    model, prefix, _ = exported
    layer = InferenceLayer(InferenceModel(prefix, threads=1))
    layer.eval()
    x = paddle.randn([3, 3, 16, 16])
    out = layer(x)
    assert isinstance(out, paddle.Tensor) and out.shape == [3, 3]
    model.eval()
    with paddle.no_grad():
        assert relative_difference(out, model(x)) < 1e-5
    assert list(layer.parameters()) == []


def test_wrong_input_and_missing_files_raise_clear_errors(exported, tmp_path):
    _, prefix, _ = exported
    predictor = InferenceModel(prefix, threads=1)
    with pytest.raises(ValueError, match=r"expected images \[N, 3, 16, 16\], got \[2, 3, 8, 8\]"):
        predictor(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(FileNotFoundError, match="tools/export_model.py"):
        InferenceModel(str(tmp_path / "nothing"))
    with pytest.raises(ValueError, match="TensorRT and fp16 run on GPU only"):
        InferenceModel(prefix, tensorrt=True)
    with pytest.raises(ValueError, match="TensorRT and fp16 run on GPU only"):
        InferenceModel(prefix, precision="fp16")
    with pytest.raises(ValueError, match="precision 'int4' is not one of"):
        InferenceModel(prefix, precision="int4")
    with pytest.raises(ValueError, match="device 'tpu'"):
        InferenceModel(prefix, device="tpu")


@pytest.mark.skipif(paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0,
                    reason="this machine has a GPU")
def test_gpu_request_without_a_gpu_is_refused(exported):
    _, prefix, _ = exported
    with pytest.raises(ValueError, match="needs a CUDA build of Paddle and a visible GPU"):
        InferenceModel(prefix, device="gpu")


@pytest.mark.skipif(not (paddle.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0),
                    reason="needs a GPU")
def test_gpu_predictor_matches_dygraph(exported):
    model, prefix, _ = exported
    x = np.random.default_rng(0).standard_normal((4, 3, 16, 16)).astype(np.float32)
    model.eval()
    with paddle.no_grad():
        expected = model(paddle.to_tensor(x)).numpy()
    assert relative_difference(InferenceModel(prefix, device="gpu")(x), expected) < 1e-4


def test_relative_difference_by_hand():
    expected = np.array([[2.0, -4.0], [1.0, 0.5]])
    actual = np.array([[2.0, -4.1], [1.2, 0.5]])
    assert relative_difference(actual, expected) == pytest.approx(0.2 / 4.0)
    assert relative_difference(np.ones(2), np.zeros(2)) == 1.0  # all-zero reference: absolute
    with pytest.raises(ValueError, match="shapes differ"):
        relative_difference(np.ones(2), np.ones(3))
