"""pimm's batched 1x1 convolution: Paddle's values and gradients, used by Conv2d exactly where it
applies (small maps, dygraph, CPU), never in exported programs or second-order mode."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

import pimm.layers.conv2d as conv2d_module
from pimm.layers import create_conv2d, layer_modes
from pimm.layers.pointwise import (MAX_BATCHED_PIXELS, batched_pointwise_fits, batched_pointwise_ready,
                                   pointwise_conv2d)


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def _values_and_grads(fast: bool, x_np, w_np, b_np, g_np):
    x = paddle.to_tensor(x_np, stop_gradient=False)
    w = paddle.to_tensor(w_np, stop_gradient=False)
    b = None if b_np is None else paddle.to_tensor(b_np, stop_gradient=False)
    y = pointwise_conv2d(x, w, b) if fast else F.conv2d(x, w, b)
    y.backward(paddle.to_tensor(g_np))
    grads = [x.grad.numpy(), w.grad.numpy()] + ([] if b is None else [b.grad.numpy()])
    return [y.numpy()] + grads


@pytest.mark.parametrize("n, c_in, c_out, h, w, bias", [
    (3, 5, 7, 1, 1, True),    # squeeze-excite: a plain matrix product
    (2, 6, 4, 2, 3, False),   # non-square map
    (4, 16, 40, 8, 8, True),  # the largest map that takes the batched product
    (1, 3, 2, 5, 1, False),
])
def test_values_and_gradients_match_paddles_convolution(n, c_in, c_out, h, w, bias):
    rng = np.random.default_rng(n * 1000 + c_in * 10 + h)
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = rng.standard_normal((c_out, c_in, 1, 1)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32) if bias else None
    grad = rng.standard_normal((n, c_out, h, w)).astype(np.float32)
    fast = _values_and_grads(True, x, weight, b, grad)
    reference = _values_and_grads(False, x, weight, b, grad)
    assert fast[0].shape == (n, c_out, h, w)
    for name, a, r in zip(("output", "input grad", "weight grad", "bias grad"), fast, reference):
        assert _relative(a, r) < 1e-5, name


def test_one_image_by_hand():
    # out[o, p] = sum_c w[o, c] x[c, p] + b[o] for each pixel p
    x = paddle.to_tensor([[[[1.0, 2.0]], [[3.0, -1.0]]]])  # [1, 2, 1, 2]
    weight = paddle.to_tensor([[1.0, 1.0], [2.0, -1.0], [0.0, 0.5]]).reshape([3, 2, 1, 1])
    out = pointwise_conv2d(x, weight, paddle.to_tensor([0.0, 1.0, -1.0]))
    expected = [[[[4.0, 1.0]], [[0.0, 6.0]], [[0.5, -1.5]]]]
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


def test_where_it_applies():
    # decided when the convolution is built: a 1x1 filter, stride 1, no padding, no groups, NCHW
    weight = [8, 4, 1, 1]
    args = dict(groups=1, stride=[1, 1], padding=[0, 0], padding_algorithm="EXPLICIT",
                data_format="NCHW")
    assert batched_pointwise_fits(weight, **args)
    assert batched_pointwise_fits(weight, **dict(args, padding_algorithm="VALID"))
    assert not batched_pointwise_fits([8, 4, 3, 3], **args)
    assert not batched_pointwise_fits(weight, **dict(args, stride=[2, 2]))
    assert not batched_pointwise_fits(weight, **dict(args, padding=[1, 1]))
    assert not batched_pointwise_fits([8, 2, 1, 1], **dict(args, groups=2))
    assert not batched_pointwise_fits(weight, **dict(args, data_format="NHWC"))
    # decided per call: a float32 CPU map of at most 64 pixels
    small = paddle.zeros([2, 4, 8, 8])
    assert batched_pointwise_ready(small)
    assert MAX_BATCHED_PIXELS == 64
    assert not batched_pointwise_ready(paddle.zeros([2, 4, 9, 8]))  # 72 px
    assert not batched_pointwise_ready(small.astype("float64"))
    assert create_conv2d(4, 8, 1)._batched_pointwise and not create_conv2d(4, 8, 3)._batched_pointwise


def test_conv2d_takes_the_batched_path_only_in_dygraph_first_order(monkeypatch):
    calls = []
    original = conv2d_module.pointwise_conv2d

    def counting(*args):
        calls.append(args[0].shape)
        return original(*args)

    monkeypatch.setattr(conv2d_module, "pointwise_conv2d", counting)
    conv = create_conv2d(4, 6, 1, bias=True)
    x = paddle.randn([2, 4, 3, 3])
    reference = F.conv2d(x, conv.weight, conv.bias)
    np.testing.assert_allclose(conv(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-6)
    assert calls == [[2, 4, 3, 3]]
    conv(paddle.randn([2, 4, 16, 16]))  # a large map stays on Paddle's kernel
    with layer_modes(conv, second_order=True):
        conv(x)
    assert len(calls) == 1


def test_bad_weight_is_refused():
    with pytest.raises(ValueError, match=r"expected \[C_out, 4, 1, 1\]"):
        pointwise_conv2d(paddle.zeros([1, 4, 2, 2]), paddle.zeros([3, 5, 1, 1]))


def test_exported_programs_keep_the_convolution(tmp_path):
    # Paddle Inference fuses conv + batch norm + activation; a traced matmul would not fuse
    from pimm.deploy import export_model

    model = paddle.nn.Sequential(create_conv2d(3, 4, 1), create_conv2d(4, 5, 1, bias=True))
    files = export_model(model, str(tmp_path / "pointwise"), 4)
    with open(files["program"], encoding="utf-8") as f:
        program = f.read()
    assert '"1.conv2d"' in program and "matmul" not in program and "transpose" not in program
