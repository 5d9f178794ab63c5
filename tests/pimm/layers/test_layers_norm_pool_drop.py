import numpy as np
import paddle
import pytest

from pimm.layers import (BatchNorm2d, DropPath, SelectAdaptivePool2d, SyncBatchNorm2d,
                         convert_sync_batchnorm, drop_path, dropout, make_divisible, set_layer_modes)


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
    # torch momentum 0.1: running = 0.9 * running + 0.1 * batch, with torch's unbiased variance
    n = 6 * 4 * 5
    np.testing.assert_allclose(bn._mean.numpy(), 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn._variance.numpy(), 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
    bn.eval()
    run_mean, run_var = bn._mean.numpy(), bn._variance.numpy()
    out = bn(paddle.to_tensor(x_np)).numpy()
    np.testing.assert_allclose(out, (x_np - expand(run_mean)) / np.sqrt(expand(run_var) + 1e-5) * expand(w)
                               + expand(b), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn._mean.numpy(), run_mean)  # eval does not update


@pytest.mark.parametrize("second_order", [False, True])
def test_batchnorm_running_statistics_are_torch_unbiased_ones_in_float64(second_order):
    """Five training steps of varying shapes (n = 2 values per channel included) against float64
    numpy: the running variance is torch's unbiased update in both modes (to 1e-6: Paddle's fused
    kernel takes its momentum as a float32 attribute; the biased update would be off by > 1 %)."""
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    try:
        bn = BatchNorm2d(4, momentum=0.3)
        set_layer_modes(bn, second_order=second_order)
        bn.train()
        rng = np.random.RandomState(1)
        mean, var = np.zeros(4), np.ones(4)
        for shape in ((3, 4, 5, 2), (2, 4, 1, 1), (5, 4, 3, 3), (1, 4, 2, 3), (4, 4, 2, 2)):
            x = rng.randn(*shape) * rng.uniform(0.1, 5.0, (1, 4, 1, 1)) + rng.randn(1, 4, 1, 1)
            out = bn(paddle.to_tensor(x, stop_gradient=False))
            out.sum().backward()  # the fused kernel's backward still runs after the variance fix
            mean = 0.7 * mean + 0.3 * x.mean(axis=(0, 2, 3))
            var = 0.7 * var + 0.3 * x.var(axis=(0, 2, 3), ddof=1)
        np.testing.assert_allclose(bn._mean.numpy(), mean, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(bn._variance.numpy(), var, rtol=1e-6)
        with pytest.raises(ValueError, match="more than 1 value per channel"):
            bn(paddle.ones([1, 4, 1, 1]))  # torch refuses it too: the unbiased variance is undefined
        bn.eval()
        assert bn(paddle.ones([1, 4, 1, 1])).shape == [1, 4, 1, 1]
    finally:
        paddle.set_default_dtype(previous)


def test_batchnorm_modes_store_the_same_statistics():
    x = paddle.to_tensor(np.random.RandomState(2).randn(4, 3, 3, 3).astype("float32") * 2.0)
    layers = [BatchNorm2d(3), BatchNorm2d(3)]
    set_layer_modes(layers[1], second_order=True)
    for bn in layers:
        bn.train()
        for _ in range(3):
            bn(x)
    np.testing.assert_allclose(layers[0]._variance.numpy(), layers[1]._variance.numpy(), rtol=1e-6)
    np.testing.assert_allclose(layers[0]._mean.numpy(), layers[1]._mean.numpy(), rtol=1e-6, atol=1e-7)


def test_sync_batchnorm_conversion_shares_state_and_keeps_names():
    """What runs on CPU of the GPU-only synchronized batch norm: the conversion."""
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 1), BatchNorm2d(4, momentum=0.2, eps=1e-3),
                                 paddle.nn.Sequential(BatchNorm2d(4, affine=False)))
    names = list(model.state_dict())
    bn = model[1]
    converted = convert_sync_batchnorm(model)
    sync = converted[1]
    assert isinstance(sync, SyncBatchNorm2d) and isinstance(converted[2][0], SyncBatchNorm2d)
    assert sync._momentum == pytest.approx(0.8) and sync._epsilon == 1e-3
    assert sync.weight is bn.weight and sync._variance is bn._variance and sync._mean is bn._mean
    # Paddle's synchronized kernel needs a scale and shift: a non-affine layer gets frozen 1 and 0
    assert converted[2][0].weight.stop_gradient and float(converted[2][0].weight.sum()) == 4.0
    assert [n for n in converted.state_dict() if n not in ("2.0.weight", "2.0.bias")] == names


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
