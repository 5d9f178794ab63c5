"""The search network: equal to the official one, trainable at every stage size, alphas apart."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from lib.darts import PRIMITIVES, SearchNetwork, full_switches, plan_stages, prune_switches
from tests.lib.darts.reference import fill_deterministic, reference_input

LABELS = np.array([3, 7])


def _network(switches_normal, switches_reduce, C=4, layers=5, **kwargs):
    with paddle.utils.unique_name.guard():
        return SearchNetwork(C, 10, layers, switches_normal, switches_reduce, **kwargs)


@pytest.mark.parametrize("stage", ["full", "five", "three"])
def test_logits_and_alpha_gradients_equal_the_official_network(reference, stage):
    if stage == "full":
        normal = reduce = full_switches()
    else:
        normal = reference[f"search_{stage}_switches_normal"].tolist()
        reduce = reference[f"search_{stage}_switches_reduce"].tolist()
    model = _network(normal, reduce)
    fill_deterministic(model)
    x = paddle.to_tensor(reference_input((2, 3, 16, 16), seed=2))
    model.eval()
    np.testing.assert_allclose(model(x).numpy(), reference[f"search_{stage}_eval"], rtol=1e-4, atol=1e-5)
    model.train()
    logits = model(x)
    F.cross_entropy(logits, paddle.to_tensor(LABELS)).backward()
    np.testing.assert_allclose(logits.numpy(), reference[f"search_{stage}_train"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.alphas_normal.grad.numpy(), reference[f"search_{stage}_grad_normal"],
                               rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.alphas_reduce.grad.numpy(), reference[f"search_{stage}_grad_reduce"],
                               rtol=1e-3, atol=1e-5)


def test_forward_backward_at_the_three_stage_sizes():
    """5, 11 and 17 cells with 8, 5 and 3 operations per edge, switches pruned from the alphas."""
    rng = np.random.RandomState(0)
    normal = reduce = full_switches()
    stages = plan_stages(cells=(5, 11, 17), channels=(4, 6, 8))
    for stage in stages:
        paddle.seed(stage.index)
        model = _network(normal, reduce, C=stage.channels, layers=stage.cells, skip_dropout=stage.skip_dropout)
        assert [p.shape for p in model.arch_parameters()] == [[14, stage.num_ops]] * 2
        assert all(sum(row) == stage.num_ops for row in model.switches_normal + model.switches_reduce)
        model.train()
        x = paddle.to_tensor(rng.normal(size=(2, 3, 16, 16)).astype(np.float32))
        logits = model(x)
        assert logits.shape == [2, 10]
        F.cross_entropy(logits, paddle.to_tensor(LABELS)).backward()
        for alphas in model.arch_parameters():
            assert alphas.grad is not None and np.isfinite(alphas.grad.numpy()).all()
            assert np.abs(alphas.grad.numpy()).min() > 0  # every edge and op in play gets a signal
        assert all(p.grad is not None for p in model.weights())
        if stage.keep is not None:
            normal = prune_switches(normal, model.alphas_normal.numpy(), stage.keep)
            reduce = prune_switches(reduce, model.alphas_reduce.numpy(), stage.keep)


def test_arch_parameters_and_weights_are_apart_and_checkpointed():
    model = _network(full_switches(), full_switches())
    arch, weights = model.arch_parameters(), model.weights()
    assert {id(p) for p in arch}.isdisjoint(id(p) for p in weights)
    assert all(not p.stop_gradient for p in weights)  # no batch-norm running statistics
    trainable = {id(p) for p in model.parameters() if not p.stop_gradient}
    assert trainable == {id(p) for p in arch + weights}
    state = model.state_dict()
    assert "alphas_normal" in state and "alphas_reduce" in state
    # cells have no affine batch norm; the stem has
    assert "stem.1.weight" in state and not any(k.startswith("cells.") and k.endswith("bn.weight") for k in state)
    assert "cells.0.cell_ops.0.m_ops.1.1._mean" in state  # max pool, then batch norm (affine=False)
    assert abs(model.alphas_normal.numpy()).max() < 0.01  # 1e-3 standard normals


def test_alternating_search_steps_learn():
    """Adam on the alphas with one batch, SGD on the weights with another, as P-DARTS trains
    (a last-stage-like network: 3 operations per edge, 3 cells; from PyTorch's initialisation,
    whose small classifier weights start the loss near log(10) and take a few steps to move)."""
    paddle.seed(0)
    three = [[name in ("none", "skip_connect", "sep_conv_3x3") for name in PRIMITIVES] for _ in range(14)]
    model = _network(three, three, layers=3, skip_dropout=0.3)
    rng = np.random.RandomState(1)
    x_train, x_val = (paddle.to_tensor(rng.normal(size=(8, 3, 16, 16)).astype(np.float32)) for _ in range(2))
    y = paddle.to_tensor(np.arange(8) % 10)
    clip = paddle.nn.ClipGradByGlobalNorm(5.0)
    weights_opt = paddle.optimizer.Momentum(0.05, momentum=0.9, parameters=model.weights(), weight_decay=3e-4,
                                            grad_clip=clip)
    arch_opt = paddle.optimizer.Adam(6e-4, beta1=0.5, beta2=0.999, parameters=model.arch_parameters(),
                                     weight_decay=1e-3, grad_clip=clip)
    alphas_before = model.alphas_normal.numpy().copy()
    model.train()
    losses = []
    for _ in range(10):
        F.cross_entropy(model(x_val), y).backward()
        arch_opt.step()
        model.clear_gradients()
        loss = F.cross_entropy(model(x_train), y)
        loss.backward()
        weights_opt.step()
        model.clear_gradients()
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0]
    assert not np.allclose(model.alphas_normal.numpy(), alphas_before)


def test_skip_dropout_acts_on_identity_skips_in_training_only():
    only_skip = [[name in ("none", "skip_connect") for name in PRIMITIVES] for _ in range(14)]
    paddle.seed(0)
    model = _network(only_skip, full_switches(), skip_dropout=0.5)
    x = paddle.to_tensor(reference_input((2, 3, 16, 16)))
    model.eval()
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    model.train()
    first, second = model(x).numpy(), model(x).numpy()
    assert not np.allclose(first, second)
    model.skip_dropout = 0.0
    np.testing.assert_allclose(model(x).numpy(), model(x).numpy(), rtol=1e-6)


def test_switches_are_checked():
    bad = [list(row) for row in full_switches()]
    bad[3][2] = False
    with pytest.raises(ValueError, match="switches_normal must switch on the same number"):
        _network(bad, full_switches())
    with pytest.raises(ValueError, match="13 edges make no cell"):
        _network(full_switches()[:13], full_switches())
    with pytest.raises(ValueError, match="switches_reduce has 9 rows; a cell of 4 nodes has 14 edges"):
        _network(full_switches(), full_switches(steps=3))
