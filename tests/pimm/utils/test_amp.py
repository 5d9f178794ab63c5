"""pimm.utils.amp: the AMP settings, their device check, and float32 (O0) passing through.
The mixed levels run on GPUs only; tools/gpu_check.py exercises them there."""
import numpy as np
import paddle
import pytest

from pimm.utils.amp import Amp, check_amp, parse_amp_level


@pytest.mark.parametrize("value, level", [(False, "O0"), (True, "O1"), ("", "O0"), ("o1", "O1"),
                                          ("O2", "O2"), ("False", "O0"), (None, "O0")])
def test_levels_read_the_references_booleans_and_the_level_names(value, level):
    assert parse_amp_level(value) == level


def test_bad_levels_and_devices_are_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"AMP must be one of \('O0', 'O1', 'O2'\)"):
        parse_amp_level("O3")
    with pytest.raises(ValueError, match="AMP O1 needs a GPU.*Set AMP False"):
        check_amp("O1", "float16", "cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        check_amp("O1", "float8", "gpu:0")
    check_amp("O0", "float16", "cpu")
    check_amp("O2", "bfloat16", "gpu:0")


def _step(model, optimizer, amp, x, y):
    with amp.autocast():
        loss = paddle.nn.functional.cross_entropy(model(x), y)
    optimizer.clear_grad()
    amp.backward(loss)
    amp.step(optimizer)
    return float(loss)


def test_float32_amp_is_the_plain_step():
    rng = np.random.default_rng(0)
    x = paddle.to_tensor(rng.standard_normal((8, 5), dtype=np.float32))
    y = paddle.to_tensor(rng.integers(0, 3, 8))
    results = []
    for use_amp in (False, True):
        paddle.seed(0)
        model = paddle.nn.Linear(5, 3)
        optimizer = paddle.optimizer.Momentum(0.1, parameters=model.parameters())
        amp = Amp()
        model, optimizer = amp.decorate(model, optimizer)  # O0: the same objects
        losses = []
        for _ in range(3):
            if use_amp:
                losses.append(_step(model, optimizer, amp, x, y))
            else:
                loss = paddle.nn.functional.cross_entropy(model(x), y)
                optimizer.clear_grad()
                loss.backward()
                optimizer.step()
                losses.append(float(loss))
        results.append((losses, model.weight.numpy()))
    assert results[0][0] == results[1][0] and results[0][0][2] < results[0][0][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert Amp().state_dict() == {} and not Amp().load_state_dict({"scale": 2.0})
    assert not Amp().enabled and repr(Amp()) == "Amp(O0: float32)"
    assert Amp("O1", "bfloat16").scaler is None  # bfloat16 needs no loss scaling


def test_a_scaler_paddle_disabled_off_gpus_restores_nothing_but_checks_the_state():
    amp = Amp("O1", "float16")  # a scaler; on CPU Paddle disables it
    if amp.scaler.is_enable():
        pytest.skip("a GPU: the scaler is enabled (tools/gpu_check.py checks its resume)")
    state = {"scale": 4096.0, "incr_ratio": 2.0, "decr_ratio": 0.5, "incr_every_n_steps": 1000,
             "decr_every_n_nan_or_inf": 1, "incr_count": 37, "decr_count": 0,
             "use_dynamic_loss_scaling": True}
    assert amp.state_dict() == {} and not amp.load_state_dict(state)
    with pytest.raises(ValueError, match="expected the keys"):
        amp.load_state_dict({"scale": 4096.0})
