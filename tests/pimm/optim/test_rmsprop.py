"""RMSpropTF / RMSprop against update rules written out in numpy (float64)."""
import numpy as np
import paddle
import pytest

from pimm.optim import RMSprop, RMSpropTF

START = np.array([1.0, -2.0, 3.0])
GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.3, 0.2, 1.0]), np.array([1.5, 0.1, -0.4])]
LRS = [0.1, 0.3, 0.3]  # the rate changes after the first step


def _param(values=START):
    return paddle.create_parameter(
        [len(values)], "float32",
        default_initializer=paddle.nn.initializer.Assign(np.asarray(values, "float32")))


def _set_grad_and_step(opt, param, grad):
    (param * paddle.to_tensor(grad.astype("float32"))).sum().backward()
    opt.step()
    opt.clear_grad()


def reference(lrs, grads, *, momentum, weight_decay=0.0, tf=True, decoupled=False,
              lr_in_momentum=True, centered=False, alpha=0.9, eps=1e-3, clip_norm=None):
    """The update of timm's RMSpropTF (tf=True) / torch.optim.RMSprop (tf=False), by hand."""
    p = START.copy()
    square_avg = np.ones(3) if tf else np.zeros(3)
    grad_avg, buf = np.zeros(3), np.zeros(3)
    for lr, g in zip(lrs, grads):
        g = g.copy()
        if clip_norm is not None:
            g = g * min(1.0, clip_norm / np.linalg.norm(g))
        if weight_decay:
            if decoupled:
                p = p - weight_decay * p
            else:
                g = g + weight_decay * p
        square_avg = square_avg + (1 - alpha) * (g * g - square_avg)
        var = square_avg
        if centered:
            grad_avg = grad_avg + (1 - alpha) * (g - grad_avg)
            var = square_avg - grad_avg ** 2
        denom = np.sqrt(var + eps) if tf else np.sqrt(var) + eps
        if momentum > 0:
            if lr_in_momentum:
                buf = momentum * buf + lr * g / denom
                p = p - buf
            else:
                buf = momentum * buf + g / denom
                p = p - lr * buf
        else:
            p = p - lr * g / denom
    return p


CASES = {
    "tf_momentum": (RMSpropTF, dict(momentum=0.9), dict(momentum=0.9)),
    "tf_no_momentum": (RMSpropTF, dict(momentum=0.0), dict(momentum=0.0)),
    "tf_l2_decay": (RMSpropTF, dict(momentum=0.9, weight_decay=0.1),
                    dict(momentum=0.9, weight_decay=0.1)),
    "tf_decoupled_decay": (RMSpropTF, dict(momentum=0.9, weight_decay=0.1, decoupled_decay=True),
                           dict(momentum=0.9, weight_decay=0.1, decoupled=True)),
    "tf_lr_outside_momentum": (RMSpropTF, dict(momentum=0.9, lr_in_momentum=False),
                               dict(momentum=0.9, lr_in_momentum=False)),
    "tf_centered": (RMSpropTF, dict(momentum=0.9, centered=True),
                    dict(momentum=0.9, centered=True)),
    "torch_momentum_decay": (RMSprop, dict(momentum=0.9, alpha=0.9, weight_decay=0.1),
                             dict(momentum=0.9, weight_decay=0.1, tf=False,
                                  lr_in_momentum=False)),
    "torch_plain": (RMSprop, dict(alpha=0.9), dict(momentum=0.0, tf=False)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_three_steps_match_hand_computation(case):
    cls, kwargs, ref_kwargs = CASES[case]
    w = _param()
    opt = cls(learning_rate=LRS[0], parameters=[w], epsilon=1e-3, **kwargs)
    for lr, g in zip(LRS, GRADS):
        opt.set_lr(lr)
        _set_grad_and_step(opt, w, g)
    np.testing.assert_allclose(w.numpy(), reference(LRS, GRADS, **ref_kwargs), rtol=2e-6,
                               atol=2e-6)


def test_tf_and_torch_flavours_differ():
    # guards against the two classes silently sharing one rule
    a, b = _param(), _param()
    ta = RMSpropTF(0.1, [a], momentum=0.9, epsilon=1e-3)
    tb = RMSprop(0.1, [b], momentum=0.9, alpha=0.9, epsilon=1e-3)
    _set_grad_and_step(ta, a, GRADS[0])
    _set_grad_and_step(tb, b, GRADS[0])
    assert np.abs(a.numpy() - b.numpy()).max() > 1e-2


def test_groups_decay_and_lr_multiplier():
    decayed, plain = _param(), _param()
    opt = RMSpropTF(
        learning_rate=LRS[0], epsilon=1e-3, momentum=0.9,
        parameters=[{"params": [decayed], "weight_decay": 0.1},
                    {"params": [plain], "weight_decay": 0.0, "learning_rate": 0.5}])
    for lr, g in zip(LRS, GRADS):
        opt.set_lr(lr)
        (decayed * paddle.to_tensor(g.astype("float32"))).sum().backward()
        (plain * paddle.to_tensor(g.astype("float32"))).sum().backward()
        opt.step()
        opt.clear_grad()
    np.testing.assert_allclose(decayed.numpy(),
                               reference(LRS, GRADS, momentum=0.9, weight_decay=0.1), rtol=2e-6)
    np.testing.assert_allclose(plain.numpy(),
                               reference([lr * 0.5 for lr in LRS], GRADS, momentum=0.9),
                               rtol=2e-6)
    # weight decay stays inside the optimizer: no L2 regularizer is left on the parameter
    assert decayed.regularizer is None


def test_grad_clip_applies_before_the_update():
    w = _param()
    opt = RMSpropTF(0.1, [w], momentum=0.9, epsilon=1e-3, weight_decay=0.05,
                    grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    for lr, g in zip(LRS, GRADS):
        opt.set_lr(lr)
        _set_grad_and_step(opt, w, g)
    expected = reference(LRS, GRADS, momentum=0.9, weight_decay=0.05, clip_norm=1.0)
    np.testing.assert_allclose(w.numpy(), expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("momentum", [0.9, 0.0])
def test_parameter_without_grad_is_untouched(momentum):
    used, unused = _param(), _param([4.0, 5.0, 6.0])
    opt = RMSpropTF(0.1, [used, unused], momentum=momentum, epsilon=1e-3, weight_decay=0.1,
                    decoupled_decay=True)
    state_before = {k: v.numpy().copy() for k, v in opt.state_dict().items()}
    for g in GRADS:
        (used * paddle.to_tensor(g.astype("float32"))).sum().backward()
        opt.step()
        opt.clear_grad(set_to_zero=False)
    assert unused.grad is None
    np.testing.assert_array_equal(unused.numpy(), [4.0, 5.0, 6.0])  # not even decayed
    state_after = opt.state_dict()
    unused_keys = [k for k in state_after if k.startswith(unused.name + "_")]
    assert unused_keys, "state of every parameter exists from the start"
    for key in unused_keys:
        np.testing.assert_array_equal(state_after[key].numpy(), state_before[key])
    used_sq = [k for k in state_after if k.startswith(used.name + "_square_avg")][0]
    assert not np.allclose(state_after[used_sq].numpy(), state_before[used_sq])


def test_square_avg_starts_at_one_and_state_round_trips():
    w = _param()
    opt = RMSpropTF(0.1, [w], momentum=0.9, epsilon=1e-3)
    sq_key = [k for k in opt.state_dict() if "square_avg" in k][0]
    np.testing.assert_array_equal(opt.state_dict()[sq_key].numpy(), np.ones(3))
    _set_grad_and_step(opt, w, GRADS[0])
    saved = {k: v.clone() for k, v in opt.state_dict().items()}
    # a second optimizer over a copy of the parameter continues exactly like the first
    w2 = _param(w.numpy())
    opt2 = RMSpropTF(0.1, [w2], momentum=0.9, epsilon=1e-3)
    opt2.set_state_dict({k.replace(w.name, w2.name): v for k, v in saved.items()})
    _set_grad_and_step(opt, w, GRADS[1])
    _set_grad_and_step(opt2, w2, GRADS[1])
    np.testing.assert_array_equal(w.numpy(), w2.numpy())


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="epsilon"):
        RMSpropTF(0.1, [_param()], epsilon=-1.0)
    with pytest.raises(ValueError, match="parameters"):
        RMSpropTF(0.1)
