"""The allow-list .pdparams reader: it reads what paddle.save writes as paddle.load does, refuses
anything that would run code, and files that claim more data than they hold."""
from __future__ import annotations

import logging
import os
import random
from collections import OrderedDict

import numpy as np
import paddle
import pytest
from paddle.utils import unique_name

from pimm.models import (PaddleCheckpointError, UnsafeCheckpointError, load_checkpoint,
                         load_state_dict, read_checkpoint_file,
                         read_paddle_checkpoint, resume_checkpoint)
from pimm.optim import create_optimizer
from pimm.utils import CheckpointSaver, ModelEma, get_rng_state, set_rng_state
from tests.pimm.models.paddle_files import (assert_same_as_paddle_load, forged_array,
                                            huge_bytes_pickle, payloads, saved_tensor,
                                            write_pickle)


def _net():
    with unique_name.guard():
        return paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4),
                                    paddle.nn.Flatten(), paddle.nn.Linear(4 * 6 * 6, 2))


def _trained_state(opt_name):
    model = _net()
    optimizer = create_optimizer({"OPT": opt_name, "LR": 0.1, "WEIGHT_DECAY": 1e-4}, model)
    model(paddle.ones([2, 3, 8, 8])).sum().backward()
    optimizer.step()
    return model, optimizer


def _everything():
    """One of each kind of value a checkpoint of this project holds."""
    model, sgd = _trained_state("sgd")
    _, adamw = _trained_state("adamw")
    scheduler = paddle.optimizer.lr.CosineAnnealingDecay(0.1, 10)
    adam = paddle.optimizer.Adam(learning_rate=scheduler, parameters=_net().parameters())
    return {
        "state_dict": model.state_dict(), "optimizer": sgd.state_dict(),
        "adamw": adamw.state_dict(), "adam_with_lr_scheduler": adam.state_dict(),
        "epoch": 3, "version": 2, "metric": np.float32(71.25), "count": np.int64(-4),
        "flag": np.bool_(True), "dtype": np.dtype(">f4"),
        "args": {"NET": {"SELECTION": 14, "INPUT_ARCH": [[0], [3, 3]]}, "LR": 0.1, "NAME": None},
        "rng": get_rng_state(),
        "path_sampler": np.random.default_rng(5).bit_generator.state,
        "board": {"entries": [{"arch": [[0], [2]], "prec1": 75.0,
                               "images": np.random.default_rng(0).normal(size=(2, 3, 4, 4)),
                               "features": np.arange(6, dtype=np.float32).reshape(2, 3)}]},
        "arrays": [np.zeros((0, 3), np.float16), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
                   np.array(5, np.uint8), np.arange(4).astype(">i4"), np.ones(2, np.complex64),
                   np.array([True, False])],
        "nested": OrderedDict(a=(1, "x", None), b=[1.5, float("nan")]),
    }


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_reads_what_paddle_save_writes_as_paddle_load_does(tmp_path, protocol):
    checkpoint = str(tmp_path / "everything.pdparams")
    paddle.save(_everything(), checkpoint, protocol=protocol)
    assert_same_as_paddle_load(checkpoint)
    # a bare state dict: paddle.save stores arrays plus a name table, paddle.load makes Tensors
    bare = str(tmp_path / "bare.pdparams")
    paddle.save(_net().state_dict(), bare, protocol=protocol)
    assert_same_as_paddle_load(bare)
    loaded = read_paddle_checkpoint(bare)
    assert all(isinstance(value, paddle.Tensor) for value in loaded.values())


def test_rng_states_read_back_repeat_the_draws(tmp_path):
    path = str(tmp_path / "rng.pdparams")
    paddle.seed(3)
    paddle.save({"rng": get_rng_state()}, path)
    expected = (random.random(), np.random.rand(), paddle.rand([4]).numpy().tolist())
    paddle.seed(99)
    set_rng_state(read_paddle_checkpoint(path)["rng"])
    assert (random.random(), np.random.rand(), paddle.rand([4]).numpy().tolist()) == expected


# ---------------------------------------------------------------------------------------------
# Refusing code


def _refusal(path, global_name):
    return (f"refused to load {path}: its pickle references the Python global '{global_name}', "
            "which a checkpoint never needs; only load checkpoints you trust")


@pytest.mark.parametrize("global_name", ["posix.system", "builtins.eval",
                                         "subprocess.check_call", "builtins.exec"])
@pytest.mark.parametrize("where", ["top level", "inside the state dict"])
def test_payloads_are_refused_and_never_run(tmp_path, global_name, where):
    marker = str(tmp_path / "pwned")
    payload = payloads(marker)[global_name]
    state_dict = _net().state_dict()
    checkpoint = {"state_dict": state_dict, "epoch": 1}
    if where == "top level":
        checkpoint["note"] = payload
    else:  # after genuine tensors, as one more entry of the state dict
        state_dict["1._variance_note"] = payload
    path = str(tmp_path / "evil.pdparams")
    paddle.save(checkpoint, path)

    with pytest.raises(UnsafeCheckpointError) as caught:
        read_paddle_checkpoint(path)
    assert str(caught.value) == _refusal(path, global_name)
    assert not os.path.exists(marker)


def test_the_payload_files_are_live(tmp_path):
    """Control for the test above: paddle.load runs the same file's payload."""
    marker = str(tmp_path / "pwned")
    path = str(tmp_path / "evil.pdparams")
    paddle.save({"state_dict": _net().state_dict(), "note": payloads(marker)["posix.system"]}, path)
    paddle.load(path)
    assert os.path.exists(marker)


def test_every_entry_point_refuses_and_runs_nothing(tmp_path, caplog):
    marker = str(tmp_path / "pwned")
    model, optimizer = _trained_state("sgd")
    path = str(tmp_path / "evil.pdparams")
    paddle.save({"state_dict": model.state_dict(), "state_dict_ema": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "epoch": 3, "version": 2, "metric": 9.0,
                 "rng": payloads(marker)["builtins.eval"]}, path)
    readers = {
        "read_checkpoint_file": lambda: read_checkpoint_file(path),
        "load_checkpoint": lambda: load_checkpoint(model, path),
        "load_state_dict": lambda: load_state_dict(path, use_ema=True),
        "resume_checkpoint": lambda: resume_checkpoint(model, path, optimizer=optimizer),
        "ModelEma.resume": lambda: ModelEma(model, resume=path),
    }
    for name, read in readers.items():
        with pytest.raises(UnsafeCheckpointError, match="'builtins.eval'"):
            read()
    # a fresh run whose folder holds a planted checkpoint: the saver ranks old files, skips it
    folder = tmp_path / "run"
    folder.mkdir()
    os.replace(path, folder / "checkpoint-3.pdparams")
    with caplog.at_level(logging.WARNING):
        saver = CheckpointSaver(model, optimizer, checkpoint_dir=str(folder))
    assert saver.checkpoint_files == []
    assert "refused to load" in caplog.text and "checkpoint-3.pdparams" in caplog.text
    assert not os.path.exists(marker)


# ---------------------------------------------------------------------------------------------
# Sizes the file cannot back, and broken files


def test_array_claiming_more_than_its_data_is_refused(tmp_path):
    path = str(tmp_path / "forged.pdparams")
    write_pickle(path, {"w": saved_tensor("w", forged_array((1 << 20, 1 << 20), "f4", b"\0" * 16))})
    with pytest.raises(PaddleCheckpointError,
                       match=r"shape \[1048576, 1048576\] and dtype float32 needs 4398046511104 "
                             r"bytes but its record holds 16"):
        read_paddle_checkpoint(path)


def test_byte_string_claiming_a_terabyte_is_refused_before_allocation(tmp_path):
    path = tmp_path / "huge.pdparams"
    path.write_bytes(huge_bytes_pickle(1 << 40))
    with pytest.raises(PaddleCheckpointError, match=r"BINBYTES8 record claims 1.0 TiB but the "
                                                    r"file has only 17 bytes left"):
        read_paddle_checkpoint(str(path))


def test_one_array_behind_many_tensors_is_refused(tmp_path):
    # 400 tensors sharing one 64 KiB array through the pickle memo: 25 MiB from a 70 KiB file
    array = np.zeros(1 << 14, np.float32)
    path = str(tmp_path / "aliased.pdparams")
    write_pickle(path, {f"w{i}": saved_tensor(f"w{i}", array) for i in range(400)})
    assert os.path.getsize(path) < 80_000
    with pytest.raises(PaddleCheckpointError, match=r"tensor 'w\d+' would take 64.0 KiB, more than "
                                                    r"a file of .* can hold"):
        read_paddle_checkpoint(path)


def test_object_arrays_are_refused(tmp_path):
    path = str(tmp_path / "objects.pdparams")
    write_pickle(path, {"w": np.array([1, "a"], dtype=object)})
    with pytest.raises(PaddleCheckpointError, match="unsupported array dtype 'O8'"):
        read_paddle_checkpoint(path)


def test_truncated_files_name_the_file(tmp_path):
    model, optimizer = _trained_state("momentum")
    full = str(tmp_path / "full.pdparams")
    paddle.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": 1, "board": {"images": np.ones((2, 3), np.float32)}}, full)
    with open(full, "rb") as file:
        data = file.read()
    cut = str(tmp_path / "cut.pdparams")
    for end in range(0, len(data) - 1, max(1, len(data) // 60)):
        with open(cut, "wb") as file:
            file.write(data[:end])
        with pytest.raises(PaddleCheckpointError) as caught:
            read_paddle_checkpoint(cut)
        assert f"cannot read checkpoint {cut}: it is truncated or corrupt" in str(caught.value) \
            or f"cannot read {cut}: it is not a checkpoint written by paddle.save" in str(caught.value)


def test_other_files_are_not_paddle_checkpoints(tmp_path):
    text = tmp_path / "notes.pdparams"
    text.write_text("not a checkpoint\n")
    with pytest.raises(PaddleCheckpointError, match="not a checkpoint written by paddle.save"):
        read_paddle_checkpoint(str(text))
    garbage = tmp_path / "garbage.pdparams"
    garbage.write_bytes(b"\x80\x04" + np.random.default_rng(0).bytes(4096))
    with pytest.raises(PaddleCheckpointError, match="truncated or corrupt"):
        read_paddle_checkpoint(str(garbage))
    with pytest.raises(FileNotFoundError, match="missing.pdparams"):
        read_paddle_checkpoint(str(tmp_path / "missing.pdparams"))
