"""pimm.layers.torch_default_init: PyTorch's default ranges for convolutions and linear layers."""
import math

import numpy as np
import paddle
from paddle import nn

from pimm.layers import BatchNorm2d, create_conv2d, torch_default_init


def test_weights_and_biases_uniform_within_one_over_sqrt_fan_in():
    paddle.seed(0)
    model = nn.Sequential(
        create_conv2d(16, 64, 3, padding=1),  # fan_in 16 * 9
        create_conv2d(64, 64, 5, padding=2, groups=64),  # depthwise: fan_in 25
        BatchNorm2d(64),
        nn.Linear(400, 10),  # Paddle's weight is [in, out]: fan_in 400
    )
    model[0].bias = model[0].create_parameter([64], is_bias=True)
    assert torch_default_init(model) is model
    for param, fan_in in ((model[0].weight, 144), (model[0].bias, 144), (model[1].weight, 25),
                          (model[3].weight, 400), (model[3].bias, 400)):
        values = param.numpy()
        bound = 1.0 / math.sqrt(fan_in)
        assert np.abs(values).max() <= bound
        if values.size >= 64:
            # uniform on [-b, b]: standard deviation b / sqrt(3), not Paddle's larger defaults
            assert abs(values.std() - bound / math.sqrt(3)) < 0.15 * bound
    np.testing.assert_array_equal(model[2].weight.numpy(), np.ones(64, np.float32))  # untouched
