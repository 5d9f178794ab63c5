"""load_checkpoint / read_checkpoint_file on PyTorch files that the tests write without torch."""
import os
import pickle

import numpy as np
import paddle
import pytest

from pimm.models import (CheckpointMismatchError, TorchCheckpointError, TorchStateDict,
                         UnsafeCheckpointError, create_model, load_checkpoint, load_state_dict,
                         read_checkpoint_file, resume_checkpoint)
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.torchfile_writer import CfgNode, Call, Global, save_legacy, save_zip

SAVERS = {"legacy": save_legacy, "zip": save_zip}
X = np.random.RandomState(0).randn(2, 3, 32, 32).astype("float32")


def _model(num_classes=5, seed=0):
    paddle.seed(seed)
    model = create_model("mobilenetv3_small_100", num_classes=num_classes)
    # non-trivial BN statistics, so that the running_mean/var renaming matters
    rng = np.random.RandomState(seed)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.BatchNorm2D):
            for stat in (layer._mean, layer._variance):
                stat.set_value(rng.uniform(0.5, 1.5, stat.shape).astype("float32"))
    model.eval()
    return model


def _logits(model):
    return model(paddle.to_tensor(X)).numpy()


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
@pytest.mark.parametrize("layout", ["checkpoint", "bare"])
@pytest.mark.parametrize("prefix", ["", "module."])
def test_formats_layouts_and_prefixes_load(tmp_path, fmt, layout, prefix):
    source = _model(seed=1)
    weights = torch_state_dict(source, prefix)
    obj = {"epoch": 3, "arch": "net", "state_dict": weights, "version": 2,
           "args": CfgNode({"NET": {"SELECTION": 14}})} if layout == "checkpoint" else weights
    path = str(tmp_path / "ckpt.pth.tar")
    SAVERS[fmt](obj, path)

    target = _model(seed=2)
    assert not np.allclose(_logits(target), _logits(source))
    assert load_checkpoint(target, path) == ([], [])
    np.testing.assert_allclose(_logits(target), _logits(source), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(target.blocks[1][0].bn1._variance.numpy(),
                                  source.blocks[1][0].bn1._variance.numpy())
    np.testing.assert_array_equal(target.classifier.weight.numpy(), source.classifier.weight.numpy())


def test_read_checkpoint_file_marks_torch_weights(tmp_path):
    source = _model(seed=1)
    path = str(tmp_path / "ckpt.pth")
    save_zip({"epoch": 3, "state_dict": torch_state_dict(source, "module."),
              "args": CfgNode({"NET": {"SELECTION": 43}})}, path)
    checkpoint = read_checkpoint_file(path)
    assert checkpoint["epoch"] == 3 and checkpoint["args"] == {"NET": {"SELECTION": 43}}
    assert isinstance(checkpoint["state_dict"], TorchStateDict)
    weights = load_state_dict(path)  # prefixes stripped, torch names and layouts kept
    assert isinstance(weights, TorchStateDict)
    assert weights["classifier.weight"].shape == (5, 1024)
    assert "bn1.running_var" in weights and "bn1.num_batches_tracked" in weights


def test_ema_weights_are_chosen_on_request(tmp_path):
    plain, ema = _model(seed=1), _model(seed=3)
    path = str(tmp_path / "ckpt.pth.tar")
    save_legacy({"state_dict": torch_state_dict(plain), "state_dict_ema": torch_state_dict(ema)}, path)
    target = _model(seed=2)
    load_checkpoint(target, path, use_ema=True)
    np.testing.assert_allclose(_logits(target), _logits(ema), rtol=1e-6, atol=1e-6)
    load_checkpoint(target, path)
    np.testing.assert_allclose(_logits(target), _logits(plain), rtol=1e-6, atol=1e-6)


def test_mismatch_names_the_keys_and_shapes(tmp_path):
    weights = torch_state_dict(_model(num_classes=5))
    del weights["conv_head.bias"]
    weights["extra.weight"] = weights["conv_stem.weight"]
    path = str(tmp_path / "other.pth.tar")
    save_legacy({"state_dict": weights}, path)
    with pytest.raises(CheckpointMismatchError) as caught:
        load_checkpoint(_model(num_classes=7), path)
    message = str(caught.value)
    assert path in message
    assert "missing keys (1): conv_head.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    # shapes in Paddle's layout (Linear [in, out])
    assert "shape mismatch classifier.weight: checkpoint [1024, 5], model [1024, 7]" in message
    assert "shape mismatch classifier.bias: checkpoint [5], model [7]" in message


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("fmt", ["legacy", "zip", "plain pickle"])
def test_code_in_a_checkpoint_is_refused_and_not_run(tmp_path, fmt):
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "released.pth.tar")
    if fmt == "plain pickle":  # no torch container at all: named like one, so still never unpickled freely
        with open(path, "wb") as file:
            pickle.dump({"state_dict": _Payload(marker)}, file, protocol=2)
    else:
        weights = torch_state_dict(_model())
        SAVERS[fmt]({"state_dict": weights, "optimizer": Call(Global("os", "system"), f"touch '{marker}'")}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"system', which a checkpoint never needs"):
        load_checkpoint(_model(), path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_truncated_file_is_reported(tmp_path, fmt):
    full = str(tmp_path / "full.pth")
    SAVERS[fmt]({"state_dict": torch_state_dict(_model())}, full)
    with open(full, "rb") as file:
        data = file.read()
    path = str(tmp_path / "cut.pth")
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])
    with pytest.raises(TorchCheckpointError, match=r"cut\.pth.*(truncated or corrupt|not a PyTorch checkpoint)"):
        load_checkpoint(_model(), path)


def test_torch_optimizer_state_is_not_resumed(tmp_path):
    source = _model(seed=1)
    path = str(tmp_path / "ckpt.pth.tar")
    save_legacy({"state_dict": torch_state_dict(source), "optimizer": {"state": {}}, "epoch": 4, "version": 2},
                path)
    target = _model(seed=2)
    optimizer = paddle.optimizer.SGD(0.1, parameters=target.parameters())
    with pytest.raises(ValueError, match="PyTorch checkpoint: its optimizer and scheduler state"):
        resume_checkpoint(target, path, optimizer)
    assert resume_checkpoint(target, path).start_epoch == 5  # weights and epoch are fine
    np.testing.assert_allclose(_logits(target), _logits(source), rtol=1e-6, atol=1e-6)
