import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import paddle
import pytest

from pimm.layers import HardSigmoid, HardSwish
from pimm.models import (CheckpointMismatchError, create_model, decode_arch_def, load_checkpoint,
                         load_model_weights, load_state_dict, resume_checkpoint)
from pimm.models.mobilenetv3 import _SMALL_ARCH

X = np.random.RandomState(0).randn(2, 3, 32, 32).astype("float32")


def _model(num_classes=5, seed=0):
    paddle.seed(seed)
    model = create_model("mobilenetv3_small_100", num_classes=num_classes)
    model.eval()
    return model


def _logits(model):
    return model(paddle.to_tensor(X)).numpy()


def _train_step(model, optimizer):
    model.train()
    loss = (model(paddle.to_tensor(X)) ** 2).mean()
    loss.backward()
    optimizer.step()
    optimizer.clear_grad()
    model.eval()


def test_round_trip_state_dict_and_ema(tmp_path):
    source, ema = _model(seed=1), _model(seed=2)
    path = str(tmp_path / "ckpt.pdparams")
    paddle.save({"state_dict": source.state_dict(), "state_dict_ema": ema.state_dict(), "epoch": 3}, path)
    target = _model(seed=3)
    assert load_checkpoint(target, path) == ([], [])
    np.testing.assert_allclose(_logits(target), _logits(source), rtol=1e-6, atol=1e-6)
    load_checkpoint(target, path, use_ema=True)
    np.testing.assert_allclose(_logits(target), _logits(ema), rtol=1e-6, atol=1e-6)


def test_bare_state_dict_with_wrapper_prefixes(tmp_path):
    source = _model(seed=1)
    for prefix in ("module.", "_layers."):
        path = str(tmp_path / f"bare{prefix}pdparams")
        paddle.save({prefix + k: v for k, v in source.state_dict().items()}, path)
        assert list(load_state_dict(path))[0] == "conv_stem.weight"
        target = _model(seed=4)
        load_checkpoint(target, path)
        np.testing.assert_allclose(_logits(target), _logits(source), rtol=1e-6, atol=1e-6)


def test_use_ema_falls_back_when_absent(tmp_path):
    source = _model(seed=1)
    path = str(tmp_path / "no_ema.pdparams")
    paddle.save({"state_dict": source.state_dict()}, path)
    target = _model(seed=5)
    load_checkpoint(target, path, use_ema=True)
    np.testing.assert_allclose(_logits(target), _logits(source), rtol=1e-6, atol=1e-6)


def test_strict_mismatch_lists_everything(tmp_path):
    state = _model(num_classes=5).state_dict()
    state["extra.weight"] = paddle.zeros([3])
    del state["conv_head.bias"]
    path = str(tmp_path / "other.pdparams")
    paddle.save({"state_dict": state}, path)
    target = _model(num_classes=7)
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(target, path)
    message = str(info.value)
    assert "missing keys (1): conv_head.bias" in message
    assert "unexpected keys (1): extra.weight" in message
    assert "shape mismatch classifier.weight: checkpoint [1024, 5], model [1024, 7]" in message
    assert "shape mismatch classifier.bias: checkpoint [5], model [7]" in message
    assert info.value.first_problem == "missing keys (1): conv_head.bias"
    # a one-line error names a few of many missing keys, not all of them
    with pytest.raises(CheckpointMismatchError) as info:
        load_model_weights(target, {"other.weight": paddle.zeros([3])}, source="other")
    first = info.value.first_problem
    assert first.startswith("missing keys (") and first.endswith(", ...") and first.count(",") == 5
    # non-strict loads what fits and leaves the rest alone
    before = target.classifier.weight.numpy()
    missing, unexpected = load_checkpoint(target, path, strict=False)
    assert missing == ["conv_head.bias"] and unexpected == ["extra.weight"]
    np.testing.assert_array_equal(target.classifier.weight.numpy(), before)
    np.testing.assert_array_equal(target.conv_stem.weight.numpy(), state["conv_stem.weight"].numpy())


def test_file_errors(tmp_path):
    model = _model()
    with pytest.raises(FileNotFoundError, match="No checkpoint file at '.*missing.pdparams'"):
        load_checkpoint(model, str(tmp_path / "missing.pdparams"))
    legacy = tmp_path / "legacy.pth.tar"
    legacy.write_bytes(b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b".rest")
    # PyTorch files go to the torch reader (tests/pimm/models/test_checkpoint_torch_files.py)
    with pytest.raises(ValueError, match="Cannot read PyTorch checkpoint .*truncated or corrupt"):
        load_checkpoint(model, str(legacy))
    with zipfile.ZipFile(tmp_path / "new.pth", "w") as archive:
        archive.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="Cannot read PyTorch checkpoint .*truncated or corrupt"):
        load_checkpoint(model, str(tmp_path / "new.pth"))
    corrupt = tmp_path / "corrupt.pdparams"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="corrupt.pdparams: it is not a checkpoint written by paddle.save"):
        load_checkpoint(model, str(corrupt))
    paddle.save({"epoch": 1}, str(tmp_path / "no_weights.pdparams"))
    with pytest.raises(ValueError, match="holds no model weights"):
        load_checkpoint(model, str(tmp_path / "no_weights.pdparams"))


def _training_state(model):
    optimizer = paddle.optimizer.Momentum(learning_rate=paddle.optimizer.lr.StepDecay(0.1, step_size=1),
                                          momentum=0.9, parameters=model.parameters())
    return optimizer, optimizer._learning_rate


def test_resume_restores_optimizer_scheduler_ema_and_extra(tmp_path):
    model, ema = _model(seed=1), _model(seed=2)
    optimizer, scheduler = _training_state(model)
    _train_step(model, optimizer)
    scheduler.step()
    path = str(tmp_path / "last.pdparams")
    paddle.save({"state_dict": model.state_dict(), "state_dict_ema": ema.state_dict(),
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "epoch": 4, "version": 2, "metric": 61.5, "arch": "mobilenetv3_small_100",
                 "board": [{"prec1": 50.0}]}, path)

    new_model, new_ema = _model(seed=7), _model(seed=8)
    new_optimizer, new_scheduler = _training_state(new_model)
    state = resume_checkpoint(new_model, path, new_optimizer, new_scheduler, ema_model=new_ema)
    assert state.start_epoch == 5 and state.metric == 61.5
    assert state.extra == {"arch": "mobilenetv3_small_100", "board": [{"prec1": 50.0}]}
    assert new_scheduler.last_epoch == 1 and new_scheduler() == pytest.approx(0.01)
    np.testing.assert_allclose(_logits(new_model), _logits(model), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(_logits(new_ema), _logits(ema), rtol=1e-6, atol=1e-6)
    # identical next step from identical weights + momentum
    _train_step(model, optimizer)
    _train_step(new_model, new_optimizer)
    np.testing.assert_allclose(new_model.conv_stem.weight.numpy(), model.conv_stem.weight.numpy(), rtol=1e-6)
    # resuming into an optimizer that already has accumulators overwrites them by parameter
    saved_velocity = {k.rpartition("_")[0]: v.numpy() for k, v in paddle.load(path)["optimizer"].items()
                      if "velocity" in k}
    resume_checkpoint(new_model, path, new_optimizer)
    current = {k.rpartition("_")[0]: v.numpy() for k, v in new_optimizer.state_dict().items() if "velocity" in k}
    assert current.keys() == saved_velocity.keys()
    assert all(np.array_equal(current[k], v) for k, v in saved_velocity.items())

    paddle.save({"state_dict": model.state_dict(), "epoch": 4}, path)  # version 1: resume at epoch
    assert resume_checkpoint(new_model, path).start_epoch == 4
    with pytest.raises(ValueError, match="no 'optimizer' entry"):
        resume_checkpoint(new_model, path, optimizer=new_optimizer)
    paddle.save(model.state_dict(), path)
    assert resume_checkpoint(new_model, path).start_epoch is None
    with pytest.raises(ValueError, match="bare state dict"):
        resume_checkpoint(new_model, path, optimizer=new_optimizer)


def test_resume_detects_optimizer_state_of_other_parameter_names(tmp_path):
    model = _model()
    optimizer, _ = _training_state(model)
    _train_step(model, optimizer)
    path = str(tmp_path / "ckpt.pdparams")
    paddle.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 0}, path)
    paddle.nn.Conv2D(1, 1, 1)  # advance the global name counters
    unguarded = type(model)(**_small_kwargs())  # built without unique_name.guard: other names
    assert unguarded.conv_stem.weight.name != model.conv_stem.weight.name
    with pytest.raises(CheckpointMismatchError, match="unique_name.guard"):
        resume_checkpoint(unguarded, path, _training_state(unguarded)[0])


def _small_kwargs():
    return dict(block_args=decode_arch_def(_SMALL_ARCH), num_classes=5, num_features=1024,
                act_layer=HardSwish, se_kwargs=dict(act_layer=paddle.nn.ReLU, gate_layer=HardSigmoid))


@pytest.mark.e2e  # resumes in a fresh Python process
def test_resume_in_a_new_process(tmp_path):
    """Optimizer state is keyed by generated parameter names: they must be the same in a new process."""
    model = _model()
    optimizer, _ = _training_state(model)
    _train_step(model, optimizer)
    path = tmp_path / "ckpt.pdparams"
    paddle.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": 0, "version": 2}, str(path))
    velocity = {k: v.numpy() for k, v in optimizer.state_dict().items() if "velocity" in k}
    np.save(tmp_path / "velocity.npy", velocity)
    code = textwrap.dedent(f"""
        import numpy as np, paddle
        from pimm.models import create_model, resume_checkpoint
        paddle.nn.Linear(2, 2)  # shift the global name counters on purpose
        model = create_model("mobilenetv3_small_100", num_classes=5)
        opt = paddle.optimizer.Momentum(0.1, momentum=0.9, parameters=model.parameters())
        assert resume_checkpoint(model, {str(path)!r}, opt).start_epoch == 1
        # accumulator names end in a per-process counter: compare by "<param name>_velocity"
        strip = lambda name: name.rpartition("_")[0]
        saved = {{strip(k): v for k, v in np.load({str(tmp_path / "velocity.npy")!r}, allow_pickle=True).item().items()}}
        state = {{strip(k): v.numpy() for k, v in opt.state_dict().items() if "velocity" in k}}
        assert set(saved) == set(state), "parameter names differ between processes"
        assert all(np.array_equal(state[k], v) for k, v in saved.items())
        print("ok", len(saved))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "ok" and int(result.stdout.split()[1]) > 100
