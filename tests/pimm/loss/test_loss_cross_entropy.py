import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from pimm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy, log_softmax, softmax

LOGITS = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])


def _np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def test_log_softmax_values_and_stability():
    np.testing.assert_allclose(log_softmax(paddle.to_tensor(LOGITS)).numpy(), _np_log_softmax(LOGITS), rtol=1e-12)
    big = log_softmax(paddle.to_tensor([[1000.0, 0.0, -1000.0]], dtype="float32")).numpy()
    assert np.all(np.isfinite(big)) and big[0, 0] == 0.0 and big[0, 1] == pytest.approx(-1000.0)
    np.testing.assert_allclose(softmax(paddle.to_tensor(LOGITS)).numpy().sum(-1), 1.0, rtol=1e-12)


def test_label_smoothing_cross_entropy_hand_value():
    target = np.array([2, 0])
    logp = _np_log_softmax(LOGITS)
    nll = -logp[np.arange(2), target]
    expected = np.mean(0.9 * nll + 0.1 * (-logp.mean(axis=-1)))
    loss = LabelSmoothingCrossEntropy(0.1)(paddle.to_tensor(LOGITS), paddle.to_tensor(target))
    assert float(loss) == pytest.approx(expected, rel=1e-12)
    # Row 0 by hand: log-sum-exp(1, 2, 3) = 3.40760596.
    assert -logp[0, 2] == pytest.approx(3.40760596 - 3.0, abs=1e-8)
    plain = LabelSmoothingCrossEntropy(0.0)(paddle.to_tensor(LOGITS), paddle.to_tensor(target))
    ref = F.cross_entropy(paddle.to_tensor(LOGITS), paddle.to_tensor(target))
    assert float(plain) == pytest.approx(float(ref), rel=1e-12)
    with pytest.raises(ValueError, match=r"label smoothing must be in \[0, 1\)"):
        LabelSmoothingCrossEntropy(1.0)


def test_soft_target_cross_entropy_hand_value():
    target = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    expected = np.mean(-(target * _np_log_softmax(LOGITS)).sum(-1))
    loss = SoftTargetCrossEntropy()(paddle.to_tensor(LOGITS), paddle.to_tensor(target))
    assert float(loss) == pytest.approx(expected, rel=1e-12)


def _hvp_check(loss_of_weight, w0, seed=0):
    """d/dw (grad(w) . v) from double backward vs central finite differences of grad(w) . v."""
    rng = np.random.default_rng(seed)
    v, u = rng.standard_normal(w0.shape), rng.standard_normal(w0.shape)

    def grad_dot_v(w_np, create_graph):
        w = paddle.to_tensor(w_np, stop_gradient=False)
        (g,) = paddle.grad(loss_of_weight(w), w, create_graph=create_graph)
        return (g * paddle.to_tensor(v)).sum(), w

    phi, w = grad_dot_v(w0, True)
    (hv,) = paddle.grad(phi, w)
    analytic = float((hv * paddle.to_tensor(u)).sum())
    eps = 1e-5
    plus = float(grad_dot_v(w0 + eps * u, False)[0])
    minus = float(grad_dot_v(w0 - eps * u, False)[0])
    assert analytic == pytest.approx((plus - minus) / (2 * eps), rel=1e-6, abs=1e-9)
    assert abs(analytic) > 1e-4


def test_losses_support_double_backward():
    rng = np.random.default_rng(1)
    x = paddle.to_tensor(rng.standard_normal((5, 4)))
    teacher = paddle.to_tensor(rng.standard_normal((5, 3)))
    labels = paddle.to_tensor(np.array([0, 2, 1, 1, 0]))
    w0 = rng.standard_normal((4, 3))
    soft = SoftTargetCrossEntropy()
    smooth = LabelSmoothingCrossEntropy(0.1)
    _hvp_check(lambda w: soft(paddle.matmul(x, w), softmax(teacher)), w0)
    _hvp_check(lambda w: smooth(paddle.matmul(x, w), labels), w0)
    # A KD-like term whose target is itself a softmax of the weights (the student's own features).
    _hvp_check(lambda w: soft(paddle.matmul(x, w), softmax(paddle.matmul(x, w * 0.5))), w0)
