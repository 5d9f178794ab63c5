"""Schedulers against hand-computed rates, stepping modes, noise, plateau logic and state."""
import argparse
import math

import numpy as np
import paddle
import pytest
from yacs.config import CfgNode

from pimm.scheduler import (CosineLRScheduler, LinearDecayLRScheduler, PlateauLRScheduler,
                            StepLRScheduler, create_scheduler)


def make_optimizer(lr=0.064, multiplier=None):
    w = paddle.create_parameter([2], "float32")
    groups = [{"params": [w]}]
    if multiplier is not None:
        groups = [{"params": [w], "learning_rate": multiplier}]
    return paddle.optimizer.Momentum(learning_rate=lr, parameters=groups)


def cream_cfg(**overrides):
    # the retrain recipe of experiments/configs/retrain/14.yaml
    cfg = dict(SCHED="step", EPOCHS=500, LR=0.064, WARMUP_LR=1e-6, WARMUP_EPOCHS=3,
               DECAY_EPOCHS=2.4, DECAY_RATE=0.973, MIN_LR=1e-5, COOLDOWN_EPOCHS=10,
               PATIENCE_EPOCHS=10, LR_NOISE=None, LR_NOISE_PCT=0.67, LR_NOISE_STD=1.0, SEED=42,
               EVAL_METRICS="prec1")
    cfg.update(overrides)
    return CfgNode(cfg)


def test_step_with_warmup_and_fractional_decay_matches_hand_values():
    opt = make_optimizer()
    sched, num_epochs = create_scheduler(cream_cfg(), opt)
    assert isinstance(sched, StepLRScheduler) and num_epochs == 500
    assert opt.get_lr() == pytest.approx(1e-6)  # warmup starts at construction
    step = (0.064 - 1e-6) / 3
    hand = {
        0: 1e-6, 1: 1e-6 + step, 2: 1e-6 + 2 * step,
        3: 0.064 * 0.973 ** 1,   # 3 // 2.4 = 1: the decay clock is not shifted by the warmup
        4: 0.064 * 0.973 ** 1,
        5: 0.064 * 0.973 ** 2,   # 5 // 2.4 = 2
        7: 0.064 * 0.973 ** 2,
        8: 0.064 * 0.973 ** 3,
        100: 0.064 * 0.973 ** 41,
    }
    for epoch, expected in hand.items():
        sched.step(epoch)
        assert opt.get_lr() == pytest.approx(expected, rel=1e-12), epoch


def test_group_multiplier_follows_the_schedule():
    opt = make_optimizer(lr=0.1, multiplier=0.25)
    sched = StepLRScheduler(opt, decay_t=1, decay_rate=0.5)
    sched.step(2)
    assert opt.get_lr() == pytest.approx(0.025)
    w = opt._param_groups[0]["params"][0]
    before = w.numpy().copy()
    (w * 1.0).sum().backward()  # gradient 1, fresh momentum: one step moves lr * multiplier
    opt.step()
    np.testing.assert_allclose(before - w.numpy(), 0.025 * 0.25, rtol=1e-5)


def test_cosine_matches_formula_and_epoch_count():
    opt = make_optimizer(lr=0.1)
    sched, num_epochs = create_scheduler(
        argparse.Namespace(sched="cosine", epochs=10, min_lr=1e-3, decay_rate=0.1,
                           warmup_lr=1e-4, warmup_epochs=2, cooldown_epochs=3,
                           lr_noise=None, lr_noise_pct=0.67, lr_noise_std=1.0, seed=0), opt)
    assert isinstance(sched, CosineLRScheduler) and num_epochs == 13
    for t in range(0, 14):
        sched.step(t)
        if t < 2:
            expected = 1e-4 + t * (0.1 - 1e-4) / 2
        elif t < 10:
            expected = 1e-3 + 0.5 * (0.1 - 1e-3) * (1 + math.cos(math.pi * t / 10))
        else:
            expected = 1e-3  # past the single cycle: the floor
        assert opt.get_lr() == pytest.approx(expected, rel=1e-12), t


def test_cosine_restarts_with_t_mul_and_decay():
    opt = make_optimizer(lr=1.0)
    sched = CosineLRScheduler(opt, t_initial=10, t_mul=2.0, lr_min=0.0, decay_rate=0.5)
    # second cycle: starts at t=10, lasts 20, peak 0.5
    sched.step(15)
    assert opt.get_lr() == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 5 / 20)))
    assert sched.get_cycle_length(2) == 30


def test_per_update_stepping():
    opt = make_optimizer(lr=0.1)
    sched = StepLRScheduler(opt, decay_t=100, decay_rate=0.5, warmup_t=10, warmup_lr_init=0.0,
                            t_in_epochs=False)
    sched.step(5)  # epoch steps are ignored by an update-based schedule
    assert opt.get_lr() == 0.0
    sched.step_update(5)
    assert opt.get_lr() == pytest.approx(0.05)
    sched.step_update(250)
    assert opt.get_lr() == pytest.approx(0.1 * 0.25)


def test_cosine_on_updates_is_the_peleenet_reference_schedule():
    # Robert-JunWang/PeleeNet's main.py sets, before update k of E * U (U updates per epoch),
    # lr = 0.5 * LR * (1 + cos(pi * k / (E * U))); the loop calls step_update(k) after update k
    opt = make_optimizer(lr=0.18)
    cfg = cream_cfg(SCHED="cosine", SCHED_ON_UPDATES=True, EPOCHS=3, LR=0.18, WARMUP_EPOCHS=0,
                    MIN_LR=0.0, COOLDOWN_EPOCHS=0)
    sched, num_epochs = create_scheduler(cfg, opt, updates_per_epoch=4)
    assert num_epochs == 3 and not sched.t_in_epochs
    lrs = [opt.get_lr()]
    for update in range(1, 12):
        sched.step_update(update)
        if update % 4 == 0:
            sched.step(update // 4)  # the epoch-end call leaves a per-update schedule alone
        lrs.append(opt.get_lr())
    expected = [0.5 * 0.18 * (1 + math.cos(math.pi * k / 12)) for k in range(12)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)


def test_on_updates_counts_warmup_decay_and_noise_in_updates():
    opt = make_optimizer(lr=0.1)
    sched, _ = create_scheduler(cream_cfg(SCHED="step", SCHED_ON_UPDATES=True, LR=0.1,
                                          WARMUP_EPOCHS=1, WARMUP_LR=0.0, DECAY_EPOCHS=2,
                                          DECAY_RATE=0.5, LR_NOISE=[0.5, 0.6], EPOCHS=10),
                                opt, updates_per_epoch=10)
    assert (sched.warmup_t, sched.decay_t, sched.noise_range_t) == (10, 20, [50, 60])
    sched.step_update(5)
    assert opt.get_lr() == pytest.approx(0.05)
    sched.step_update(45)
    assert opt.get_lr() == pytest.approx(0.1 * 0.5 ** 2)
    with pytest.raises(ValueError, match="updates_per_epoch >= 1"):
        create_scheduler(cream_cfg(SCHED="cosine", SCHED_ON_UPDATES=True), make_optimizer())
    with pytest.raises(ValueError, match="SCHED='plateau'"):
        create_scheduler(cream_cfg(SCHED="plateau", SCHED_ON_UPDATES=True), make_optimizer(),
                         updates_per_epoch=10)


def test_noise_is_deterministic_bounded_and_ranged():
    def lrs(seed):
        opt = make_optimizer(lr=0.1)
        sched = StepLRScheduler(opt, decay_t=1000, noise_range_t=[3, 8], noise_pct=0.2,
                                noise_std=1.0, noise_seed=seed)
        out = []
        for t in range(10):
            sched.step(t)
            out.append(opt.get_lr())
        return np.array(out)

    a, b, c = lrs(1), lrs(1), lrs(2)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a[3:8], c[3:8])
    np.testing.assert_array_equal(a[:3], 0.1)
    np.testing.assert_array_equal(a[8:], 0.1)
    noise = a[3:8] / 0.1 - 1
    assert np.all(np.abs(noise) < 0.2) and np.all(noise != 0)


def test_uniform_noise_is_bounded_and_deterministic():
    def lrs():
        opt = make_optimizer(lr=0.1)
        sched = CosineLRScheduler(opt, t_initial=100, noise_range_t=0, noise_type="uniform",
                                  noise_pct=0.1, noise_seed=5)
        out = []
        for t in range(20):
            sched.step(t)
            out.append(opt.get_lr() / sched.lr_at(t) - 1)
        return np.array(out)

    noise = lrs()
    np.testing.assert_array_equal(noise, lrs())
    assert np.all(np.abs(noise) <= 0.1) and np.unique(noise).size == 20


def test_second_scheduler_starts_from_the_initial_rate():
    opt = make_optimizer(lr=0.1)
    first = StepLRScheduler(opt, decay_t=1, decay_rate=0.5)
    first.step(3)
    assert opt.get_lr() == pytest.approx(0.0125)
    second = StepLRScheduler(opt, decay_t=1, decay_rate=0.1)
    assert second.base_lr == 0.1
    second.step(1)
    assert opt.get_lr() == pytest.approx(0.01)


def test_noise_range_from_config_fractions():
    opt = make_optimizer()
    sched, _ = create_scheduler(cream_cfg(EPOCHS=100, LR_NOISE=[0.4, 0.9]), opt)
    assert sched.noise_range_t == [40.0, 90.0]


def test_plateau_reduces_after_patience_with_cooldown_and_floor():
    opt = make_optimizer(lr=1.0)
    sched = PlateauLRScheduler(opt, decay_rate=0.5, patience_t=1, cooldown_t=1, lr_min=0.2,
                               mode="max")
    metrics = [10, 11, 11, 11, 11, 11, 11, 11, 11, 11]
    seen = []
    for epoch, m in enumerate(metrics, start=1):
        sched.step(epoch, m)
        seen.append(opt.get_lr())
    # bad epochs: 3,4 -> reduce at 4; cooldown epoch 5; bad 6,7 -> reduce at 7; floor at 0.2
    assert seen == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2])


def test_plateau_mode_comes_from_metric_direction():
    opt = make_optimizer()
    sched, _ = create_scheduler(cream_cfg(SCHED="plateau"), opt)
    assert sched.mode == "max"  # prec1: higher is better
    sched, _ = create_scheduler(cream_cfg(SCHED="plateau", EVAL_METRICS="loss"), make_optimizer())
    assert sched.mode == "min"
    sched, _ = create_scheduler(cream_cfg(SCHED="plateau"), make_optimizer(), decreasing=True)
    assert sched.mode == "min"


def test_plateau_warmup_and_missing_metric():
    opt = make_optimizer(lr=0.1)
    sched = PlateauLRScheduler(opt, warmup_t=2, warmup_lr_init=0.0)
    sched.step(1)
    assert opt.get_lr() == pytest.approx(0.05)
    sched.step(2)
    assert opt.get_lr() == pytest.approx(0.1)
    with pytest.raises(ValueError, match="needs the eval metric"):
        sched.step(3)


def test_plateau_state_round_trip_continues_identically():
    def run(metrics, sched):
        out = []
        for epoch, m in metrics:
            sched.step(epoch, m)
            out.append(sched.optimizer.get_lr())
        return out

    history = list(enumerate([5, 6, 6, 6, 6, 7, 7, 7, 7, 7], start=1))
    opt = make_optimizer(lr=1.0)
    ref = PlateauLRScheduler(opt, decay_rate=0.5, patience_t=2, cooldown_t=1)
    full = run(history, ref)
    first = PlateauLRScheduler(make_optimizer(lr=1.0), decay_rate=0.5, patience_t=2, cooldown_t=1)
    run(history[:5], first)
    resumed_opt = make_optimizer(lr=1.0)
    resumed = PlateauLRScheduler(resumed_opt, decay_rate=0.5, patience_t=2, cooldown_t=1)
    resumed.load_state_dict(first.state_dict())
    assert resumed_opt.get_lr() == full[4]  # the reduced rate is restored with the state
    assert run(history[5:], resumed) == full[5:]


def test_step_state_round_trip_and_type_check():
    opt = make_optimizer()
    sched, _ = create_scheduler(cream_cfg(), opt)
    sched.step(6)
    state = sched.state_dict()
    opt2 = make_optimizer()
    sched2, _ = create_scheduler(cream_cfg(), opt2)
    sched2.load_state_dict(state)
    assert opt2.get_lr() == opt.get_lr()
    with pytest.raises(ValueError, match="saved by StepLRScheduler"):
        PlateauLRScheduler(make_optimizer()).load_state_dict(state)


def test_factory_errors():
    with pytest.raises(ValueError, match="unknown scheduler SCHED='sgd'"):
        create_scheduler(cream_cfg(SCHED="sgd"), make_optimizer())
    with pytest.raises(ValueError, match="'epochs'"):
        create_scheduler({"SCHED": "step"}, make_optimizer())
    with pytest.raises(ValueError, match="DECAY_EPOCHS"):
        create_scheduler(cream_cfg(DECAY_EPOCHS=0), make_optimizer())
    paddle_sched = paddle.optimizer.lr.StepDecay(0.1, 10)
    opt = paddle.optimizer.SGD(paddle_sched, parameters=[paddle.create_parameter([1], "float32")])
    with pytest.raises(TypeError, match="float learning_rate"):
        StepLRScheduler(opt, decay_t=1)


def test_linear_decay_reaches_zero_and_never_goes_negative():
    weight = paddle.create_parameter([1], "float32")
    optimizer = paddle.optimizer.Momentum(learning_rate=0.5, parameters=[
        {"params": [weight], "learning_rate": 0.01}])
    scheduler = LinearDecayLRScheduler(optimizer, total_updates=10)
    rates = []
    for t in range(1, 14):
        scheduler.step_update(t)
        rates.append(optimizer.get_lr())
    # the reference's multiplier (LR - t / ITERS) would be 0.5 - 0.6 < 0 at t = 6 for LR 0.5
    np.testing.assert_allclose(rates, [0.5 * max(0.0, 1 - t / 10) for t in range(1, 14)], atol=1e-12)
    state = scheduler.state_dict()
    resumed = LinearDecayLRScheduler(paddle.optimizer.Momentum(learning_rate=0.5, parameters=[weight]), 10)
    resumed.load_state_dict(state)
    assert resumed.optimizer.get_lr() == rates[-1]


def test_linear_schedule_from_the_config_counts_updates_with_warmup():
    # SPOS's retrain: linear to 0 over EPOCHS x updates per epoch, after WARMUP_EPOCHS of warmup
    opt = make_optimizer(lr=0.5)
    sched, num_epochs = create_scheduler(cream_cfg(SCHED="linear", EPOCHS=4, WARMUP_EPOCHS=1, WARMUP_LR=0.1),
                                         opt, updates_per_epoch=5)
    assert isinstance(sched, LinearDecayLRScheduler) and num_epochs == 4
    assert opt.get_lr() == pytest.approx(0.1)
    rates = []
    for t in range(1, 21):
        sched.step_update(t)
        sched.step(t // 5)  # epoch ends do not move a per-update schedule
        rates.append(opt.get_lr())
    expected = [0.1 + t * 0.4 / 5 if t < 5 else 0.5 * (1 - t / 20) for t in range(1, 21)]
    np.testing.assert_allclose(rates, expected, atol=1e-12)
    with pytest.raises(ValueError, match="updates_per_epoch"):
        create_scheduler(cream_cfg(SCHED="linear"), make_optimizer())
