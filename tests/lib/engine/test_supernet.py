"""The supernet-training helpers Cream's search and SPOS share, on SPOS's supernet (Cream's is
covered by test_search.py): path updates and per-path batch-norm recalibration."""
import os

import numpy as np
import paddle
import pytest

from lib.config import load_config
from lib.engine.supernet import create_search_optimizer, recalibrated_batch_norm, update_path
from lib.spos import Widths, build_supernet

DEMO = os.path.join(os.path.dirname(__file__), "..", "..", "..", "experiments", "configs", "spos",
                    "demo_supernet.yaml")
NARROW = Widths((24, 32, 64, 96), 128)
PATH = (0, 1, 2, 3) * 5


@pytest.fixture
def supernet():
    paddle.seed(0)
    return build_supernet(num_classes=4, widths=NARROW)


def _batches(count, scale=1.0):
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((4, 3, 32, 32)) * (i + 1) * scale + i).astype("float32") for i in range(count)]


def test_recalibration_gives_the_path_the_mean_of_its_batch_statistics(supernet):
    stem_bn = supernet.first_conv[1]
    head_bn = supernet.conv_last[1]
    on_path_bn = supernet.features[5][1].branch_main[1]  # layer 5 of PATH is choice 1
    off_path_bn = supernet.features[5][0].branch_main[1]
    captured = []
    hook = stem_bn.register_forward_pre_hook(lambda layer, inputs: captured.append(inputs[0].numpy()))
    before = {k: v.numpy().copy() for k, v in supernet.state_dict().items()}
    batches = _batches(3)
    supernet.eval()
    with recalibrated_batch_norm(supernet, PATH, batches):
        hook.remove()
        expected = np.mean([x.mean(axis=(0, 2, 3)) for x in captured], axis=0)
        np.testing.assert_allclose(stem_bn._mean.numpy(), expected, rtol=1e-4, atol=1e-5)
        for bn in (head_bn, on_path_bn):
            assert not np.allclose(bn._mean.numpy(), 0.0)  # the path's statistics, not the initial zeros
        np.testing.assert_array_equal(off_path_bn._mean.numpy(), before["features.5.0.branch_main.1._mean"])
        assert not supernet.training
        recalibrated = supernet(paddle.to_tensor(batches[0]), PATH).numpy()
    for key, value in supernet.state_dict().items():  # everything back, momentum too
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)
    assert stem_bn._momentum == pytest.approx(0.9)
    assert not np.allclose(recalibrated, supernet(paddle.to_tensor(batches[0]), PATH).numpy())


def test_recalibration_does_not_depend_on_the_statistics_it_replaces(supernet):
    batches = _batches(2)
    supernet.eval()
    with recalibrated_batch_norm(supernet, PATH, batches):
        first = supernet(paddle.to_tensor(batches[0]), PATH).numpy()
    with paddle.no_grad():
        for bn in (supernet.first_conv[1], supernet.conv_last[1]):
            bn._mean.set_value(paddle.full_like(bn._mean, float("nan")))
    with recalibrated_batch_norm(supernet, PATH, batches):
        np.testing.assert_allclose(supernet(paddle.to_tensor(batches[0]), PATH).numpy(), first, rtol=1e-5)


def test_a_path_update_moves_its_blocks_only(supernet):
    cfg = load_config(DEMO, ["LR", "0.05"])
    optimizer = create_search_optimizer(cfg, supernet)
    # SPOS's supernet has no biases and no affine batch norm: every parameter is a decayed weight
    assert [g["regularization_coeff"] for g in optimizer._param_groups] == [4e-5]
    before = {k: v.numpy().copy() for k, v in supernet.state_dict().items()}
    images, labels = paddle.to_tensor(_batches(1)[0]), paddle.to_tensor(np.arange(4))
    supernet.train()
    update_path(supernet, optimizer, paddle.nn.functional.cross_entropy(supernet(images, PATH), labels), PATH)
    moved = {k for k, v in supernet.state_dict().items() if not np.array_equal(v.numpy(), before[k])}
    on_path = {f"features.{layer}.{choice}." for layer, choice in enumerate(PATH)}
    assert any(k.startswith("first_conv.0.") for k in moved) and any(k.startswith("classifier") for k in moved)
    for key in before:
        if key.startswith("features."):
            assert (key in moved) == any(key.startswith(p) for p in on_path), key
