"""SPOS through tools/main.py, in-process (``main(argv)``): supernet training with resume, the
evolution (end to end, killed and resumed, on Cream's supernet too), retraining the evolved best
path and testing it with the official BGR 0-255 input option.

One tiny supernet (stages of 24-96 channels, 32 px, 4 classes of flat colours) is trained once per
module and shared by the evolution tests.
"""
import importlib.util
import json
import os

import numpy as np
import paddle
import pytest

import lib.engine.evolve as evolve_engine
import lib.engine.spos_train as spos_train
from lib.config import load_config
from lib.engine.search import build_search_supernet
from lib.models import FlopsEst
from lib.spos import Widths, arch_flops, build_childnet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = os.path.join(REPO, "tools")
SPOS_CONFIGS = os.path.join(REPO, "experiments", "configs", "spos")
SUPERNET_CFG = os.path.join(SPOS_CONFIGS, "demo_supernet.yaml")
EVOLVE_CFG = os.path.join(SPOS_CONFIGS, "demo_evolve.yaml")
CREAM_DEMO = os.path.join(REPO, "experiments", "configs", "train", "demo.yaml")
WIDTHS = Widths((24, 32, 64, 96), 128)
TINY = ["WORKERS", 0, "LOG_INTERVAL", 2, "DATASET.NUM_CLASSES", 4, "DATASET.IMAGE_SIZE", 32,
        "DATASET.BATCH_SIZE", 16, "SPOS.STAGE_CHANNELS", str(list(WIDTHS.stage_channels)),
        "SPOS.HEAD_CHANNELS", WIDTHS.head_channels]
SUPERNET_EPOCHS = 2
FLOPS_LIMIT = 28.5  # MFLOPs of these widths at 224 px: about half of the random paths are above
# population 6, top 2, 2 + 2 bred children, 2 bred generations: 18 scored paths
EVOLUTION = ["SPOS.EVOLUTION.POPULATION", 6, "SPOS.EVOLUTION.TOP_K", 2, "SPOS.EVOLUTION.MUTATIONS", 2,
             "SPOS.EVOLUTION.CROSSOVERS", 2, "SPOS.EVOLUTION.GENERATIONS", 2,
             "SPOS.EVOLUTION.FLOPS_LIMIT", FLOPS_LIMIT, "SPOS.BN_BATCHES", 2, "DATASET.VAL_BATCH_MUL", 4]


@pytest.fixture(scope="module")
def main():
    """tools/main.py's ``main(argv)``, imported as ``python tools/main.py`` runs it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(TOOLS)
        spec = importlib.util.spec_from_file_location("tools_main_spos", os.path.join(TOOLS, "main.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield lambda *argv: module.main([str(a) for a in argv])


class _StopAt:
    """Raise KeyboardInterrupt (as Ctrl-C would) at the ``at``-th call of ``cls.name``."""

    def __init__(self, monkeypatch, cls, name, at):
        original, self.calls = getattr(cls, name), 0

        def wrapped(*args, **kwargs):
            self.calls += 1
            if self.calls == at:
                raise KeyboardInterrupt
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, name, wrapped)


@pytest.fixture(scope="module")
def supernet_runs(main, colour_data_dir, tmp_path_factory):
    """The same supernet training twice: straight through, and stopped when its second epoch
    starts, then continued by the same command. Returns both run folders."""
    root = tmp_path_factory.mktemp("spos_supernet")
    args = ["train", SUPERNET_CFG, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", root,
            "EPOCHS", SUPERNET_EPOCHS, "LR", 0.05, "SUPERNET.VAL_PATHS", 2, "SUPERNET.VAL_BN_BATCHES", 2,
            "SPOS.FLOPS_RANGE", "[26.0, 31.0]", "SPOS.FLOPS_BIN", 1.0]
    assert main(*args, "MODEL", "straight") == 0
    with pytest.MonkeyPatch.context() as mp:
        _StopAt(mp, spos_train._SposSupernetTraining, "train_epoch", at=2)
        assert main(*args, "MODEL", "resumed") == 130
    assert main(*args, "MODEL", "resumed") == 0
    return root / "straight", root / "resumed"


def test_supernet_training_writes_a_checkpoint_that_resumes_identically(supernet_runs):
    straight, resumed = supernet_runs
    a = paddle.load(str(straight / "last.pdparams"))
    b = paddle.load(str(resumed / "last.pdparams"))
    assert a["epoch"] == SUPERNET_EPOCHS - 1 and a["arch"] == "spos_supernet"
    for key, value in a["state_dict"].items():
        np.testing.assert_array_equal(b["state_dict"][key].numpy(), value.numpy(), err_msg=key)
    assert a["path_sampler"] == b["path_sampler"] and a["scheduler"] == b["scheduler"]
    assert a["scheduler"]["last_lr"] == pytest.approx(0.0, abs=1e-12)  # linear decay to 0
    with open(resumed / "train.log") as f:
        log = f.read()
    assert "resumed from" in log and "epoch 1" in log
    # every trained path lies in the FLOPs window (the sampler's bins), and the log shows them
    trained = [json.loads(p.split(" (")[0]) for p in log.split("Path: ")[1:]]
    assert trained and all(26.0 <= arch_flops(p, 4, WIDTHS) / 1e6 <= 31.0 for p in trained)
    rows = open(straight / "summary.csv").read().splitlines()
    assert len(rows) == 1 + SUPERNET_EPOCHS and "eval_prec1" in rows[0]


@pytest.fixture(scope="module")
def evolution(main, supernet_runs, colour_data_dir, tmp_path_factory):
    """An uninterrupted evolution of the trained supernet; returns its run folder."""
    root = tmp_path_factory.mktemp("spos_evolve")
    supernet = supernet_runs[0] / "last.pdparams"
    assert main("evolve", EVOLVE_CFG, *TINY, *EVOLUTION, "DATA_DIR", colour_data_dir, "SAVE_PATH", root,
                "MODEL", "straight", "SPOS.SUPERNET", supernet) == 0
    return root / "straight"


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_evolution_scores_paths_under_the_limit_once_and_records_them(evolution):
    record = _json(evolution / "evolution.json")
    candidates = record["candidates"]
    archs = [tuple(c["arch"]) for c in candidates]
    assert len(archs) == len(set(archs)) == sum(sum(g["scored"].values()) for g in record["generations"])
    assert [g["generation"] for g in record["generations"]] == [0, 1, 2]
    assert record["generations"][0]["scored"] == {"random": 6, "mutation": 0, "crossover": 0}
    assert any(g["scored"]["mutation"] and g["scored"]["crossover"] for g in record["generations"][1:])
    assert sum(g["rejected"] for g in record["generations"]) > 0  # the limit turned paths away
    for c in candidates:
        assert c["flops"] == pytest.approx(arch_flops(c["arch"], 4, WIDTHS) / 1e6) and c["flops"] <= FLOPS_LIMIT
        assert 0.0 <= c["score"] <= 100.0 and c["score"] * 64 / 100 == pytest.approx(round(c["score"] * 0.64))
    for g in record["generations"]:  # the top-k of each generation: the best of all scored so far
        so_far = sorted((c["score"] for c in candidates if c["generation"] <= g["generation"]), reverse=True)
        assert [t["score"] for t in g["top_k"]] == so_far[:2]
    best = max(candidates, key=lambda c: c["score"])
    assert record["best"]["score"] == best["score"]
    assert record["method"] == "spos" and record["flops_unit"] == "MFLOPs"
    assert record["widths"] == {"stage_channels": [24, 32, 64, 96], "head_channels": 128}
    assert record["scoring"]["holdout_images"] == 64 and record["scoring"]["bn_batches"] == 2
    state = _json(evolution / evolve_engine.STATE_FILE)
    assert state["evolution"]["generation"] == 3
    log = open(evolution / "evolve.log").read()
    assert "generation 2 done" in log
    if importlib.util.find_spec("matplotlib") is not None:
        with open(evolution / "evolution.png", "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    else:  # says how to get the plot
        assert "pip install matplotlib" in log and not os.path.exists(evolution / "evolution.png")


def test_a_killed_evolution_resumes_to_the_identical_record(main, evolution, supernet_runs, colour_data_dir):
    root = evolution.parent
    args = ["evolve", EVOLVE_CFG, *TINY, *EVOLUTION, "DATA_DIR", colour_data_dir, "SAVE_PATH", root,
            "MODEL", "killed", "SPOS.SUPERNET", supernet_runs[0] / "last.pdparams"]
    with pytest.MonkeyPatch.context() as mp:
        _StopAt(mp, evolve_engine._Search, "fitness", at=9)  # in generation 1, after 2 of its paths
        assert main(*args) == 130
    assert _json(root / "killed" / evolve_engine.STATE_FILE)["evolution"]["generation"] == 1
    assert main(*args) == 0
    assert _json(root / "killed" / "evolution.json") == _json(evolution / "evolution.json")
    assert "resumed the evolution" in open(root / "killed" / "evolve.log").read()
    # scored otherwise (another recalibration) is refused, naming what changed
    with pytest.MonkeyPatch.context():
        assert main(*args, "SPOS.BN_BATCHES", 3) == 2


def test_retrain_and_test_the_evolved_best_path(main, evolution, colour_data_dir, tmp_path, capsys):
    best = _json(evolution / "evolution.json")["best"]["arch"]
    retrain = ["retrain", SUPERNET_CFG, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", tmp_path,
               "MODEL", "child", "EPOCHS", 1, "LR", 0.05, "SCHED", "linear", "WARMUP_EPOCHS", 0,
               "AUGMENTATION.AA", "", "SPOS.EVOLUTION_JSON", evolution / "evolution.json"]
    assert main(*retrain) == 0
    checkpoint = paddle.load(str(tmp_path / "child" / "last.pdparams"))
    child = build_childnet(best, num_classes=4, widths=WIDTHS)
    assert set(checkpoint["state_dict"]) == set(child.state_dict())
    assert "best path of" in open(tmp_path / "child" / "retrain.log").read()
    # the child of another width does not fit: one line naming the keys to set
    assert main("test", SUPERNET_CFG, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", tmp_path,
                "MODEL", "wrong", "SPOS.HEAD_CHANNELS", 256, "SPOS.ARCH", str(best),
                "RESUME_PATH", tmp_path / "child" / "last.pdparams") == 2
    assert "SPOS.STAGE_CHANNELS" in capsys.readouterr().err


def _bgr_255(images, mean, std):
    """Undo ImageNet normalisation (RGB) and give raw BGR 0-255 pixels, as the official code feeds."""
    raw = (images * np.asarray(std).reshape(1, 3, 1, 1) + np.asarray(mean).reshape(1, 3, 1, 1)) * 255.0
    return np.ascontiguousarray(raw[:, ::-1])


def test_official_bgr_0_255_input_option(main, colour_data_dir, tmp_path):
    """An SPOS child trained on raw BGR 0-255 (our own writer's checkpoint) tested with the option
    gets exactly the metrics of feeding it those pixels by hand."""
    from pimm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, ImageDataset, create_transform

    dataset = ImageDataset(os.path.join(colour_data_dir, "val"), transform=create_transform(
        32, is_training=False, interpolation="bilinear", crop_pct=0.875))
    normalised = np.stack([dataset[i][0] for i in range(len(dataset))])
    labels = np.array([dataset[i][1] for i in range(len(dataset))])
    bgr = paddle.to_tensor(_bgr_255(normalised, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD).astype("float32"))
    arch = (1, 3, 0, 2) * 5
    paddle.seed(1)
    model = build_childnet(arch, num_classes=4, widths=WIDTHS, drop_rate=0.0)
    optimizer = paddle.optimizer.Momentum(0.05, parameters=model.parameters())
    model.train()
    for _ in range(12):  # a network trained on raw BGR 0-255 ...
        paddle.nn.functional.cross_entropy(model(bgr), paddle.to_tensor(labels)).backward()
        optimizer.step()
        optimizer.clear_grad()
    with paddle.no_grad():
        for _ in range(15):  # ... with the batch-norm statistics of its final weights
            model(bgr)
    model.eval()
    paddle.save({"state_dict": model.state_dict()}, str(tmp_path / "bgr.pdparams"))
    assert main("test", os.path.join(SPOS_CONFIGS, "test.yaml"), *TINY, "DATA_DIR", colour_data_dir,
                "SAVE_PATH", tmp_path, "MODEL", "bgr", "SPOS.ARCH", str(list(arch)),
                "TEST.INFERENCE", "dygraph", "RESUME_PATH", tmp_path / "bgr.pdparams") == 0
    metrics = _json(tmp_path / "bgr" / "metrics.json")
    with paddle.no_grad():
        logits = model(bgr)
        on_normalised = model(paddle.to_tensor(normalised)).numpy().argmax(axis=1)
    loss = float(paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(labels)))
    predicted = logits.numpy().argmax(axis=1)
    assert len(set(predicted)) > 1 and loss < 0.99 * np.log(4)  # not a degenerate network
    assert metrics["top1"] == pytest.approx(100.0 * np.mean(predicted == labels))
    assert metrics["loss"] == pytest.approx(loss, rel=1e-4)
    assert not np.array_equal(on_normalised, predicted)  # the same net on ImageNet-normalised input


@pytest.fixture(scope="module")
def cream_supernet_file(tmp_path_factory):
    """A Cream supernet checkpoint of the [0, 115] MFLOPs space, written by ``paddle.save`` as the
    search's CheckpointSaver writes them (random weights)."""
    cfg = load_config(CREAM_DEMO, ["DATASET.NUM_CLASSES", "4", "SUPERNET.FLOPS_MAXIMUM", "115",
                                   "SUPERNET.SLICE", "2"])
    paddle.seed(2)
    supernet, _, _ = build_search_supernet(cfg)
    path = tmp_path_factory.mktemp("cream") / "last.pdparams"
    paddle.save({"state_dict": supernet.state_dict(), "epoch": 0, "version": 2}, str(path))
    return str(path), supernet


def test_evolve_on_a_cream_supernet_checkpoint(main, cream_supernet_file, colour_data_dir, tmp_path):
    path, supernet = cream_supernet_file
    limit = 105.0  # MFLOPs: about half of the random paths of this space are above
    assert main("evolve", CREAM_DEMO, "METHOD", "cream", "WORKERS", 0, "DATASET.NUM_CLASSES", 4,
                "DATASET.IMAGE_SIZE", 32, "DATASET.BATCH_SIZE", 16, "SUPERNET.FLOPS_MAXIMUM", 115,
                "SUPERNET.SLICE", 2, "SPOS.EVOLUTION.POPULATION", 6, "SPOS.EVOLUTION.TOP_K", 2,
                "SPOS.EVOLUTION.MUTATIONS", 2, "SPOS.EVOLUTION.CROSSOVERS", 2, "SPOS.EVOLUTION.GENERATIONS", 1,
                "SPOS.EVOLUTION.FLOPS_LIMIT", limit, "SPOS.BN_BATCHES", 1, "DATA_DIR", colour_data_dir,
                "SAVE_PATH", tmp_path, "MODEL", "cream", "SPOS.SUPERNET", path) == 0
    record = _json(tmp_path / "cream" / "evolution.json")
    assert record["method"] == "cream" and record["sta_num"] == supernet.sta_num
    flops = FlopsEst(supernet, resolution=record["flops_resolution"])
    assert len(record["candidates"]) == 6 + sum(sum(g["scored"].values()) for g in record["generations"][1:])
    for c in record["candidates"]:
        arch = c["arch"]
        assert arch[0] == [0] and arch[-1] == [0] and [len(s) for s in arch[1:-1]] == supernet.sta_num
        assert c["flops"] == pytest.approx(flops.get_flops(arch)) and c["flops"] <= limit
    # a Cream checkpoint is not an SPOS supernet: one line naming the keys to set
    assert main("evolve", EVOLVE_CFG, *TINY, "DATA_DIR", colour_data_dir, "SAVE_PATH", tmp_path,
                "MODEL", "wrong", "SPOS.SUPERNET", path) == 2
