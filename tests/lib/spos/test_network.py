"""SPOS supernet and child network: logits equal the official PyTorch networks', official
checkpoint layouts load strictly, paths train only their own blocks."""
import os

import numpy as np
import paddle
import pytest

from pimm.models import create_model, load_checkpoint
from pimm.utils.profile import count_parameters
from lib.spos import RELEASED_ARCH, build_childnet, build_supernet
from tests.lib.spos.golden import SUPERNET_PATHS, fill_golden_weights, golden_input
from tests.pimm.models.paddle_to_torch import torch_state_dict
from tests.pimm.models.torchfile_writer import save_zip

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "spos", "reference_logits.npz")


@pytest.fixture(scope="module")
def golden_supernet():
    net = build_supernet()
    fill_golden_weights(net)
    net.eval()
    return net


def _assert_logits_equal(ours, reference):
    # float32 rounding through 20 layers: relative to the logits' scale
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-5 * np.abs(reference).max())


def test_supernet_logits_equal_the_official_supernet(golden_supernet):
    reference = np.load(FIXTURE)
    x = paddle.to_tensor(golden_input())
    logits = [golden_supernet(x, path).numpy() for path in SUPERNET_PATHS]
    for index, ours in enumerate(logits):
        _assert_logits_equal(ours, reference[f"supernet_path{index}"])
    assert np.abs(logits[0] - logits[1]).max() > 1.0  # the path matters


def test_childnet_logits_equal_the_official_network():
    net = build_childnet(RELEASED_ARCH)
    fill_golden_weights(net)
    net.eval()
    _assert_logits_equal(net(paddle.to_tensor(golden_input())).numpy(), np.load(FIXTURE)["child_released"])


def test_official_checkpoint_layouts_load_strictly(golden_supernet, tmp_path):
    # supernet: {'state_dict': DataParallel's module.-prefixed names}, non-affine batch norm (only
    # running statistics and num_batches_tracked), as the official training saves it
    state = torch_state_dict(golden_supernet, prefix="module.")
    assert len(state) == 1337  # the official supernet's state dict has 1337 entries
    assert {"module.first_conv.0.weight", "module.features.0.3.branch_proj.3.running_var",
            "module.features.19.3.branch_main.13.num_batches_tracked", "module.classifier.0.weight"} <= set(state)
    assert "module.first_conv.1.weight" not in state
    save_zip({"state_dict": state}, str(tmp_path / "checkpoint-150000.pth.tar"))
    fresh = build_supernet()
    load_checkpoint(fresh, str(tmp_path / "checkpoint-150000.pth.tar"), strict=True)
    loaded = fresh.state_dict()
    for name, value in golden_supernet.state_dict().items():
        np.testing.assert_array_equal(loaded[name].numpy(), value.numpy(), err_msg=name)

    # child: a bare state dict with affine batch norm
    child = build_childnet(RELEASED_ARCH)
    fill_golden_weights(child)
    state = torch_state_dict(child)
    assert len(state) == 493 and "features.0.branch_proj.3.bias" in state
    save_zip(state, str(tmp_path / "child.pth"))
    fresh = create_model("spos_shufflenetv2", checkpoint_path=str(tmp_path / "child.pth"))
    np.testing.assert_array_equal(fresh.classifier[0].weight.numpy(), child.classifier[0].weight.numpy())


def test_released_child_has_the_official_parameter_count():
    assert count_parameters(build_childnet(RELEASED_ARCH)) == 3_558_464


def test_invalid_paths_are_refused_with_the_reason(golden_supernet):
    x = paddle.zeros([1, 3, 32, 32])
    for bad, reason in (((0,) * 19, "20"), ((0,) * 19 + (4,), "outside 0..3"), ((0.5,) * 20, "integer")):
        with pytest.raises(ValueError, match=reason):
            golden_supernet(x, bad)
    with pytest.raises(ValueError, match="outside"):
        build_childnet((0,) * 19 + (-1,))


def test_supernet_training_updates_only_the_path_and_loss_falls():
    """A few SGD steps on one small batch at 64 px (the global pool makes any size work)."""
    paddle.seed(0)
    net = build_supernet(num_classes=4, drop_rate=0.0)
    path = SUPERNET_PATHS[1]
    off_path = net.features[0][0]  # path 1 uses choice 1 in layer 0
    before = {name: p.numpy().copy() for name, p in off_path.named_parameters()}
    params = net.path_parameters(path)
    assert not any(id(p) in {id(q) for q in off_path.parameters()} for p in params)
    optimizer = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=params)
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((8, 3, 64, 64)).astype("float32"))
    labels = paddle.to_tensor(np.arange(8) % 4)
    net.train()
    losses = []
    for _ in range(8):
        loss = paddle.nn.functional.cross_entropy(net(images, path), labels)
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        losses.append(float(loss))
    assert losses[-1] < 0.3 * losses[0], losses
    for name, p in off_path.named_parameters():
        np.testing.assert_array_equal(p.numpy(), before[name], err_msg=name)

