import numpy as np
import paddle
import pytest

from pimm.layers import (BatchNorm2d, DropPath, SelectAdaptivePool2d, drop_path, dropout,
                         make_divisible, set_layer_modes)


@pytest.mark.parametrize("v,divisor,min_value,expected", [
    (4, 8, None, 8),          # below the divisor: the minimum
    (16 * 0.25, 8, None, 8),  # SE of a 16-channel block
    (12, 8, None, 16),        # exactly half way rounds up
    (11.9, 8, None, 16),      # rounds down to 8, which loses > 10%: one step up
    (10, 8, None, 16),        # 8 < 0.9 * 10
    (19.9, 8, None, 24),      # 16 < 0.9 * 19.9
    (20, 8, None, 24),
    (35.9, 8, None, 40),      # 32 < 0.9 * 35.9
    (60, 8, None, 64),
    (96 * 6 * 0.25, 8, None, 144),
    (3, 8, 16, 16),           # explicit minimum
    (100, 1, None, 100),
])
def test_make_divisible(v, divisor, min_value, expected):
    assert make_divisible(v, divisor, min_value) == expected


def test_batchnorm_torch_convention_and_state_names():
    bn = BatchNorm2d(3, eps=1e-3, momentum=0.01)
    assert bn._momentum == pytest.approx(0.99) and bn._epsilon == 1e-3
    assert list(bn.state_dict()) == ["weight", "bias", "_mean", "_variance"]
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm2d(3, momentum=0.9 + 1)


def test_batchnorm_without_affine_has_only_running_stats_and_loads_torch_names():
    from pimm.models import TorchStateDict, load_model_weights

    bn = BatchNorm2d(3, affine=False)
    assert bn.weight is None and bn.bias is None
    assert list(bn.state_dict()) == ["_mean", "_variance"]
    assert not [p for p in bn.parameters() if not p.stop_gradient]  # nothing to train
    # PyTorch's BatchNorm2d(affine=False) state dict, as pimm's torch reader returns it
    torch_state = TorchStateDict(running_mean=np.array([1.0, 2.0, 3.0], "float32"),
                                 running_var=np.array([4.0, 5.0, 6.0], "float32"),
                                 num_batches_tracked=np.array(7, "int64"))
    load_model_weights(bn, torch_state, strict=True)
    np.testing.assert_array_equal(bn._variance.numpy(), [4.0, 5.0, 6.0])
    with pytest.raises(ValueError, match="unexpected keys.*weight"):
        load_model_weights(bn, {"weight": np.ones(3, "float32"), "_mean": np.zeros(3, "float32"),
                                "_variance": np.ones(3, "float32")})


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("second_order", [False, True])
def test_batchnorm_train_and_eval_follow_formulas(second_order, affine):
    x_np = (np.random.RandomState(0).randn(6, 3, 4, 5) * [[[[2.0]], [[0.5]], [[3.0]]]] + 1.5).astype("float32")
    bn = BatchNorm2d(3, affine=affine)
    set_layer_modes(bn, second_order=second_order)
    w, b = np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 0.25])
    if affine:
        bn.weight.set_value(paddle.to_tensor(w, dtype="float32"))
        bn.bias.set_value(paddle.to_tensor(b, dtype="float32"))
    else:
        w, b = np.ones(3), np.zeros(3)
    mean, var = x_np.mean(axis=(0, 2, 3)), x_np.var(axis=(0, 2, 3))
    expand = lambda v: v.reshape(1, -1, 1, 1)  # noqa: E731
    bn.train()
    x = paddle.to_tensor(x_np, stop_gradient=False)
    out = bn(x)
    np.testing.assert_allclose(out.numpy(), (x_np - expand(mean)) / np.sqrt(expand(var) + 1e-5) * expand(w)
                               + expand(b), rtol=1e-4, atol=1e-4)
    # the input gets a gradient with or without learnt parameters
    (out * paddle.to_tensor(x_np)).sum().backward()
    assert float(x.grad.abs().sum()) > 0
    # torch momentum 0.1: running = 0.9 * running + 0.1 * batch (biased variance, Paddle's rule)
    np.testing.assert_allclose(bn._mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn._variance.numpy(), 0.9 + 0.1 * var, rtol=1e-5)
    bn.eval()
    run_mean, run_var = bn._mean.numpy(), bn._variance.numpy()
    out = bn(paddle.to_tensor(x_np)).numpy()
    np.testing.assert_allclose(out, (x_np - expand(run_mean)) / np.sqrt(expand(run_var) + 1e-5) * expand(w)
                               + expand(b), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn._mean.numpy(), run_mean)  # eval does not update


def test_pooling_uses_paddle_pool_sublayers_for_profilers():
    assert isinstance(SelectAdaptivePool2d("avg").avg_pool, paddle.nn.AdaptiveAvgPool2D)
    assert isinstance(SelectAdaptivePool2d("max").max_pool, paddle.nn.AdaptiveMaxPool2D)
    seen = []
    pool = SelectAdaptivePool2d("avg")
    pool.avg_pool.register_forward_post_hook(lambda layer, inp, out: seen.append(out.shape))
    pool(paddle.randn([1, 4, 3, 3]))
    assert seen == [[1, 4, 1, 1]]
    with pytest.raises(ValueError, match="Unknown pool_type 'mean'"):
        SelectAdaptivePool2d("mean")


def test_drop_path_identity_when_not_training():
    x = paddle.randn([8, 3, 2, 2])
    assert drop_path(x, 0.5, training=False) is x
    assert drop_path(x, 0.0, training=True) is x
    layer = DropPath(0.5)
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())


def test_drop_path_drops_whole_samples_and_rescales():
    paddle.seed(7)
    drop_prob, n = 0.3, 4000
    out = drop_path(paddle.ones([n, 2, 3, 3]), drop_prob, training=True).numpy()
    per_sample = out.reshape(n, -1)
    # every sample is either all zero or all 1 / keep_prob
    assert np.all((per_sample == 0).all(axis=1) | np.isclose(per_sample, 1 / 0.7).all(axis=1))
    dropped = (per_sample == 0).all(axis=1).mean()
    assert abs(dropped - drop_prob) < 0.03  # 4 sigma for n = 4000
    assert abs(out.mean() - 1.0) < 0.05  # the expectation is preserved
    with pytest.raises(ValueError, match="drop_prob"):
        drop_path(paddle.ones([2, 2]), 1.0, training=True)


@pytest.mark.parametrize("second_order", [False, True])
def test_dropout_statistics_in_both_modes(second_order):
    paddle.seed(3)
    out = dropout(paddle.ones([20000]), 0.2, training=True, second_order=second_order).numpy()
    assert dropout(paddle.ones([4]), 0.2, training=False, second_order=second_order
                   ).numpy().tolist() == [1.0] * 4
    assert set(np.round(np.unique(out), 5)) == {0.0, 1.25}
    assert abs((out == 0).mean() - 0.2) < 0.015
