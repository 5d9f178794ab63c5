"""tools/infer.py: top-k classes of image files from an exported network."""
import json
import os

import numpy as np
import paddle
import pytest

from lib.deploy import export_child_network
from lib.models import build_childnet
from pimm.data import ImageDataset, transforms_imagenet_eval
from pimm.data.dataset import load_rgb


@pytest.fixture(scope="module")
def exported(demo_data_dir, tmp_path_factory):
    paddle.seed(11)
    model = build_childnet(14, num_classes=4)
    with paddle.no_grad():  # decisive logits (a fresh classifier gives near ties)
        model.classifier.weight.set_value(model.classifier.weight * 400.0)
    model.eval()
    dataset = ImageDataset(os.path.join(demo_data_dir, "val"))
    prefix = str(tmp_path_factory.mktemp("infer") / "cream_14")
    export_child_network(model, prefix, 64, class_names=dataset.classes)
    return model, prefix, dataset


@pytest.fixture
def infer_tool(load_tool, capsys):
    tool = load_tool("infer")

    def run(*argv):
        code = tool.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_json_predictions_match_the_dygraph_model(exported, infer_tool):
    model, prefix, dataset = exported
    paths = [path for path, _ in dataset.samples[:5]]
    code, out, err = infer_tool(prefix, *paths, "--topk", "2", "--batch-size", "2", "--json", "--threads", "1")
    assert code == 0, err
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert [r["image"] for r in records] == paths
    transform = transforms_imagenet_eval(64, crop_pct=0.875, interpolation="bicubic")
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.stack([transform(load_rgb(p)) for p in paths]))).numpy()
    for record, row in zip(records, logits):
        top = record["topk"]
        assert [t["class"] for t in top] == list(np.argsort(-row)[:2])
        assert [t["name"] for t in top] == [dataset.classes[t["class"]] for t in top]
        assert top[0]["probability"] >= top[1]["probability"] > 0.0


def test_text_output_one_line_per_image(exported, infer_tool):
    _, prefix, dataset = exported
    paths = [path for path, _ in dataset.samples[:2]]
    code, out, _ = infer_tool(prefix, *paths, "--topk", "5", "--threads", "1")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(paths[0] + "  ")
    assert len(lines[0].split("  ")) == 1 + 4  # topk 5 of 4 classes: all four, ranked
    assert all(name in lines[0] for name in dataset.classes)


def test_errors_exit_2(exported, infer_tool, tmp_path):
    _, prefix, _ = exported
    code, _, err = infer_tool(str(tmp_path / "missing"), "x.jpg")
    assert code == 2 and "no exported model at prefix" in err
    code, _, err = infer_tool(prefix, str(tmp_path / "nope.jpg"))
    assert code == 2 and "nope.jpg" in err
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    code, _, err = infer_tool(prefix, str(bad))
    assert code == 2 and "cannot decode image" in err and "bad.png" in err


def test_names_file_names_the_top_k(exported, infer_tool, tmp_path):
    _, prefix, dataset = exported
    names = tmp_path / "synset_words.txt"
    names.write_text("n0 zero\nn1 one\nn2 two\nn3 three\n\n")
    path = dataset.samples[0][0]
    code, out, err = infer_tool(prefix, path, "--topk", "4", "--class-names", str(names),
                                "--threads", "1", "--json")
    assert code == 0, err
    top = json.loads(out)["topk"]
    assert [t["name"] for t in top] == [f"n{t['class']} {['zero', 'one', 'two', 'three'][t['class']]}"
                                        for t in top]
    names.write_text("zero\none\n")
    code, _, err = infer_tool(prefix, path, "--class-names", str(names))
    assert code == 2 and "has 2 class names but the model has 4 classes" in err
