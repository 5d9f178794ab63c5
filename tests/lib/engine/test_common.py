"""lib.engine.common: run folders, config snapshot, loaders and their errors, resume discovery,
seeds."""
import logging
import os
import shutil
import warnings

import numpy as np
import paddle
import pytest

from lib.config import ConfigError, load_config
from lib.engine.child import child_loader_policy, resolve_child
from lib.engine.common import (LoaderPolicy, RunContext, RunError, amp_extra_state, build_loaders,
                               check_data_splits, dataset_subset, find_resume_checkpoint,
                               gradient_clip, open_split, prepare_run, resolve_run_dir, resume_amp,
                               resume_training, seed_epoch, unwrap_model, wrap_model)
from lib.engine.supernet import search_loader_policy
from pimm.data import CIFAR10

PLAIN = LoaderPolicy()


def _cfg(tmp_path, *overrides, data_dir="unused"):
    return load_config(None, ["SAVE_PATH", str(tmp_path / "runs"), "MODEL", "demo",
                              "DATA_DIR", str(data_dir), "WORKERS", "0",
                              "DATASET.NUM_CLASSES", "4", *overrides])


def test_run_dir_is_stable_with_auto_resume_and_numbered_without(tmp_path):
    resumed = _cfg(tmp_path, "AUTO_RESUME", "True")
    fresh = _cfg(tmp_path, "AUTO_RESUME", "False")
    base = str(tmp_path / "runs" / "demo")
    assert resolve_run_dir(fresh) == base  # new folder
    assert resolve_run_dir(fresh) == base  # still empty: reused
    open(os.path.join(base, "train.log"), "w").close()
    assert resolve_run_dir(resumed) == base
    assert resolve_run_dir(fresh) == base + "-1"
    open(os.path.join(base + "-1", "x"), "w").close()
    assert resolve_run_dir(fresh) == base + "-2"
    with pytest.raises(ConfigError, match="MODEL"):
        resolve_run_dir(_cfg(tmp_path, "MODEL", "a/b"))


def test_prepare_run_writes_reloadable_config_log_and_events(tmp_path):
    cfg = _cfg(tmp_path, "AUTO_RESUME", "False", "NET.SELECTION", "43", "LR", "0.5")
    ctx = prepare_run(cfg, "retrain")
    ctx.logger.info("hello from the test")
    ctx.writer.add_scalar("x", 1.0, 0)
    ctx.writer.flush()
    assert (ctx.rank, ctx.world_size, ctx.distributed, ctx.is_primary) == (0, 1, False, True)
    assert ctx.run_dir == str(tmp_path / "runs" / "demo")
    again = load_config(os.path.join(ctx.run_dir, "config.yaml"))
    assert again == cfg and again.NET.SELECTION == 43 and again.LR == 0.5
    with open(os.path.join(ctx.run_dir, "retrain.log")) as f:
        log = f.read()
    assert "hello from the test" in log
    assert "native CPU kernels: " in log  # built, loaded from the cache, or unavailable and why
    events = os.listdir(os.path.join(ctx.run_dir, "runs"))
    assert any(n.startswith("events.out.tfevents") for n in events)
    with pytest.raises(ConfigError, match="mode"):
        prepare_run(cfg, "search")


def _ctx(tmp_path, cfg, mode="retrain"):
    return RunContext(cfg=cfg, mode=mode, run_dir=str(tmp_path), logger=logging.getLogger("t"),
                      writer=None, rank=0, world_size=1, distributed=False)


def test_build_loaders_shapes_batch_sizes_and_labels(tmp_path, demo_data_dir):
    cfg = _cfg(tmp_path, "DATASET.BATCH_SIZE", "8", "DATASET.VAL_BATCH_MUL", "3",
               data_dir=demo_data_dir)
    train, val = build_loaders(cfg, _ctx(tmp_path, cfg), image_size=32, policy=PLAIN)
    assert len(train) == 48 // 8 and len(val) == 1  # eval keeps all 16 images in one 24-batch
    images, labels = next(iter(train))
    assert images.shape == [8, 3, 32, 32] and images.dtype == paddle.float32
    assert labels.dtype == paddle.int64
    images, labels = next(iter(val))
    assert images.shape == [16, 3, 32, 32]
    assert sorted(labels.numpy().tolist()) == sorted([0, 1, 2, 3] * 4)
    # eval is deterministic: two passes give the same tensors
    again, _ = next(iter(val))
    np.testing.assert_array_equal(images.numpy(), again.numpy())
    only_val = build_loaders(cfg, None, image_size=32, policy=PLAIN, train=False)  # no RunContext
    assert only_val[0] is None and len(only_val[1]) == 1


def _transforms(loader):
    return [repr(t) for t in loader.dataset.transform.transforms]


def test_loaders_follow_the_engines_policies(tmp_path, demo_data_dir):
    cfg = _cfg(tmp_path, "DATASET.INTERPOLATION", "bilinear", data_dir=demo_data_dir)
    policy = child_loader_policy(cfg, resolve_child(cfg))
    train, val = build_loaders(cfg, None, 32, policy=policy)  # retrain, test
    assert any(t.startswith("RandAugment(") for t in _transforms(train))
    assert "interpolation=random" in _transforms(train)[0]
    assert _transforms(val)[:2] == ["Resize(size=36, interpolation=bicubic)", "CenterCrop(size=(32, 32))"]
    train, val = build_loaders(cfg, None, 32, policy=search_loader_policy(cfg))  # the search
    assert not any(t.startswith("RandAugment(") for t in _transforms(train))
    assert "interpolation=bilinear" in _transforms(val)[0]


def test_a_named_model_evaluates_with_the_configured_resampling_and_crop(tmp_path, demo_data_dir):
    cfg = _cfg(tmp_path, "NET.MODEL", "peleenet", "DATASET.INTERPOLATION", "nearest",
               "DATASET.TRAIN_INTERPOLATION", "bilinear", "DATASET.CROP_PCT", "0.5",
               "AUGMENTATION.AA", "", "AUGMENTATION.COLOR_JITTER", "0.0", data_dir=demo_data_dir)
    train, val = build_loaders(cfg, None, 32, policy=child_loader_policy(cfg, resolve_child(cfg)))
    assert [t.split("(")[0] for t in _transforms(train)] == [
        "RandomResizedCropAndInterpolation", "RandomHorizontalFlip", "ToNumpy"]
    assert "interpolation=bilinear" in _transforms(train)[0]
    # '' keeps the network's own: DATASET.INTERPOLATION for a NET.MODEL
    assert _transforms(val)[:2] == ["Resize(size=64, interpolation=nearest)", "CenterCrop(size=(32, 32))"]
    cfg = _cfg(tmp_path, "NET.MODEL", "peleenet", "DATASET.EVAL_INTERPOLATION", "bicubic",
               data_dir=demo_data_dir)
    _, val = build_loaders(cfg, None, 32, policy=child_loader_policy(cfg, resolve_child(cfg)),
                           train=False)
    assert _transforms(val)[0] == "Resize(size=36, interpolation=bicubic)"
    for key, value, message in (("DATASET.CROP_PCT", "1.5", "CROP_PCT must be in"),
                                ("DATASET.TRAIN_INTERPOLATION", "cubic", "TRAIN_INTERPOLATION: unknown"),
                                ("DATASET.EVAL_INTERPOLATION", "box2", "EVAL_INTERPOLATION: unknown")):
        cfg = _cfg(tmp_path, "NET.MODEL", "peleenet", key, value, data_dir=demo_data_dir)
        with pytest.raises(ConfigError, match=message):
            build_loaders(cfg, None, 32, policy=child_loader_policy(cfg, resolve_child(cfg)))
    # the evaluation resampling a network takes from DATASET.INTERPOLATION is named as that key,
    # for a child network and for a supernet's validation alike
    cfg = _cfg(tmp_path, "NET.MODEL", "peleenet", "DATASET.INTERPOLATION", "box2", data_dir=demo_data_dir)
    for policy in (child_loader_policy(cfg, resolve_child(cfg)), search_loader_policy(cfg)):
        with pytest.raises(ConfigError, match=r"^DATASET\.INTERPOLATION: unknown"):
            build_loaders(cfg, None, 32, policy=policy)


def test_build_loaders_errors_name_data_dir_and_fix(tmp_path, demo_data_dir):
    data = tmp_path / "data"
    shutil.copytree(os.path.join(demo_data_dir, "val"), data / "val")
    cfg = _cfg(tmp_path, data_dir=data)
    with pytest.raises(RunError, match=r"DATA_DIR/train not found.*data/README.md"):
        build_loaders(cfg, _ctx(tmp_path, cfg), image_size=32, policy=PLAIN)
    shutil.copytree(os.path.join(demo_data_dir, "train"), data / "train")
    os.makedirs(data / "val" / "04_extra")
    with pytest.raises(RunError, match=r"DATA_DIR/val.*04_extra.*holds no images"):
        build_loaders(cfg, _ctx(tmp_path, cfg), image_size=32, policy=PLAIN)
    os.makedirs(data / "train" / "04_extra")
    shutil.copy(next(iter((data / "train" / "00_circle").iterdir())), data / "train" / "04_extra")
    with pytest.raises(RunError, match="5 class folders but DATASET.NUM_CLASSES is 4"):
        build_loaders(cfg, _ctx(tmp_path, cfg), image_size=32, policy=PLAIN, eval=False)


def test_find_resume_checkpoint_prefers_newest_state(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    external = tmp_path / "external.pdparams"
    cfg_off = _cfg(tmp_path, "AUTO_RESUME", "False", "RESUME_PATH", str(external))
    cfg_on = _cfg(tmp_path, "AUTO_RESUME", "True", "RESUME_PATH", str(external))
    ctx_on, ctx_off = _ctx(run_dir, cfg_on), _ctx(run_dir, cfg_off)
    assert find_resume_checkpoint(ctx_on) is None  # nothing anywhere
    paddle.save({"epoch": 0}, str(external))
    assert find_resume_checkpoint(ctx_on) == str(external)
    assert find_resume_checkpoint(ctx_off) is None
    paddle.save({"epoch": 3}, str(run_dir / "last.pdparams"))
    assert find_resume_checkpoint(ctx_on) == str(run_dir / "last.pdparams")
    paddle.save({"epoch": 3}, str(run_dir / "recovery-3-10.pdparams"))  # before epoch 3 ended
    assert find_resume_checkpoint(ctx_on) == str(run_dir / "last.pdparams")
    paddle.save({"epoch": 4}, str(run_dir / "recovery-4-2.pdparams"))  # mid epoch 4
    assert find_resume_checkpoint(ctx_on) == str(run_dir / "recovery-4-2.pdparams")


def test_seed_epoch_shares_host_draws_and_splits_device_draws_by_rank(tmp_path):
    cfg = _cfg(tmp_path)
    draws = {}
    for rank in (0, 1):
        ctx = _ctx(tmp_path, cfg)
        ctx.rank = rank
        seed_epoch(ctx, 5)
        draws[rank] = (np.random.rand(3), paddle.rand([3]).numpy())
    np.testing.assert_array_equal(draws[0][0], draws[1][0])
    assert not np.allclose(draws[0][1], draws[1][1])
    ctx = _ctx(tmp_path, cfg)
    seed_epoch(ctx, 5)
    np.testing.assert_array_equal(paddle.rand([3]).numpy(), draws[0][1])
    seed_epoch(ctx, 6)
    assert not np.allclose(np.random.rand(3), draws[0][0])


def test_wrap_model_is_identity_in_one_process(tmp_path):
    cfg = _cfg(tmp_path, "BATCHNORM.SYNC_BN", "True")
    model = paddle.nn.Linear(2, 2)
    assert wrap_model(model, _ctx(tmp_path, cfg)) is model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DataParallel warns when it runs in one process
        wrapped = paddle.DataParallel(model)
    assert unwrap_model(wrapped) is model


# a float16 loss scaler's state (pimm.utils.amp.Amp.state_dict() on a GPU): plain numbers
SCALER_STATE = {"scale": 4096.0, "incr_ratio": 2.0, "decr_ratio": 0.5, "incr_every_n_steps": 1000,
                "decr_every_n_nan_or_inf": 1, "incr_count": 37, "decr_count": 0,
                "use_dynamic_loss_scaling": True}


def test_loss_scaler_state_survives_the_checkpoint_readers(tmp_path):
    from pimm.utils import CheckpointSaver
    from pimm.utils.amp import Amp

    cfg = _cfg(tmp_path, "AUTO_RESUME", "True")
    ctx = _ctx(tmp_path, cfg)
    model = paddle.nn.Linear(3, 2)
    optimizer = paddle.optimizer.Momentum(0.1, parameters=model.parameters())
    saver = CheckpointSaver(model, optimizer, args=cfg, checkpoint_dir=str(tmp_path),
                            recovery_dir=str(tmp_path))
    saver.save_checkpoint(0, metric=1.0, extra_state={"amp_scaler": SCALER_STATE})
    point = resume_training(ctx, model, optimizer, None, None, what="network")
    assert point.start_epoch == 1 and point.extra["amp_scaler"] == SCALER_STATE
    # float32 (and any CPU run) has no scaler: the state is left alone, nothing fails
    assert amp_extra_state(Amp()) == {}
    resume_amp(ctx, Amp(), point)
    # a damaged scaler state is named with the checkpoint (checked before Paddle's CPU scaler,
    # which is disabled, would ignore it)
    point.extra["amp_scaler"] = {"scale": 4096.0}
    with pytest.raises(RunError, match=r"cannot resume from .*last\.pdparams: loss scaler state"):
        resume_amp(ctx, Amp("O1", "float16"), point)


def test_checkpoint_saver_keeps_checkpoint_hist_best_epochs(tmp_path):
    from lib.engine.common import create_checkpoint_saver

    model = paddle.nn.Linear(2, 2)
    optimizer = paddle.optimizer.SGD(parameters=model.parameters())

    def saver(*overrides, folder="run"):
        cfg = _cfg(tmp_path, *overrides)
        ctx = RunContext(cfg=cfg, mode="retrain", run_dir=str(tmp_path / folder),
                         logger=logging.getLogger("cream.test_common"), writer=None, rank=0,
                         world_size=1, distributed=False)
        return create_checkpoint_saver(ctx, model, optimizer)

    kept = saver("CHECKPOINT_HIST", "1")
    for epoch, metric in enumerate([10.0, 30.0, 20.0]):
        kept.save_checkpoint(epoch, metric=metric)
    names = sorted(os.listdir(tmp_path / "run"))
    assert [n for n in names if n.endswith(".pdparams")] == [
        "checkpoint-1.pdparams", "last.pdparams", "model_best.pdparams"]
    assert saver().max_history == 10 and not saver().decreasing
    assert saver("EVAL_METRICS", "loss", folder="loss").decreasing
    assert saver("EVAL_METRICS", "ema_loss", folder="ema_loss").decreasing
    with pytest.raises(ConfigError, match="CHECKPOINT_HIST must be >= 1"):
        saver("CHECKPOINT_HIST", "0")


def _cifar_cfg(tmp_path, data_dir, *overrides):
    return _cfg(tmp_path, "DATASET.NAME", "cifar10", "DATASET.NUM_CLASSES", "10", "DATASET.IMAGE_SIZE", "32",
                "DATASET.BATCH_SIZE", "4", "DATASET.VAL_BATCH_MUL", "1", "DATASET.MEAN", "[0.5, 0.5, 0.5]",
                "DATASET.STD", "[0.25, 0.25, 0.25]", *overrides, data_dir=data_dir)


def test_cifar10_loaders_read_the_batches_with_mean_std_and_cutout(tmp_path, demo_cifar_dir):
    cfg = _cifar_cfg(tmp_path, demo_cifar_dir, "AUGMENTATION.CUTOUT_LENGTH", "16")
    train, val = build_loaders(cfg, None, 32, policy=PLAIN)
    assert len(train) == 30 // 4 and len(val) == 3  # val is test_batch: 10 images, the last batch partial
    assert [t.__class__.__name__ for t in train.dataset.transform.transforms][:2] == ["RandomCrop",
                                                                                      "RandomHorizontalFlip"]
    images, _ = next(iter(val))
    raw, _ = CIFAR10(demo_cifar_dir, train=False)[0]  # evaluation: normalisation only
    np.testing.assert_allclose(images[0].numpy(), (np.asarray(raw, np.float32).transpose(2, 0, 1) / 255 - 0.5) / 0.25,
                               atol=1e-5)
    # Cutout zeroes a 16 px square of (normalised) training images
    images, _ = next(iter(train))
    assert (images.numpy() == 0).all(axis=1).sum(axis=(1, 2)).min() >= 8 * 8


def test_dataset_subset_and_open_split(tmp_path, demo_cifar_dir, demo_data_dir):
    cifar = open_split(_cifar_cfg(tmp_path, demo_cifar_dir), "train")
    part = dataset_subset(cifar, range(10, 20))
    assert len(part) == 10 and len(cifar) == 30
    np.testing.assert_array_equal(part.images, cifar.images[10:20])
    folder = open_split(_cfg(tmp_path, data_dir=demo_data_dir), "val")
    part = dataset_subset(folder, [3, 1])
    assert part.samples == [folder.samples[3], folder.samples[1]] and len(folder) == 16


@pytest.mark.parametrize("overrides, error, message", [
    (["DATASET.NAME", "cifar100"], ConfigError, "DATASET.NAME 'cifar100' is unknown"),
    (["DATASET.IMAGE_SIZE", "64"], ConfigError, "CIFAR-10 images are 32 px"),
    (["DATASET.NUM_CLASSES", "4"], RunError, "10 classes but DATASET.NUM_CLASSES is 4"),
    (["DATASET.MEAN", "[0.5, 0.5]"], ConfigError, "DATASET.MEAN and DATASET.STD need three values"),
])
def test_cifar10_settings_errors(tmp_path, demo_cifar_dir, overrides, error, message):
    cfg = _cifar_cfg(tmp_path, demo_cifar_dir, *overrides)
    with pytest.raises(error, match=message):
        build_loaders(cfg, None, int(cfg.DATASET.IMAGE_SIZE), policy=PLAIN)


def test_missing_cifar_batches_and_cutout_on_folders_are_named(tmp_path, demo_cifar_dir, demo_data_dir):
    data = tmp_path / "data"
    shutil.copytree(demo_cifar_dir, data)
    os.remove(data / "data_batch_3")
    with pytest.raises(RunError, match=r"no usable CIFAR-10 train split.*data_batch_3.*make_demo_data.py --cifar"):
        check_data_splits(_cifar_cfg(tmp_path, data))
    check_data_splits(_cifar_cfg(tmp_path, data), ("val",))  # test_batch is there
    cfg = _cfg(tmp_path, "AUGMENTATION.CUTOUT_LENGTH", "16", data_dir=demo_data_dir)
    with pytest.raises(ConfigError, match="CUTOUT_LENGTH applies to DATASET.NAME cifar10"):
        build_loaders(cfg, None, 32, policy=PLAIN)


def test_gradient_clip_follows_clip_grad(tmp_path):
    assert gradient_clip(_cfg(tmp_path)) is None
    clip = gradient_clip(_cfg(tmp_path, "CLIP_GRAD", "5.0"))
    assert isinstance(clip, paddle.nn.ClipGradByGlobalNorm) and clip.clip_norm == 5.0
    with pytest.raises(ConfigError, match="CLIP_GRAD must be >= 0"):
        gradient_clip(_cfg(tmp_path, "CLIP_GRAD", "-1.0"))
