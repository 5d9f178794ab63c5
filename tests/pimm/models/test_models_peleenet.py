"""PeleeNet: construction, the published counts, the reference's logits, both checkpoint layouts."""
import argparse
import os

import numpy as np
import paddle
import pytest

from pimm.models import PeleeNet, create_model, load_checkpoint, resume_checkpoint
from pimm.models.peleenet import bottleneck_channels
from pimm.utils.profile import profile
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.torchfile_writer import REBUILD_TENSOR, save_legacy, tensor

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "peleenet")


def set_golden_weights(model: paddle.nn.Layer, seed: int = 2018) -> None:
    """Deterministic weights for the golden logits: one seeded numpy draw per state-dict entry, in
    state-dict order (numpy's RandomState streams are fixed across versions and platforms).
    Batch-norm statistics are far from 0/1, so eps and the statistics' roles show in the logits."""
    rng = np.random.RandomState(seed)
    for name, value in model.state_dict().items():
        shape, leaf = value.shape, name.rpartition(".")[2]
        if leaf == "_variance":
            array = rng.uniform(0.5, 2.0, shape)
        elif leaf == "_mean":
            array = rng.normal(0.0, 0.2, shape)
        elif leaf == "bias":
            array = rng.normal(0.0, 0.1, shape)
        elif len(shape) == 1:  # batch-norm scale
            array = rng.uniform(0.5, 1.5, shape)
        else:  # conv [out, in, kh, kw] and Linear [in, out]: fan-in normal keeps activations O(1)
            fan_in = int(np.prod(shape[1:])) if len(shape) == 4 else shape[0]
            array = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        value.set_value(array.astype("float32"))


def golden_images(size: int, count: int) -> np.ndarray:
    """Seeded images with structure at 1/8 of their size: global pooling averages plain noise away."""
    rng = np.random.RandomState(size)
    coarse = rng.normal(0.0, 1.5, (count, 3, 8, 8))
    images = np.repeat(np.repeat(coarse, size // 8, axis=2), size // 8, axis=3)
    return (images + rng.normal(0.0, 0.5, images.shape)).astype("float32")


def _logits(model: paddle.nn.Layer, images: np.ndarray) -> np.ndarray:
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(images)).numpy()


def test_create_model_gives_the_published_counts():
    model = create_model("peleenet", num_classes=1000)
    assert isinstance(model, PeleeNet) and model.num_features == 704
    macs, params = profile(model, (1, 3, 224, 224))
    assert params == 2_802_248
    assert macs == 513_875_904
    uncounted = {paddle.nn.BatchNorm2D: lambda *args: 0, paddle.nn.AvgPool2D: lambda *args: 0}
    assert profile(model, (1, 3, 224, 224), custom_ops=uncounted)[0] == 507_757_568  # conv + linear


def test_bottleneck_width_is_capped_by_the_input_width():
    assert bottleneck_channels(128, 32, 2) == 32  # 2 x 16
    assert bottleneck_channels(32, 32, 4) == 16  # 64 would exceed half of 32 input channels
    block = create_model("peleenet", bottleneck_width=4).features.denseblock1
    assert [layer.branch1a.conv.weight.shape[0] for layer in block] == [16, 32, 48]


def test_arguments_reach_the_layers():
    model = create_model("peleenet", num_classes=7, in_chans=1, drop_rate=0.2, bn_eps=1e-3,
                         bn_momentum=0.01)
    stem = model.features.stemblock.stem1
    assert stem.conv.weight.shape == [32, 1, 3, 3] and model.drop_rate == 0.2
    assert stem.norm._epsilon == 1e-3 and stem.norm._momentum == pytest.approx(0.99)
    reference_bn = create_model("peleenet").features.transition4.norm  # torch defaults
    assert reference_bn._epsilon == 1e-5 and reference_bn._momentum == pytest.approx(0.9)
    # 34 px: the stem's branches are 9 and 9 wide only with the max pool rounding up
    assert _logits(model, np.zeros((1, 1, 34, 34), "float32")).shape == (1, 7)
    model.reset_classifier(0)
    assert _logits(model, np.zeros((1, 1, 32, 32), "float32")).shape == (1, 704)
    with pytest.raises(ValueError, match="global average only"):
        create_model("peleenet", global_pool="max")
    with pytest.raises(TypeError, match="drop_path_rate"):
        create_model("peleenet", drop_path_rate=0.1)


def test_logits_equal_the_reference():
    """Logits of the authors' PyTorch PeleeNet on the same weights (tests/fixtures/peleenet/README.md)."""
    expected = np.load(os.path.join(FIXTURES, "golden_logits.npz"))
    model = create_model("peleenet", num_classes=1000)
    set_golden_weights(model)
    for size in (224, 320):
        reference = expected[f"logits_{size}"]
        logits = _logits(model, golden_images(size, len(reference)))
        scale = np.abs(reference).max()
        np.testing.assert_allclose(logits, reference, rtol=0, atol=1e-5 * scale, err_msg=f"{size} px")
        assert (logits.argmax(axis=1) == reference.argmax(axis=1)).all()


def test_released_checkpoint_format_loads_strictly(tmp_path):
    """peleenet_acc7208.pth.tar's layout: torch 0.3 legacy format, CUDA storages, DataParallel
    names, no num_batches_tracked, SGD state keyed by parameter ids."""
    source = create_model("peleenet", num_classes=1000)
    set_golden_weights(source)
    weights = torch_state_dict(source, "module.", batches_tracked=None, location="cuda:0",
                               rebuild=REBUILD_TENSOR)
    momentum = {index: {"momentum_buffer": tensor(np.full(3, 0.5, "float32"), "cuda:0", REBUILD_TENSOR)}
                for index in (140000000001, 140000000002)}
    optimizer = {"state": momentum, "param_groups": [
        {"lr": 0.0, "momentum": 0.9, "dampening": 0, "weight_decay": 1e-4, "nesterov": False,
         "params": sorted(momentum)}]}
    path = str(tmp_path / "peleenet_acc7208.pth.tar")
    save_legacy({"epoch": 120, "arch": "peleenet", "state_dict": weights, "best_acc1": 72.08,
                 "optimizer": optimizer}, path)

    target = create_model("peleenet", num_classes=1000)
    assert load_checkpoint(target, path, strict=True) == ([], [])
    images = golden_images(64, 1)
    np.testing.assert_array_equal(_logits(target, images), _logits(source, images))


def test_paddle_reproduction_checkpoint_loads(tmp_path):
    """The PaddlePaddle reproduction saves {'model', 'model_ema', 'optimizer', 'epoch', 'args'}."""
    model = create_model("peleenet", num_classes=10)
    states = {}
    for key, seed in (("model", 1), ("model_ema", 2)):
        set_golden_weights(model, seed)
        states[key] = {name: value.clone() for name, value in model.state_dict().items()}
    optimizer = paddle.optimizer.Momentum(0.1, parameters=model.parameters())
    path = str(tmp_path / "checkpoint-best.pdparams")
    paddle.save({**states, "epoch": 119, "optimizer": optimizer.state_dict(),
                 "args": argparse.Namespace(model="peleenet")}, path)
    target = create_model("peleenet", num_classes=10)
    for use_ema, key in ((False, "model"), (True, "model_ema")):
        assert load_checkpoint(target, path, use_ema=use_ema, strict=True) == ([], [])
        loaded = target.state_dict()
        for name, value in states[key].items():
            np.testing.assert_array_equal(loaded[name].numpy(), value.numpy(), err_msg=f"{key}: {name}")
    # its optimizer state is keyed by the other program's parameter names: weights only
    with pytest.raises(ValueError, match="another codebase's checkpoint"):
        resume_checkpoint(target, path, paddle.optimizer.Momentum(0.1, parameters=target.parameters()))


def test_training_steps_lower_the_loss():
    paddle.seed(0)
    model = create_model("peleenet", num_classes=4)
    rng = np.random.RandomState(0)
    images = paddle.to_tensor(rng.normal(0.0, 1.0, (8, 3, 32, 32)).astype("float32"))
    labels = paddle.to_tensor(rng.randint(0, 4, 8).astype("int64"))
    optimizer = paddle.optimizer.Momentum(0.05, momentum=0.9, parameters=model.parameters())
    model.train()
    losses = []
    for _ in range(8):
        loss = paddle.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0], losses
