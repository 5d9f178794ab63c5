"""ModelEma: arithmetic on parameters and BN buffers, isolation, resume, naming."""
import numpy as np
import paddle
import pytest
from paddle.utils import unique_name

from pimm.optim import create_optimizer
from pimm.utils import ModelEma


class LinearBn(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(3, 2)
        self.bn = paddle.nn.BatchNorm1D(2)

    def forward(self, x):
        return self.bn(self.fc(x))


def build():
    with unique_name.guard():
        return LinearBn()


def numpy_state(layer):
    return {k: v.numpy().astype(np.float64) for k, v in layer.state_dict().items()}


def test_ema_after_n_updates_matches_hand_computation():
    paddle.seed(0)
    model = build()
    decay = 0.9
    ema = ModelEma(model, decay=decay)
    expected = numpy_state(model)
    rng = np.random.default_rng(0)
    for _ in range(4):
        # new values for every parameter and buffer, including BN running statistics
        for key, value in model.state_dict().items():
            value.set_value(rng.standard_normal(value.shape).astype("float32"))
        ema.update(model)
        for key, value in numpy_state(model).items():
            expected[key] = decay * expected[key] + (1 - decay) * value
    got = numpy_state(ema.ema)
    assert set(got) == {"fc.weight", "fc.bias", "bn.weight", "bn.bias", "bn._mean",
                        "bn._variance"}
    for key in expected:
        np.testing.assert_allclose(got[key], expected[key], rtol=1e-5, atol=1e-6, err_msg=key)


def test_ema_copy_is_independent_eval_and_without_grad():
    model = build()
    ema = ModelEma(model, decay=0.5)
    assert not ema.ema.training
    assert all(p.stop_gradient for p in ema.ema.parameters())
    before = ema.ema.fc.weight.numpy().copy()
    with paddle.no_grad():
        model.fc.weight.set_value(model.fc.weight + 1.0)
    np.testing.assert_array_equal(ema.ema.fc.weight.numpy(), before)
    assert ema.ema.fc.weight.name != model.fc.weight.name


def test_resume_from_checkpoint_dict_and_file(tmp_path):
    model = build()
    source = ModelEma(model, decay=0.0)
    with paddle.no_grad():
        model.fc.weight.set_value(paddle.full_like(model.fc.weight, 3.0))
    source.update(model)  # decay 0: the average becomes the model
    path = str(tmp_path / "ckpt.pdparams")
    paddle.save({"state_dict_ema": source.state_dict()}, path)
    for resume in (path, paddle.load(path)):
        fresh = ModelEma(build(), resume=resume)
        np.testing.assert_array_equal(fresh.ema.fc.weight.numpy(), 3.0)


def test_resume_without_ema_keeps_model_weights_and_mismatch_raises(tmp_path, caplog):
    model = build()
    ema = ModelEma(model, resume={"state_dict": model.state_dict()})
    np.testing.assert_array_equal(ema.ema.fc.weight.numpy(), model.fc.weight.numpy())
    assert "no state_dict_ema" in caplog.text
    bad = dict(model.state_dict())
    bad["fc.weight"] = paddle.zeros([5, 5])
    with pytest.raises(ValueError, match=r"shape mismatch .*fc\.weight"):
        ModelEma(model, resume={"state_dict_ema": bad})


def test_ema_does_not_shift_names_or_optimizer_keys():
    """A run builds model, optimizer and EMA in some order; its resumed process may use another.
    The optimizer state must be keyed the same either way."""
    def run(make_ema_first):
        with unique_name.guard():
            model = LinearBn()
            if make_ema_first:
                ModelEma(model)
            later = paddle.nn.Linear(2, 2)  # anything built afterwards in the same guard
        opt = create_optimizer({"OPT": "rmsproptf", "LR": 0.1}, model)
        return sorted(opt.state_dict()), [p.name for p in later.parameters()]

    assert run(True) == run(False)
