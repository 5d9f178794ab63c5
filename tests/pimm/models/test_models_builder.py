import math

import numpy as np
import paddle
import pytest
from paddle import nn

from pimm.layers import HardSwish, ReLU6, Swish, create_conv2d
from pimm.models import (ConvBnAct, DepthwiseSeparableConv, EfficientNetBuilder, InvertedResidual,
                         decode_arch_def, decode_block_str, efficientnet_init_weights,
                         encode_block_str, resolve_bn_args, round_channels)


def test_decode_ir_string():
    args, repeats = decode_block_str("ir_r2_k3_s2_e6_c80_se0.25")
    assert repeats == 2
    assert args == dict(block_type="ir", out_chs=80, stride=2, act_layer=None, dw_kernel_size=3,
                        pw_kernel_size=1, se_ratio=0.25, noskip=False, exp_kernel_size=1, exp_ratio=6.0)


def test_decode_ds_dsa_cn_and_options():
    ds, _ = decode_block_str("ds_r1_k3_s1_e1_c16_nre")
    assert ds["act_layer"] is nn.ReLU and ds["pw_act"] is False and ds["se_ratio"] is None
    dsa, _ = decode_block_str("dsa_r1_k5_s2_c24_nr6")
    assert dsa["pw_act"] and dsa["noskip"] and dsa["act_layer"] is ReLU6 and dsa["dw_kernel_size"] == 5
    cn, _ = decode_block_str("cn_r1_k1_s1_c320_se0.25")  # Cream's string; ConvBnAct has no SE
    assert cn == dict(block_type="cn", out_chs=320, stride=1, act_layer=None, kernel_size=1)
    mixed, _ = decode_block_str("ir_r1_k3.5.7_s1_e3_c32_a1.1_p1.1_nsw_noskip")
    assert mixed["dw_kernel_size"] == [3, 5, 7] and mixed["exp_kernel_size"] == [1, 1]
    assert mixed["pw_kernel_size"] == [1, 1] and mixed["act_layer"] is Swish and mixed["noskip"]
    assert decode_block_str("ir_r1_k3_s1_e2.3_c80_nhs")[0]["act_layer"] is HardSwish


@pytest.mark.parametrize("bad,message", [
    ("xx_r1_k3_s1_c8", "unknown block type 'xx'"),
    ("ir_r1_k3_s1_c8", r"missing options \['e'\]"),
    ("ir_r1_k3_s1_e2_c8_nge", "unknown activation 'nge'"),
    ("ir_r1_k3_s1_e2_c8_zz4", r"unsupported options \['zz'\]"),
    ("ds_r1_k3_s1_e6_c16", "has no expansion"),
    ("ir_r1_k3_s1_e2_cx", "cannot parse option 'cx'"),
])
def test_decode_errors_name_the_string(bad, message):
    with pytest.raises(ValueError, match=message):
        decode_block_str(bad)


ROUND_TRIP = [
    "ds_r1_k3_s1_e1_c16_se0.25",
    "ir_r1_k5_s2_e6_c40_se0.25",
    "ir_r3_k5_s2_e3_c40_se0.25_nre",
    "ir_r1_k3_s1_e2.5_c80",
    "ir_r2_k3_s1_e2.3_c80_nhs",
    "ir_r1_k3.5.7_s2_e6_c32_se0.5_a1.1_p1.1_nsw_noskip",
    "dsa_r1_k3_s1_e1_c16",
    "cn_r1_k1_s1_c320",
]


@pytest.mark.parametrize("block_str", ROUND_TRIP)
def test_encode_decode_round_trip(block_str):
    args, repeats = decode_block_str(block_str)
    assert encode_block_str(args, repeats) == block_str
    assert decode_block_str(encode_block_str(args, repeats)) == (args, repeats)


def test_decode_arch_def_expands_repeats_and_scales_depth():
    arch = [["ds_r1_k3_s1_e1_c16"], ["ir_r2_k3_s2_e4_c24", "ir_r1_k5_s1_e6_c24"]]
    stages = decode_arch_def(arch)
    assert [len(s) for s in stages] == [1, 3]
    assert [b["dw_kernel_size"] for b in stages[1]] == [3, 3, 5]
    # ceil(3 * 1.5) = 5 blocks, handed out from the last definition: round(1/3 * 5) = 2, then 3
    scaled = decode_arch_def(arch, depth_multiplier=1.5)
    assert [len(s) for s in scaled] == [2, 5]
    assert [b["dw_kernel_size"] for b in scaled[1]] == [3, 3, 3, 5, 5]
    # 'round': round(3.6) = 4 blocks; 'ceil' with 0.5: ceil(1.5) = 2, and every definition keeps >= 1
    assert [len(s) for s in decode_arch_def(arch, 1.2, "round")] == [1, 4]
    assert [len(s) for s in decode_arch_def(arch, 0.5, "ceil")] == [1, 2]
    stages[1][0]["out_chs"] = 999  # repeats are independent copies
    assert stages[1][1]["out_chs"] == 24
    with pytest.raises(TypeError, match="list of block strings"):
        decode_arch_def(["ir_r1_k3_s1_e1_c8"])


def test_round_channels_and_bn_args():
    assert round_channels(16, 1.0) == 16
    assert round_channels(24, 0.75) == 24  # 18 -> 16 loses > 10%: 24
    assert round_channels(160, 0.75) == 120
    assert round_channels(37, 0.0) == 37  # falsy multiplier: untouched
    kwargs = dict(bn_momentum=0.05, bn_eps=1e-4, drop_rate=0.2)
    assert resolve_bn_args(kwargs) == dict(momentum=0.05, eps=1e-4)
    assert kwargs == dict(drop_rate=0.2)
    assert resolve_bn_args(dict(bn_tf=True)) == dict(momentum=0.01, eps=1e-3)


def _blocks(stages):
    return [b for stage in stages for b in stage]


def test_builder_strides_dilation_drop_path_and_act_override():
    arch = decode_arch_def([["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r2_k3_s2_e4_c24_se0.25"],
                            ["ir_r2_k5_s2_e6_c40_nre"], ["cn_r1_k1_s1_c64"]])
    builder = EfficientNetBuilder(act_layer=Swish, output_stride=4, drop_path_rate=0.4)
    stages = builder(16, arch)
    assert all(isinstance(s, nn.Sequential) for s in stages) and builder.in_chs == 64
    blocks = _blocks(stages)
    assert [type(b) for b in blocks] == [DepthwiseSeparableConv, InvertedResidual, InvertedResidual,
                                         InvertedResidual, InvertedResidual, ConvBnAct]
    # only a stage's first block strides; the stem's /2 and one /2 reach output stride 4, so the
    # third stage's stride becomes dilation 2 for the blocks after it
    assert [b.conv_dw._stride[0] for b in blocks[:5]] == [1, 2, 1, 1, 1]
    assert [b.conv_dw._dilation[0] for b in blocks[:5]] == [1, 1, 1, 1, 2]
    assert [b.drop_path_rate for b in blocks[:5]] == pytest.approx([0.0, 0.4 / 6, 0.8 / 6, 1.2 / 6, 1.6 / 6])
    assert isinstance(blocks[3].act1, nn.ReLU) and isinstance(blocks[1].act1, Swish)
    x = paddle.randn([1, 16, 16, 16])
    for stage in stages:
        x = stage(x)
    assert x.shape == [1, 64, 8, 8]  # one stride-2 block ran on this input
    # building again from the same args gives the same structure (args are not consumed)
    again = _blocks(EfficientNetBuilder(act_layer=Swish)(16, arch))
    assert [type(b) for b in again] == [type(b) for b in blocks]


def test_builder_channel_multiplier_and_missing_act():
    stages = EfficientNetBuilder(channel_multiplier=0.5, act_layer=Swish)(
        8, decode_arch_def([["ir_r1_k3_s2_e4_c40"]]))
    assert stages[0][0].conv_pwl.weight.shape[0] == 24  # 20 -> 24
    with pytest.raises(ValueError, match="No activation"):
        EfficientNetBuilder()(8, decode_arch_def([["ir_r1_k3_s1_e4_c8"]]))
    with pytest.raises(ValueError, match="stride must be 1 or 2"):
        EfficientNetBuilder(act_layer=Swish)(8, decode_arch_def([["ir_r1_k3_s3_e4_c8"]]))


def test_init_weight_statistics():
    paddle.seed(0)
    model = nn.Sequential(create_conv2d(64, 512, 3), create_conv2d(256, 256, 5, depthwise=True),
                          nn.BatchNorm2D(32), nn.Linear(1024, 400), create_conv2d(8, 16, 1, bias=True))
    for p in model.parameters():
        p.set_value(paddle.full(p.shape, 7.0, p.dtype))
    efficientnet_init_weights(model)
    conv, dw, bn, fc, biased = model
    assert conv.weight.numpy().std() == pytest.approx(math.sqrt(2 / (9 * 512)), rel=0.02)
    assert dw.weight.numpy().std() == pytest.approx(math.sqrt(2 / 25), rel=0.05)  # fan_out k*k*C/C
    assert abs(conv.weight.numpy().mean()) < 0.002
    np.testing.assert_array_equal(bn.weight.numpy(), 1.0)
    np.testing.assert_array_equal(bn.bias.numpy(), 0.0)
    bound = 1 / math.sqrt(400)  # out_features
    w = fc.weight.numpy()
    assert np.abs(w).max() <= bound and w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    np.testing.assert_array_equal(fc.bias.numpy(), 0.0)
    np.testing.assert_array_equal(biased.bias.numpy(), 0.0)
