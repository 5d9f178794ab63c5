import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from pimm.layers import (Conv2d, Conv2dSame, MixedConv2d, create_conv2d, get_padding, layer_modes,
                         split_channels)

# (kernel, stride) -> symmetric padding ((stride - 1) + (k - 1)) // 2, by hand.
SYMMETRIC_PADDING = {(3, 1): 1, (3, 2): 1, (5, 1): 2, (5, 2): 2, (7, 1): 3, (7, 2): 3}


@pytest.mark.parametrize("kernel,stride", sorted(SYMMETRIC_PADDING))
@pytest.mark.parametrize("size", [7, 8])
def test_default_padding_and_output_size(kernel, stride, size):
    pad = SYMMETRIC_PADDING[(kernel, stride)]
    assert get_padding(kernel, stride) == pad
    conv = create_conv2d(4, 6, kernel, stride=stride)
    assert type(conv) is Conv2d and conv._updated_padding == [pad, pad]
    out = conv(paddle.randn([1, 4, size, size]))
    expected = (size + 2 * pad - kernel) // stride + 1
    assert out.shape == [1, 6, expected, expected]
    # stride 1 keeps the size, stride 2 halves it (rounding up)
    assert expected == -(-size // stride)


def _ones_conv(padding, kernel, stride):
    conv = create_conv2d(1, 1, kernel, stride=stride, padding=padding)
    conv.weight.set_value(paddle.ones(conv.weight.shape))
    return conv


@pytest.mark.parametrize("size", [7, 8, 9])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_output_size(size, kernel):
    conv = create_conv2d(2, 2, kernel, stride=2, padding="same")
    assert isinstance(conv, Conv2dSame)
    assert conv(paddle.randn([1, 2, size, size])).shape[-1] == -(-size // 2)
    static = create_conv2d(2, 2, kernel, stride=1, padding="same")
    assert type(static) is Conv2d
    assert static(paddle.randn([1, 2, size, size])).shape[-1] == size


def test_same_padding_is_asymmetric_like_tensorflow():
    # 8x8 input, k3 s2: TF pads 0 before and 1 after, so the first window is fully inside (9 ones)
    # and the last one sees 2x2 real pixels. Symmetric padding gives 4 at the first window instead.
    x = paddle.ones([1, 1, 8, 8])
    same = _ones_conv("same", 3, 2)(x).numpy()[0, 0]
    assert same[0, 0] == 9 and same[-1, -1] == 4 and same.shape == (4, 4)
    symmetric = _ones_conv("", 3, 2)(x).numpy()[0, 0]
    assert symmetric[0, 0] == 4 and symmetric[-1, -1] == 9


def test_valid_padding():
    conv = create_conv2d(3, 3, 3, padding="valid")
    assert conv(paddle.randn([1, 3, 7, 7])).shape == [1, 3, 5, 5]


def test_depthwise_weight_shape_bias_and_state_names():
    dw = create_conv2d(8, 8, 5, depthwise=True)
    assert isinstance(dw, paddle.nn.Conv2D)
    assert dw.weight.shape == [8, 1, 5, 5] and dw.bias is None
    assert list(dw.state_dict()) == ["weight"]
    grouped = create_conv2d(8, 8, 3, groups=8)
    assert grouped.weight.shape == [8, 1, 3, 3]
    biased = create_conv2d(8, 4, 1, bias=True)
    assert list(biased.state_dict()) == ["weight", "bias"]


# (in, out, kernel, stride, bias): strided, a channel multiplier of 2, an odd count with a bias
@pytest.mark.parametrize("in_chs, out_chs, k, stride, bias",
                         [(6, 6, 3, 2, False), (9, 18, 3, 1, False), (7, 7, 5, 1, True)])
def test_depthwise_second_order_mode_gives_same_values_and_second_derivatives(in_chs, out_chs, k,
                                                                             stride, bias):
    paddle.seed(in_chs)
    dw = create_conv2d(in_chs, out_chs, k, stride=stride, groups=in_chs, bias=bias)
    x = paddle.randn([2, in_chs, 9, 9])
    reference = F.conv2d(x, dw.weight, dw.bias, stride=stride, padding=k // 2, groups=in_chs)
    np.testing.assert_allclose(dw(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
    x.stop_gradient = False
    with layer_modes(dw, second_order=True):
        out = dw(x)
        grad = paddle.grad((out ** 2).sum(), [dw.weight], create_graph=True)[0]
        second = paddle.grad(grad.sum(), [x])[0]
    np.testing.assert_allclose(out.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
    # d/dx sum_w d(sum out^2)/dw = 2 * sum over outputs of (d out/dx) * sum of the taps' inputs:
    # checked against the first-order gradient of the same expression written by hand
    x2 = x.detach()
    x2.stop_gradient = False
    out_ref = F.conv2d(x2, dw.weight, dw.bias, stride=stride, padding=k // 2, groups=in_chs)
    taps = F.conv2d(x2, paddle.ones_like(dw.weight), stride=stride, padding=k // 2,
                    groups=in_chs)
    expected = paddle.grad((2 * out_ref * taps).sum(), [x2])[0]
    np.testing.assert_allclose(second.numpy(), expected.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("padding, data_format", [("SAME", "NHWC"), ([0, 1, 2, 1], "NCHW")])
def test_depthwise_second_order_mode_other_layouts_and_paddings(padding, data_format):
    paddle.seed(1)
    conv = Conv2d(6, 6, 3, stride=2, padding=padding, groups=6, data_format=data_format)
    shape = [2, 7, 9, 6] if data_format == "NHWC" else [2, 6, 7, 9]
    x = paddle.randn(shape)
    reference = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=padding, groups=6,
                         data_format=data_format)
    with layer_modes(conv, second_order=True):
        out = conv(x)
    np.testing.assert_allclose(out.numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(conv(x).numpy(), reference.numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="padding_mode 'zeros' only"):
        Conv2d(6, 6, 3, padding=1, padding_mode="reflect")


def test_split_channels_matches_timm_rule():
    assert split_channels(10, 3) == [4, 3, 3]
    assert split_channels(96, 4) == [24, 24, 24, 24]
    assert split_channels(7, 2) == [4, 3]


def test_mixed_conv_splits_channels_and_kernels():
    conv = create_conv2d(10, 10, [3, 5, 7], depthwise=True)
    assert isinstance(conv, MixedConv2d)
    assert [list(p.shape) for p in conv.parameters()] == [[4, 1, 3, 3], [3, 1, 5, 5], [3, 1, 7, 7]]
    assert list(conv.state_dict()) == ["0.weight", "1.weight", "2.weight"]
    x = paddle.randn([2, 10, 9, 9])
    out = conv(x)
    assert out.shape == [2, 10, 9, 9]
    # each group convolves only its own channels with its own kernel
    parts = paddle.split(x, [4, 3, 3], axis=1)
    manual = [F.conv2d(p, c.weight, padding=k // 2, groups=p.shape[1])
              for p, c, k in zip(parts, conv.children(), [3, 5, 7])]
    np.testing.assert_allclose(out.numpy(), paddle.concat(manual, axis=1).numpy(), rtol=1e-5, atol=1e-5)


def test_mixed_conv_non_depthwise_output_split():
    conv = create_conv2d(6, 9, [3, 5])
    assert [list(p.shape) for p in conv.parameters()] == [[5, 3, 3, 3], [4, 3, 5, 5]]
    assert conv(paddle.randn([1, 6, 8, 8])).shape == [1, 9, 8, 8]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="Unknown padding 'full'"):
        create_conv2d(3, 3, 3, padding="full")
    with pytest.raises(ValueError, match="groups=4 must divide in_chs=6"):
        create_conv2d(6, 8, 3, groups=4)
