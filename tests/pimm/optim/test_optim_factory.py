"""create_optimizer: names, config adapters, weight-decay groups, lr groups, and Paddle's
built-in optimizers checked against the torch update formulas written out in numpy."""
import argparse

import numpy as np
import paddle
import pytest
from paddle.utils import unique_name
from yacs.config import CfgNode

from pimm.optim import (RMSpropTF, add_weight_decay, create_optimizer, load_optimizer_state)


class TinyNet(paddle.nn.Layer):
    """conv (no bias) -> BN -> linear (bias): every kind of parameter the filter must sort."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(2, 3, 1, bias_attr=False)
        self.bn = paddle.nn.BatchNorm2D(3)
        self.fc = paddle.nn.Linear(3, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean(axis=[2, 3]))


def build_net():
    with unique_name.guard():
        return TinyNet()


def args(**kw):
    base = dict(opt="sgd", lr=0.1, weight_decay=0.01, momentum=0.9, opt_eps=1e-3)
    base.update(kw)
    return argparse.Namespace(**base)


def _vec_param(values):
    return paddle.create_parameter(
        [len(values)], "float32",
        default_initializer=paddle.nn.initializer.Assign(np.asarray(values, "float32")))


START = np.array([1.0, -2.0, 3.0])
GRADS = [np.array([0.5, -1.0, 2.0]), np.array([-0.3, 0.2, 1.0]), np.array([1.5, 0.1, -0.4])]
LRS = [0.1, 0.2, 0.2]


def run_steps(opt, params):
    for lr, g in zip(LRS, GRADS):
        opt.set_lr(lr)
        for p in params:
            (p * paddle.to_tensor(g.astype("float32"))).sum().backward()
        opt.step()
        opt.clear_grad()


def torch_sgd(lrs, *, momentum, weight_decay, nesterov, mult=1.0):
    p, buf = START.copy(), np.zeros(3)
    for lr, g in zip(lrs, GRADS):
        g = g + weight_decay * p
        buf = momentum * buf + g
        step = g + momentum * buf if nesterov else buf
        p = p - lr * mult * step
    return p


def torch_adam(lrs, *, weight_decay, decoupled, eps=1e-3, b1=0.9, b2=0.999):
    p, m, v = START.copy(), np.zeros(3), np.zeros(3)
    for t, (lr, g) in enumerate(zip(lrs, GRADS), 1):
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
        p = p - lr / (1 - b1 ** t) * m / denom
    return p


@pytest.mark.parametrize("name,nesterov", [("sgd", True), ("nesterov", True),
                                           ("momentum", False)])
def test_sgd_variants_match_torch_formula(name, nesterov):
    decayed, plain = _vec_param(START), _vec_param(START)
    groups = [{"params": [decayed], "weight_decay": 0.05},
              {"params": [plain], "weight_decay": 0.0, "learning_rate": 0.5}]
    opt = create_optimizer(args(opt=name), groups)
    run_steps(opt, [decayed, plain])
    np.testing.assert_allclose(
        decayed.numpy(), torch_sgd(LRS, momentum=0.9, weight_decay=0.05, nesterov=nesterov),
        rtol=1e-6)
    np.testing.assert_allclose(
        plain.numpy(), torch_sgd(LRS, momentum=0.9, weight_decay=0.0, nesterov=nesterov,
                                 mult=0.5), rtol=1e-6)


def test_adam_and_adamw_match_torch_formula():
    p = _vec_param(START)
    run_steps(create_optimizer(args(opt="adam", weight_decay=0.05), [p]), [p])
    np.testing.assert_allclose(p.numpy(), torch_adam(LRS, weight_decay=0.05, decoupled=False),
                               rtol=1e-5)
    # timm divides AdamW's decay by the initial lr: per step it decays by wd * lr_t / lr_0
    p = _vec_param(START)
    run_steps(create_optimizer(args(opt="adamw", lr=LRS[0], weight_decay=0.05), [p]), [p])
    np.testing.assert_allclose(
        p.numpy(), torch_adam(LRS, weight_decay=0.05 / LRS[0], decoupled=True), rtol=1e-5)


def test_weight_decay_groups_exclude_bias_and_bn():
    net = build_net()
    groups = add_weight_decay(net, 0.01)
    names = {id(p): n for n, p in net.named_parameters()}
    no_decay = sorted(names[id(p)] for p in groups[0]["params"])
    decay = sorted(names[id(p)] for p in groups[1]["params"])
    assert (groups[0]["weight_decay"], groups[1]["weight_decay"]) == (0.0, 0.01)
    assert no_decay == ["bn.bias", "bn.weight", "fc.bias"]
    assert decay == ["conv.weight", "fc.weight"]
    # BN running statistics are Paddle parameters without gradient: in no group
    assert "bn._mean" in names.values()


def test_model_decay_filter_in_effect():
    """Zero gradients isolate the decay: after one step (lr 1, decay 0.1, no momentum history)
    decayed weights are scaled by 0.9, biases and BN weights stay as they were."""
    net = build_net()
    net.eval()
    opt = create_optimizer(args(opt="momentum", lr=1.0, weight_decay=0.1), net)
    before = {n: p.numpy().copy() for n, p in net.named_parameters()}
    (net(paddle.ones([1, 2, 2, 2])) * 0.0).sum().backward()  # grads exist, all zero
    opt.step()
    after = {n: p.numpy() for n, p in net.named_parameters()}
    np.testing.assert_allclose(after["fc.weight"], before["fc.weight"] * 0.9, rtol=1e-6)
    np.testing.assert_allclose(after["conv.weight"], before["conv.weight"] * 0.9, rtol=1e-6)
    for name in ("fc.bias", "bn.weight", "bn.bias"):
        np.testing.assert_array_equal(after[name], before[name])


def test_yacs_config_and_args_give_the_same_optimizer():
    cfg = CfgNode({"OPT": "rmsproptf", "LR": 0.064, "WEIGHT_DECAY": 1e-5, "MOMENTUM": 0.9,
                   "OPT_EPS": 1e-3})
    from_cfg = create_optimizer(cfg, build_net())
    from_args = create_optimizer(args(opt="RMSpropTF", lr=0.064, weight_decay=1e-5), build_net())
    for opt in (from_cfg, from_args):
        assert isinstance(opt, RMSpropTF)
        assert (opt.get_lr(), opt._alpha, opt._epsilon, opt._momentum) == (0.064, 0.9, 1e-3, 0.9)
        assert [g["rmsprop_weight_decay"] for g in opt._param_groups] == [0.0, 1e-5]
    assert sorted(from_cfg.state_dict()) == sorted(from_args.state_dict())


def test_option_errors_are_clear():
    with pytest.raises(ValueError, match="unknown optimizer OPT='lamb'"):
        create_optimizer(args(opt="lamb"), build_net())
    with pytest.raises(ValueError, match=r"'lr' \(config key 'LR'\) is missing"):
        create_optimizer({"OPT": "sgd"}, build_net())
    with pytest.raises(ValueError, match="multiplier"):
        create_optimizer(args(), [{"params": build_net().parameters(), "lr": 0.01}])


def test_builtin_optimizers_leave_params_without_grad_untouched():
    for name in ("sgd", "adam", "adamw", "rmsprop"):
        with unique_name.guard():
            used, unused = paddle.nn.Linear(2, 2), paddle.nn.Linear(2, 2)
        params = list(used.parameters()) + list(unused.parameters())
        opt = create_optimizer(args(opt=name), params)
        before_values = [p.numpy().copy() for p in unused.parameters()]
        state_before = {k: v.numpy().copy() for k, v in opt.state_dict().items()}
        for _ in range(2):
            used(paddle.ones([1, 2])).sum().backward()
            opt.step()
            opt.clear_grad(set_to_zero=False)
        state_after = opt.state_dict()
        unused_names = [p.name for p in unused.parameters()]
        unused_keys = [k for k in state_after if any(k.startswith(n + "_") for n in unused_names)]
        assert unused_keys, name
        for key in unused_keys:
            np.testing.assert_array_equal(state_after[key].numpy(), state_before[key], name)
        for p, v in zip(unused.parameters(), before_values):
            np.testing.assert_array_equal(p.numpy(), v, name)


def test_resume_then_step_a_parameter_never_stepped_before():
    """Paddle alone raises 'Optimizer set error ... should in state dict' here: the state was
    saved before the second block was ever sampled, then the resumed run samples it."""
    def build():
        with unique_name.guard():
            return paddle.nn.Linear(2, 2), paddle.nn.Linear(2, 2)

    a, b = build()
    opt = create_optimizer(args(opt="sgd"), list(a.parameters()) + list(b.parameters()))
    a(paddle.ones([1, 2])).sum().backward()
    opt.step()
    saved = {k: v.clone() for k, v in opt.state_dict().items()}

    a2, b2 = build()
    opt2 = create_optimizer(args(opt="sgd"), list(a2.parameters()) + list(b2.parameters()))
    load_optimizer_state(opt2, saved)
    b2(paddle.ones([1, 2])).sum().backward()
    opt2.step()
    assert sorted(opt2.state_dict()) == sorted(saved)


def test_load_optimizer_state_names_the_mismatch():
    opt = create_optimizer(args(opt="sgd"), build_net())
    state = {k: v.clone() for k, v in opt.state_dict().items()}
    key = sorted(state)[0]
    state["not_a_param_velocity_0"] = state.pop(key)
    with pytest.raises(ValueError, match="1 missing .*1 unexpected.*unique_name.guard"):
        load_optimizer_state(opt, state)


def test_a_model_with_its_own_layers_attribute_is_not_taken_for_a_wrapper():
    # the DARTS networks keep their cell count as ``_layers``, paddle.DataParallel's name for the
    # wrapped model
    model = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.BatchNorm1D(3))
    model._layers = 20
    optimizer = create_optimizer(argparse.Namespace(opt="momentum", lr=0.1, weight_decay=1e-4), model)
    params = [p for group in optimizer._param_groups for p in group["params"]]
    assert len(params) == 4
