import numpy as np
import paddle
import pytest
from paddle import nn

from pimm.layers import HardSigmoid, Swish
from pimm.models import ConvBnAct, DepthwiseSeparableConv, InvertedResidual, SqueezeExcite


def n_params(layer):
    # learnable parameters only (BN running statistics are non-trainable parameters in Paddle)
    return sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient)


def test_ds_block_16_16_k3_se():
    block = DepthwiseSeparableConv(16, 16, 3, act_layer=Swish, se_ratio=0.25)
    # conv_dw 16*9 + bn1 2*16 + SE (16 -> make_divisible(4)=8 -> 16: 16*8+8 + 8*16+16)
    # + conv_pw 16*16 + bn2 2*16
    assert n_params(block) == 144 + 32 + 136 + 144 + 256 + 32 == 744
    assert block.has_residual
    assert list(block.state_dict()) == [
        "conv_dw.weight", "bn1.weight", "bn1.bias", "bn1._mean", "bn1._variance",
        "se.conv_reduce.weight", "se.conv_reduce.bias", "se.conv_expand.weight", "se.conv_expand.bias",
        "conv_pw.weight", "bn2.weight", "bn2.bias", "bn2._mean", "bn2._variance"]
    assert block(paddle.randn([2, 16, 8, 8])).shape == [2, 16, 8, 8]


def test_ir_block_16_24_k3_s2_e4_se():
    block = InvertedResidual(16, 24, 3, stride=2, exp_ratio=4, act_layer=Swish, se_ratio=0.25)
    # mid 64: conv_pw 16*64, bn1 128, conv_dw 64*9, bn2 128,
    # SE on mid channels (64 -> 16 -> 64): 64*16+16 + 16*64+64, conv_pwl 64*24, bn3 48
    assert n_params(block) == 1024 + 128 + 576 + 128 + 1040 + 1088 + 1536 + 48 == 5568
    assert not block.has_residual
    assert [k for k in block.state_dict() if k.endswith("weight")] == [
        "conv_pw.weight", "bn1.weight", "conv_dw.weight", "bn2.weight", "se.conv_reduce.weight",
        "se.conv_expand.weight", "conv_pwl.weight", "bn3.weight"]
    assert block.conv_dw.weight.shape == [64, 1, 3, 3]
    assert block(paddle.randn([2, 16, 9, 9])).shape == [2, 24, 5, 5]


def test_ir_block_40_80_k3_s2_e6_no_se():
    block = InvertedResidual(40, 80, 3, stride=2, exp_ratio=6, act_layer=Swish)
    # mid 240: conv_pw 40*240, bn1 480, conv_dw 240*9, bn2 480, conv_pwl 240*80, bn3 160
    assert n_params(block) == 9600 + 480 + 2160 + 480 + 19200 + 160 == 32080
    assert block.se is None
    assert block(paddle.randn([1, 40, 8, 8])).shape == [1, 80, 4, 4]


def test_ir_mid_channels_are_made_divisible():
    # 24 * 2.3 = 55.2 -> 56 mid channels
    assert InvertedResidual(24, 24, 3, exp_ratio=2.3).conv_pw.weight.shape == [56, 24, 1, 1]


def test_conv_bn_act_has_no_se():
    block = ConvBnAct(192, 320, 1, act_layer=Swish)
    assert list(block.state_dict()) == ["conv.weight", "bn1.weight", "bn1.bias", "bn1._mean", "bn1._variance"]
    assert n_params(block) == 192 * 320 + 640


def test_squeeze_excite_value():
    paddle.seed(0)
    se = SqueezeExcite(8, se_ratio=0.25)  # Cream defaults: ReLU inside, hard-sigmoid gate, divisor 8
    assert se.conv_reduce.weight.shape == [8, 8, 1, 1]
    x = paddle.randn([2, 8, 3, 3])
    w1 = se.conv_reduce.weight.numpy()[:, :, 0, 0]
    b1 = se.conv_reduce.bias.numpy()
    w2 = se.conv_expand.weight.numpy()[:, :, 0, 0]
    b2 = se.conv_expand.bias.numpy()
    pooled = x.numpy().mean(axis=(2, 3))
    gate = np.maximum(pooled @ w1.T + b1, 0) @ w2.T + b2
    expected = x.numpy() * (np.clip(gate + 3, 0, 6) / 6)[:, :, None, None]
    np.testing.assert_allclose(se(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert isinstance(se.gate, HardSigmoid) and isinstance(se.act1, nn.ReLU)


def _zero_last_bn(bn):
    bn.weight.set_value(paddle.zeros(bn.weight.shape))
    bn.bias.set_value(paddle.zeros(bn.bias.shape))


@pytest.mark.parametrize("noskip", [False, True])
def test_residual_and_noskip(noskip):
    x = paddle.randn([2, 16, 6, 6])
    ir = InvertedResidual(16, 16, 3, exp_ratio=4, noskip=noskip)
    ds = DepthwiseSeparableConv(16, 16, 3, noskip=noskip)
    _zero_last_bn(ir.bn3)
    _zero_last_bn(ds.bn2)
    for block in (ir, ds):
        block.eval()
        expected = np.zeros(x.shape) if noskip else x.numpy()  # the branch outputs exactly zero
        np.testing.assert_allclose(block(x).numpy(), expected, atol=1e-6)


def test_pw_act_applies_activation_after_pointwise():
    block = DepthwiseSeparableConv(8, 8, 3, pw_act=True, noskip=True)
    block.bn2.bias.set_value(paddle.full([8], -100.0))
    block.eval()
    assert float(block(paddle.randn([1, 8, 4, 4])).abs().max()) == 0.0  # ReLU after bn2


def test_drop_path_in_block_drops_whole_branch():
    paddle.seed(1)
    block = InvertedResidual(8, 8, 3, exp_ratio=2, drop_path_rate=0.5)
    x = paddle.randn([64, 8, 4, 4])
    block.train()
    out = block(x)
    branch_zero = np.isclose(out.numpy(), x.numpy(), atol=1e-6).reshape(64, -1).all(axis=1)
    assert 10 < branch_zero.sum() < 54  # about half the samples keep only the shortcut
