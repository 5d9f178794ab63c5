"""tools/export_model.py: a checkpoint in, Paddle Inference files out, checked against dygraph."""
import json
import os

import numpy as np
import paddle
import pytest

from lib.config import load_config
from lib.engine.child import child_eval_preprocess, resolve_child
from lib.models import build_childnet
from pimm.data import ImageDataset, create_loader, transforms_imagenet_eval
from pimm.data.dataset import load_rgb
from pimm.deploy import InferenceModel, relative_difference
from pimm.models import create_model, load_checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_PELEENET = os.path.join(REPO, "experiments", "configs", "test", "peleenet.yaml")


@pytest.fixture
def export_tool(load_tool, capsys):
    tool = load_tool("export_model")

    def run(*argv):
        code = tool.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_export_a_trained_checkpoint_with_class_names(export_tool, demo_data_dir, tmp_path):
    paddle.seed(7)
    arch = [[0], [1], [2, 3], [4], [5, 0], [3], [0]]
    trained = build_childnet(arch, num_classes=4)
    trained.train()
    trained(paddle.randn([4, 3, 48, 48]))  # running statistics away from their initial values
    checkpoint = str(tmp_path / "model_best.pdparams")
    paddle.save({"state_dict": trained.state_dict(), "epoch": 3}, checkpoint)
    prefix = str(tmp_path / "out" / "mine")
    code, out, err = export_tool("--arch", str(arch), "--checkpoint", checkpoint, "--image-size", "48",
                                 "--num-classes", "4", "--class-names-from", os.path.join(demo_data_dir, "val"),
                                 "--output", prefix)
    assert code == 0, err
    assert f"program  {prefix}.json" in out and f"params   {prefix}.pdiparams" in out
    assert "relative difference (tolerance 0.0001)" in out
    with open(prefix + ".info.json") as f:
        info = json.load(f)
    assert info["arch"] == arch and info["num_classes"] == 4 and info["source"] == os.path.abspath(checkpoint)
    assert info["class_names"] == ["00_circle", "01_square", "02_triangle", "03_stripes"]
    assert info["input_shape"] == [3, 48, 48] and info["preprocess"]["image_size"] == 48
    trained.eval()
    x = np.random.default_rng(0).standard_normal((3, 3, 48, 48)).astype(np.float32)
    with paddle.no_grad():
        expected = trained(paddle.to_tensor(x)).numpy()
    # the exported weights are the checkpoint's, BN statistics included
    assert relative_difference(InferenceModel(prefix, threads=1)(x), expected) < 1e-4


def test_released_checkpoint_gives_dygraph_top1_on_the_demo_val_set(export_tool, cream14_dir, demo_data_dir,
                                                                     tmp_path):
    checkpoint = os.path.join(cream14_dir, "14.pth.tar")
    prefix = str(tmp_path / "cream_14")
    code, out, err = export_tool("--selection", "14", "--checkpoint", checkpoint, "--ema", "--output", prefix)
    assert code == 0, err
    predictor = InferenceModel(prefix, threads=1)
    assert predictor.info["input_shape"] == [3, 64, 64]  # the selection's published size
    # the fixture's input and the reference's logits (PyTorch, EMA weights)
    x = np.load(os.path.join(cream14_dir, "input.npy")).astype(np.float32)
    assert relative_difference(predictor(x), np.load(os.path.join(cream14_dir, "logits_ema.npy"))) < 1e-4
    # the demo validation images through the evaluation loader: same top-1 as dygraph
    model = build_childnet(14)
    load_checkpoint(model, checkpoint, use_ema=True)
    model.eval()
    loader = create_loader(ImageDataset(os.path.join(demo_data_dir, "val")), 64, batch_size=8,
                           interpolation="bicubic", num_workers=0)
    seen = 0
    for images, _ in loader:
        with paddle.no_grad():
            expected = model(images).numpy()
        actual = predictor(images.numpy())
        assert relative_difference(actual, expected) < 1e-4
        assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()
        seen += images.shape[0]
    assert seen == 16


@pytest.mark.parametrize("extra, message", [
    (["--selection", "14", "--checkpoint", "/no/such.pdparams"], "/no/such.pdparams"),
    (["--selection", "14", "--ema"], "--ema needs --checkpoint"),
    (["--selection", "15"], "15"),
    (["--arch", "[[0], [9], [0]]"], "invalid Cream arch"),
])
def test_errors_exit_2(export_tool, tmp_path, extra, message):
    code, out, err = export_tool(*extra, "--output", str(tmp_path / "m"))
    assert code == 2 and message in err
    assert not os.path.exists(tmp_path / "m.json")


def test_checkpoint_of_another_network_is_refused(export_tool, tmp_path):
    checkpoint = str(tmp_path / "43.pdparams")
    paddle.save({"state_dict": build_childnet(43).state_dict()}, checkpoint)
    code, _, err = export_tool("--selection", "14", "--checkpoint", checkpoint, "--output", str(tmp_path / "m"))
    assert code == 2 and "43.pdparams" in err


def test_export_an_spos_net_from_its_config_records_its_bgr_0_255_input(export_tool, demo_data_dir, tmp_path):
    from lib.spos import Widths
    from lib.spos import build_childnet as build_spos_childnet
    from pimm.deploy import eval_transform_from_info

    arch = [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3]
    paddle.seed(3)
    model = build_spos_childnet(arch, num_classes=4, widths=Widths((24, 32, 64, 96), 128))
    checkpoint = str(tmp_path / "spos.pdparams")
    paddle.save({"state_dict": model.state_dict()}, checkpoint)
    config = os.path.join(os.path.dirname(__file__), "..", "..", "experiments", "configs", "spos", "test.yaml")
    prefix = str(tmp_path / "spos")
    code, out, err = export_tool("--config", config, "--checkpoint", checkpoint, "--output", prefix,
                                 "DATASET.NUM_CLASSES", "4", "DATASET.IMAGE_SIZE", "32",
                                 "SPOS.STAGE_CHANNELS", "[24, 32, 64, 96]", "SPOS.HEAD_CHANNELS", "128")
    assert code == 0, err
    info = InferenceModel(prefix, threads=1).info
    assert info["arch"] == arch and info["input_shape"] == [3, 32, 32] and info["num_classes"] == 4
    pre = info["preprocess"]
    assert (pre["color_order"], pre["max_pixel_value"], pre["mean"], pre["std"], pre["interpolation"]) == (
        "bgr", 1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], "bilinear")
    # tools/infer.py's transform gives the raw BGR pixels of the resized, centre-cropped image
    image = load_rgb(os.path.join(demo_data_dir, "val", "00_circle", os.listdir(
        os.path.join(demo_data_dir, "val", "00_circle"))[0]))
    rgb = eval_transform_from_info({"preprocess": dict(pre, color_order="rgb", max_pixel_value=255.0,
                                                       mean=[0.0] * 3, std=[1.0] * 3)})(image) * 255.0
    np.testing.assert_allclose(eval_transform_from_info(info)(image), rgb[::-1], rtol=1e-6, atol=1e-4)
def test_any_registered_model_exports_with_its_evaluation_transform(export_tool, load_tool, capsys,
                                                                    demo_data_dir, tmp_path):
    """PeleeNet from a checkpoint of the PaddlePaddle reproduction's layout, network and transform
    from its test config (bilinear, 0.875), then tools/infer.py on the export with a names file."""
    paddle.seed(5)
    trained = create_model("peleenet", num_classes=4)
    trained.train()
    trained(paddle.randn([4, 3, 64, 64]))  # running statistics away from their initial values
    with paddle.no_grad():  # decisive logits
        trained.classifier.weight.set_value(trained.classifier.weight * 50.0)
    checkpoint = str(tmp_path / "peleenet.pdparams")
    paddle.save({"model": trained.state_dict(), "epoch": 3}, checkpoint)
    names = tmp_path / "names.txt"
    names.write_text("zero\none\ntwo\nthree\n")
    prefix = str(tmp_path / "peleenet")
    code, out, err = export_tool("--config", TEST_PELEENET, "--image-size", "64", "--num-classes",
                                 "4", "--checkpoint", checkpoint, "--class-names", str(names),
                                 "--output", prefix)
    assert code == 0, err
    assert "network  model peleenet, 64 px" in out and "relative difference" in out
    with open(prefix + ".info.json") as f:
        info = json.load(f)
    assert (info["model"], info["arch"], info["num_classes"]) == ("peleenet", None, 4)
    assert info["class_names"] == ["zero", "one", "two", "three"]
    pre = info["preprocess"]
    assert (pre["image_size"], pre["interpolation"], pre["crop_pct"]) == (64, "bilinear", 0.875)

    paths = [path for path, _ in ImageDataset(os.path.join(demo_data_dir, "val")).samples[:3]]
    code = load_tool("infer").main([prefix, *paths, "--topk", "2", "--threads", "1"])
    lines = capsys.readouterr().out.strip().splitlines()
    transform = transforms_imagenet_eval(64, crop_pct=0.875, interpolation="bilinear")
    trained.eval()
    with paddle.no_grad():
        logits = trained(paddle.to_tensor(np.stack([transform(load_rgb(p)) for p in paths]))).numpy()
    assert code == 0 and len(lines) == 3
    for line, row in zip(lines, logits):
        best = np.argsort(-row)[:2]
        assert line.split("  ")[1].startswith(f"{best[0]}:{['zero', 'one', 'two', 'three'][best[0]]} ")
        assert line.split("  ")[2].startswith(f"{best[1]}:")

    # --model peleenet alone means the same network and transform as the test config
    tool = load_tool("export_model")
    args = tool.parse_args(["--model", "peleenet", "--output", "x"])
    by_name = load_config(None, tool.config_overrides(args))
    by_config = load_config(TEST_PELEENET)
    assert child_eval_preprocess(by_name, resolve_child(by_name)) == child_eval_preprocess(
        by_config, resolve_child(by_config))
