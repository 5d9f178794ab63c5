"""thop-0.0.31-compatible MAC/parameter counting, checked against hand-computed figures."""
from __future__ import annotations

import paddle
import pytest

from pimm.utils.profile import PTFLOPS_RULES, count_parameters, format_count, profile


def test_stem_convolution_at_224():
    stem = paddle.nn.Conv2D(3, 16, 3, stride=2, padding=1, bias_attr=False)
    # 16 x 112 x 112 outputs, each 3 x 3 x 3 multiply-adds.
    assert profile(stem, (1, 3, 224, 224)) == (5_419_008, 432)


def test_batch_norm_counts_two_ops_per_element_and_no_running_stats():
    bn = paddle.nn.BatchNorm2D(16)
    bn.train()
    assert profile(bn, (1, 16, 112, 112)) == (2 * 16 * 112 * 112, 32)
    assert bn.training  # profiled in eval mode, flag restored


def test_pools_linear_and_thop_rules():
    assert profile(paddle.nn.AdaptiveAvgPool2D(1), (1, 320, 7, 7))[0] == (7 * 7 + 1) * 320
    assert profile(paddle.nn.AdaptiveAvgPool2D(1, data_format="NHWC"), (1, 7, 7, 320))[0] == 16_000
    assert profile(paddle.nn.AdaptiveAvgPool2D(2), (1, 4, 8, 8))[0] == (4 * 4 + 1) * 4 * 2 * 2
    assert profile(paddle.nn.AdaptiveMaxPool2D(1), (1, 4, 8, 8))[0] == 0
    assert profile(paddle.nn.AvgPool2D(2), (1, 4, 8, 8))[0] == 4 * 4 * 4
    assert profile(paddle.nn.LeakyReLU(), (1, 4, 8, 8))[0] == 256
    assert profile(paddle.nn.Upsample(scale_factor=2, mode="bilinear"), (1, 2, 4, 4))[0] == 11 * 128
    assert profile(paddle.nn.Upsample(scale_factor=2, mode="nearest"), (1, 2, 4, 4))[0] == 0
    assert profile(paddle.nn.Linear(1280, 1000), (2, 1280)) == (2 * 1280 * 1000, 1_281_000)
    # Transposed, grouped, with bias: 6 x 11 x 11 outputs, each 4/2 x 3 x 3 + 1.
    deconv = paddle.nn.Conv2DTranspose(4, 6, 3, stride=2, groups=2)
    assert profile(deconv, (1, 4, 5, 5)) == (6 * 11 * 11 * 19, 2 * 3 * 3 * 3 * 2 + 6)


class Swish(paddle.nn.Layer):
    def forward(self, x):
        return x * paddle.nn.functional.sigmoid(x)


class CustomConv(paddle.nn.Conv2D):
    """Stands for the pimm.layers convolutions: a Conv2D subclass with its own forward."""

    def forward(self, x):
        return super().forward(x)


class CustomBatchNorm(paddle.nn.BatchNorm2D):
    pass


class TinyNet(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv_stem = paddle.nn.Conv2D(3, 8, 3, stride=2, padding=1, bias_attr=False)
        self.bn1 = paddle.nn.BatchNorm2D(8)
        self.act = Swish()
        self.conv_dw = CustomConv(8, 8, 3, padding=1, groups=8)
        self.bn2 = CustomBatchNorm(8)
        self.se_reduce = paddle.nn.Conv2D(8, 4, 1)
        self.se_expand = paddle.nn.Conv2D(4, 8, 1)
        self.conv_pw = paddle.nn.Conv2D(8, 8, 1, bias_attr=False)
        self.pool = paddle.nn.AdaptiveAvgPool2D(1)
        self.classifier = paddle.nn.Linear(8, 10)
        self.dropout = paddle.nn.Dropout(0.2)
        self.unused = paddle.nn.Linear(5, 5)

    def forward(self, x):
        x = self.act(self.bn1(self.conv_stem(x)))
        shortcut = x
        x = self.act(self.bn2(self.conv_dw(x)))
        gate = self.se_expand(paddle.nn.functional.relu(self.se_reduce(x.mean([2, 3], keepdim=True))))
        x = x * paddle.nn.functional.sigmoid(gate)
        x = self.conv_pw(x) + shortcut
        return self.classifier(self.dropout(self.pool(x).flatten(1)))


TINY_NET_MACS = (
    8 * 16 * 16 * (3 * 3 * 3)      # conv_stem: 32 px, stride 2 -> 8 x 16 x 16
    + 2 * 8 * 16 * 16              # bn1
    + 8 * 16 * 16 * (1 * 3 * 3 + 1)  # depthwise conv with bias (a Conv2D subclass)
    + 2 * 8 * 16 * 16              # bn2 (a BatchNorm2D subclass)
    + 4 * (8 + 1) + 8 * (4 + 1)    # SE convs on 1 x 1, with bias; mean/relu/gate/product cost 0
    + 8 * 16 * 16 * 8              # conv_pw; the residual add costs 0
    + (16 * 16 + 1) * 8            # global average pool
    + 8 * 10                       # classifier; dropout, flatten, unused layer cost 0
)
TINY_NET_PARAMS = 216 + 16 + (72 + 8) + 16 + (32 + 4) + (32 + 8) + 64 + (80 + 10) + (25 + 5)


def test_small_network_matches_hand_count():
    assert TINY_NET_MACS == 102_564 and TINY_NET_PARAMS == 588
    net = TinyNet()
    assert profile(net, (1, 3, 32, 32)) == (TINY_NET_MACS, TINY_NET_PARAMS)
    assert profile(net, inputs=paddle.rand([2, 3, 32, 32])) == (2 * TINY_NET_MACS, TINY_NET_PARAMS)
    assert count_parameters(net) == TINY_NET_PARAMS


def test_frozen_model_still_counts_its_parameters():
    net = TinyNet()
    for parameter in net.parameters():
        parameter.stop_gradient = True
    assert count_parameters(net) == TINY_NET_PARAMS


def test_custom_rules_take_precedence_and_state_is_restored():
    net = TinyNet()
    net.train()
    net.bn2.eval()  # a deliberately frozen sublayer must stay frozen
    macs, _ = profile(net, (1, 3, 32, 32), custom_ops={
        Swish: lambda layer, inputs, output: inputs[0].shape[1],  # 8 per call, called twice
        CustomConv: lambda layer, inputs, output: 1,
    })
    depthwise = 8 * 16 * 16 * 10
    assert macs == TINY_NET_MACS - depthwise + 1 + 2 * 8

    assert net.training and net.conv_stem.training and not net.bn2.training
    assert all(not layer._forward_post_hooks for layer in net.sublayers(include_self=True))
    assert profile(net, (1, 3, 32, 32))[0] == TINY_NET_MACS


def test_shared_layers_count_per_call():
    conv = paddle.nn.Conv2D(4, 4, 1, bias_attr=False)
    twice = paddle.nn.Sequential(conv, paddle.nn.ReLU(), conv)
    assert profile(twice, (1, 4, 2, 2)) == (2 * 4 * 2 * 2 * 4, 16)

    class Tied(paddle.nn.Layer):  # the same conv reachable under two parents, called once
        def __init__(self):
            super().__init__()
            self.conv = conv
            self.branch = paddle.nn.Sequential(conv)

        def forward(self, x):
            return self.conv(x)

    assert profile(Tied(), (1, 4, 2, 2)) == (4 * 2 * 2 * 4, 16)


@pytest.mark.parametrize("value, text", [
    (13_848_832, "13.849M"), (2_673_096, "2.673M"), (604_340_000, "604.340M"),
    (1_500_000_000, "1.500G"), (1_000_000, "1000.000K"), (999, "999.000"),
])
def test_format_count(value, text):
    assert format_count(value) == text


def test_ptflops_rules_count_activations_per_output_and_pools_per_input():
    net = paddle.nn.Sequential(paddle.nn.ReLU(), paddle.nn.MaxPool2D(3, stride=2, padding=1),
                               paddle.nn.AvgPool2D(3, stride=1, padding=1, exclusive=True),
                               paddle.nn.AdaptiveAvgPool2D(1))
    # thop: ReLU and max pooling free, AvgPool one per output, global pool (window + 1) per output
    assert profile(net, (1, 4, 8, 8))[0] == 4 * 4 * 4 + (16 + 1) * 4
    # ptflops: ReLU 4*8*8 outputs; each pooling its input: 4*8*8, then 4*4*4 twice
    assert profile(net, (1, 4, 8, 8), custom_ops=PTFLOPS_RULES)[0] == 256 + 256 + 64 + 64
