import numpy as np
import paddle
import pytest
from paddle import nn

from pimm.layers import HardSigmoid, SelectAdaptivePool2d, Swish, layer_modes
from pimm.models import MobileNetV3, create_model, decode_arch_def


def n_params(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def test_standard_parameter_counts():
    # timm's published counts for the same definitions (5.48M / 3.99M / 2.54M)
    assert n_params(create_model("mobilenetv3_large_100")) == 5_483_032
    assert n_params(create_model("mobilenetv3_large_075")) == 3_993_528
    assert n_params(create_model("mobilenetv3_small_100")) == 2_542_856


def _cream14(**kwargs):
    # Cream's 14 MFLOPs child network: stage1, 4 and 5 keep their template blocks (single block).
    arch = [["ds_r1_k3_s1_e1_c16_se0.25"], ["ir_r1_k3_s2_e4_c24_se0.25"], ["ir_r1_k5_s2_e6_c40_se0.25"] * 2,
            ["ir_r1_k5_s2_e6_c80_se0.25"] * 2, ["ir_r1_k3_s1_e6_c96_se0.25"], ["ir_r1_k5_s2_e6_c192_se0.25"],
            ["cn_r1_k1_s1_c320_se0.25"]]
    with paddle.utils.unique_name.guard():
        return MobileNetV3(decode_arch_def(arch), num_features=1280, stem_size=16, act_layer=Swish,
                           se_kwargs=dict(act_layer=nn.ReLU, gate_layer=HardSigmoid, divisor=8), **kwargs)


def test_cream_child_network_14_matches_reference_size_and_names():
    model = _cream14()
    assert n_params(model) == 2_673_096  # the reference reports 2.673M
    names = list(model.state_dict())
    assert len(names) == 161  # 186 torch entries minus 25 num_batches_tracked
    assert names[:2] == ["conv_stem.weight", "bn1.weight"]
    assert names[-6:] == ["blocks.6.0.bn1._mean", "blocks.6.0.bn1._variance", "conv_head.weight",
                          "conv_head.bias", "classifier.weight", "classifier.bias"]
    assert model.classifier.weight.shape == [1280, 1000]  # Paddle Linear weights are [in, out]


def test_forward_structure_pool_before_head():
    paddle.seed(0)
    model = _cream14(num_classes=10)
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    feats = model.forward_features(x)
    assert feats.shape == [2, 1280, 1, 1]
    stem = model.act1(model.bn1(model.conv_stem(x)))
    pooled = model.blocks(stem).mean(axis=[2, 3], keepdim=True)
    manual = model.act2(model.conv_head(pooled))
    np.testing.assert_allclose(feats.numpy(), manual.numpy(), rtol=1e-5, atol=1e-5)
    logits = model(x)
    np.testing.assert_allclose(logits.numpy(), model.classifier(feats.reshape([2, -1])).numpy(),
                               rtol=1e-5, atol=1e-5)
    with layer_modes(model, second_order=True):
        np.testing.assert_allclose(model(x).numpy(), logits.numpy(), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2D) for m in [model.conv_head, model.act2])
    assert model.conv_head.bias is not None


def test_small_input_shapes_classifier_reset_and_features():
    model = create_model("mobilenetv3_small_100", num_classes=7)
    model.eval()
    x = paddle.randn([2, 3, 32, 32])
    assert model(x).shape == [2, 7]
    assert model.get_classifier() is model.classifier
    model.reset_classifier(3, global_pool="max")
    assert model(x).shape == [2, 3] and isinstance(model.global_pool.max_pool, nn.AdaptiveMaxPool2D)
    model.reset_classifier(0)
    assert model(x).shape == [2, 1024]
    with pytest.raises(ValueError, match="changes conv_head's input width"):
        model.reset_classifier(5, global_pool="catavgmax")


def test_catavgmax_widens_conv_head_input():
    model = create_model("mobilenetv3_small_100", num_classes=4, global_pool="catavgmax")
    assert isinstance(model.global_pool, SelectAdaptivePool2d)
    assert model.conv_head.weight.shape == [1024, 2 * 576, 1, 1]
    model.eval()
    assert model(paddle.randn([1, 3, 32, 32])).shape == [1, 4]


def test_dropout_only_in_training():
    paddle.seed(1)
    model = create_model("mobilenetv3_small_100", num_classes=5, drop_rate=0.5)
    x = paddle.randn([2, 3, 32, 32])
    model.eval()
    first, second = model(x).numpy(), model(x).numpy()
    np.testing.assert_array_equal(first, second)
    model.train()
    assert not np.allclose(model(x).numpy(), model(x).numpy())


def test_bn_kwargs_reach_every_batch_norm():
    model = create_model("mobilenetv3_small_100", bn_momentum=0.01, bn_eps=1e-3)
    norms = [m for m in model.sublayers() if isinstance(m, nn.BatchNorm2D)]
    assert norms and all(m._momentum == pytest.approx(0.99) and m._epsilon == 1e-3 for m in norms)
