"""Second-order mode: same values as normal mode, and correct second derivatives (float64, checked
against finite differences) through stem conv, batch norm, swish, depthwise conv, squeeze-excite
and pooling, including the meta-matching pattern (simulated step w' = w - lr * g)."""
import numpy as np
import paddle
import pytest
from paddle import nn

from pimm.layers import BatchNorm2d, SelectAdaptivePool2d, Swish, create_conv2d, layer_modes
from pimm.models import DepthwiseSeparableConv, InvertedResidual


class TinyNet(nn.Layer):
    def __init__(self):
        super().__init__()
        self.conv_stem = create_conv2d(3, 8, 3, stride=2)
        self.bn1 = BatchNorm2d(8)
        self.act1 = Swish()
        self.ds = DepthwiseSeparableConv(8, 8, 3, act_layer=Swish, se_ratio=0.25)
        self.ir = InvertedResidual(8, 16, 5, stride=2, exp_ratio=4, act_layer=Swish, se_ratio=0.25)
        self.pool = SelectAdaptivePool2d("catavgmax", flatten=True)
        self.fc = nn.Linear(32, 4)

    def forward(self, x):
        x = self.ir(self.ds(self.act1(self.bn1(self.conv_stem(x)))))
        return self.fc(self.pool(x))


@pytest.fixture
def float64():
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype(previous)


def _randomize_bn(model, rng):
    # Non-trivial BN affine and running statistics so eval mode is a real test.
    for layer in model.sublayers():
        if isinstance(layer, BatchNorm2d):
            n = layer.weight.shape[0]
            for tensor, (low, high) in [(layer.weight, (0.5, 1.5)), (layer.bias, (-0.3, 0.3)),
                                        (layer._mean, (-0.2, 0.2)), (layer._variance, (0.5, 2.0))]:
                tensor.set_value(rng.uniform(low, high, n).astype(paddle.get_default_dtype()))


def _build(seed):
    paddle.seed(seed)
    model = TinyNet()
    rng = np.random.RandomState(seed)
    _randomize_bn(model, rng)
    x = paddle.to_tensor(rng.randn(3, 3, 12, 12))
    target = paddle.to_tensor(rng.randn(3, 4))
    return model, x, target, rng


def _weighted_loss(model, x, target, theta):
    error = model(x) - target
    per_sample = (error * error).mean(axis=1)  # not ** 2: pow's double grad fails on partial grads
    return (nn.functional.sigmoid(theta) * per_sample).sum()


def _trainable(model):
    return [p for p in model.parameters() if not p.stop_gradient]


@pytest.mark.parametrize("train", [True, False])
def test_forward_and_gradients_equal_in_both_modes(train):
    paddle.seed(0)
    model = TinyNet()
    _randomize_bn(model, np.random.RandomState(0))
    model.train() if train else model.eval()
    x = paddle.randn([3, 3, 12, 12])
    outputs, grads = [], []
    for second_order in (False, True):
        with layer_modes(model, second_order=second_order):
            out = model(x)
            outputs.append(out.numpy())
            grads.append([g.numpy() for g in paddle.grad((out * out).sum(), _trainable(model))])
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5 * np.abs(outputs[0]).max())
    # Some gradients are zero in theory (a BN bias followed by a linear map and train-mode BN), so
    # the absolute tolerance is relative to the largest gradient.
    scale = max(np.abs(g).max() for g in grads[0])
    for fast, generic in zip(*grads):
        np.testing.assert_allclose(generic, fast, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("train", [True, False])
def test_mixed_second_derivative_matches_finite_differences(float64, train):
    """d/dtheta <dL/dW, V> with the first grad taken w.r.t. the weights only (not the input):
    the case where Paddle's conv double grad silently drops terms unless the layers handle it."""
    model, x, target, rng = _build(1)
    model.train() if train else model.eval()
    params = _trainable(model)
    directions = [paddle.to_tensor(rng.randn(*p.shape)) for p in params]
    theta0 = rng.randn(3)

    def projected_grad(theta_np, create_graph):
        theta = paddle.to_tensor(theta_np, stop_gradient=not create_graph)
        with layer_modes(model, second_order=True):
            loss = _weighted_loss(model, x, target, theta)
            grads = paddle.grad(loss, params, create_graph=create_graph)
            projection = sum((g * v).sum() for g, v in zip(grads, directions))
        return projection, theta

    projection, theta = projected_grad(theta0, True)
    analytic = paddle.grad(projection, [theta])[0].numpy()
    eps = 1e-6
    numeric = np.array([(float(projected_grad(theta0 + e, False)[0]) - float(projected_grad(theta0 - e, False)[0]))
                        / (2 * eps) for e in np.eye(3) * eps])
    assert np.abs(numeric).max() > 1e-3  # the check is not vacuous
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def test_hessian_vector_product_matches_finite_differences(float64):
    """The weight part of the second derivative: grad_W <dL/dW, V> = H V."""
    model, x, target, rng = _build(2)
    params = _trainable(model)
    directions = [rng.randn(*p.shape) for p in params]
    theta = paddle.to_tensor(rng.randn(3))
    originals = [p.numpy() for p in params]

    with layer_modes(model, second_order=True):
        grads = paddle.grad(_weighted_loss(model, x, target, theta), params, create_graph=True)
        projection = sum((g * paddle.to_tensor(v)).sum() for g, v in zip(grads, directions))
        hvp = [h.numpy() for h in paddle.grad(projection, params)]

    def grads_at(step):
        for p, w, v in zip(params, originals, directions):
            p.set_value(w + step * v)
        return [g.numpy() for g in paddle.grad(_weighted_loss(model, x, target, theta), params)]

    eps = 1e-6
    plus, minus = grads_at(eps), grads_at(-eps)
    grads_at(0.0)
    numeric = [(gp - gm) / (2 * eps) for gp, gm in zip(plus, minus)]
    scale = max(np.abs(n).max() for n in numeric)
    assert scale > 1.0
    for p, h, n in zip(params, hvp, numeric):
        np.testing.assert_allclose(h, n, rtol=1e-5, atol=1e-8 * scale, err_msg=p.name)


def test_simulated_step_meta_gradient_matches_finite_differences(float64):
    """Cream's meta-matching pattern: g = dL_train(W, theta)/dW, W' = W - lr * g, gradient of
    L_val(W') w.r.t. theta. W' is put into the layers by swapping tensors into ``_parameters``
    (never by in-place updates, which Paddle's autograd does not track)."""
    model, x, target, rng = _build(3)
    x_val = paddle.to_tensor(rng.randn(3, 3, 12, 12))
    target_val = paddle.to_tensor(rng.randn(3, 4))
    owners = [(layer, name) for layer in model.sublayers(include_self=True)
              for name, p in layer._parameters.items() if p is not None and not p.stop_gradient]
    lr, theta0 = 0.5, rng.randn(3)

    def validation_loss(theta_np, create_graph):
        theta = paddle.to_tensor(theta_np, stop_gradient=not create_graph)
        params = [layer._parameters[name] for layer, name in owners]
        with layer_modes(model, second_order=True):
            grads = paddle.grad(_weighted_loss(model, x, target, theta), params, create_graph=create_graph)
            for (layer, name), p, g in zip(owners, params, grads):
                layer._parameters[name] = p - lr * g
            try:
                loss = _weighted_loss(model, x_val, target_val, paddle.zeros([3]))
            finally:
                for (layer, name), p in zip(owners, params):
                    layer._parameters[name] = p
        return loss, theta

    loss, theta = validation_loss(theta0, True)
    analytic = paddle.grad(loss, [theta])[0].numpy()
    eps = 1e-6
    numeric = np.array([(float(validation_loss(theta0 + e, False)[0]) - float(validation_loss(theta0 - e, False)[0]))
                        / (2 * eps) for e in np.eye(3) * eps])
    assert np.abs(numeric).max() > 1e-4
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)
