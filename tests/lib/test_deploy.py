"""lib.deploy: exported child networks give dygraph's predictions (the ``exported_14`` fixture is
tests/lib/conftest.py's)."""
import os

import numpy as np
import paddle
import pytest

from lib.deploy import LOGITS_TOLERANCE, export_child_network, exported_logits_difference, predict_files
from lib.models import build_childnet
from pimm.data import ImageDataset, create_loader
from pimm.deploy import eval_transform_from_info, relative_difference

ARCH_14 = [[0], [3], [3, 3], [3, 3], [3], [3], [0]]
SIZE = 64  # the exported_14 fixture's image size


def _val_batches(root: str):
    dataset = ImageDataset(os.path.join(root, "val"))
    loader = create_loader(dataset, SIZE, batch_size=8, interpolation="bicubic", num_workers=0)
    return dataset, loader


def _assert_same_top1(model, predictor, loader):
    images_seen, margins = 0, []
    for images, _ in loader:
        with paddle.no_grad():
            expected = model(images).numpy()
        actual = predictor(images.numpy())
        assert relative_difference(actual, expected) <= LOGITS_TOLERANCE
        assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()
        top2 = np.sort(expected, axis=1)[:, -2:]
        margins.extend(top2[:, 1] - top2[:, 0])
        images_seen += images.shape[0]
    return images_seen, float(np.min(margins))


def test_exported_net_gives_dygraph_top1_on_the_demo_val_set(exported_14, demo_data_dir):
    model, predictor, _ = exported_14
    info = predictor.info
    assert info["arch"] == ARCH_14 and info["num_classes"] == 4 and info["source"] == "random weights"
    assert info["class_names"] == ["00_circle", "01_square", "02_triangle", "03_stripes"]
    assert info["preprocess"] == {"image_size": SIZE, "interpolation": "bicubic", "crop_pct": 0.875,
                                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                  "max_pixel_value": 255.0, "color_order": "rgb"}
    _, loader = _val_batches(demo_data_dir)
    seen, smallest_margin = _assert_same_top1(model, predictor, loader)
    assert seen == 16
    assert smallest_margin > 1e-3  # the decisions compared are not float-noise ties


def test_predict_files_ranks_classes_like_the_dygraph_softmax(exported_14):
    from pimm.data.dataset import load_rgb

    model, predictor, dataset = exported_14
    paths = [path for path, _ in dataset.samples[::5]]
    predictions = predict_files(predictor, paths, topk=3, batch_size=2)
    transform = eval_transform_from_info(predictor.info)
    with paddle.no_grad():
        logits = model(paddle.to_tensor(np.stack([transform(load_rgb(p)) for p in paths]))).numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    assert len(predictions) == len(paths) == 4
    for row, top in zip(probs, predictions):
        indices = [index for index, _, _ in top]
        assert indices == list(np.argsort(-row)[:3])
        assert [name for _, name, _ in top] == [dataset.classes[i] for i in indices]
        np.testing.assert_allclose([p for _, _, p in top], row[indices], rtol=1e-4)


def test_predict_files_errors(exported_14, tmp_path):
    from pimm.data import ImageReadError

    _, predictor, _ = exported_14
    with pytest.raises(FileNotFoundError, match="not_there.jpg"):
        predict_files(predictor, [str(tmp_path / "not_there.jpg")])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(ImageReadError, match="broken.jpg"):
        predict_files(predictor, [str(broken)])
    with pytest.raises(ValueError, match="topk must be >= 1"):
        predict_files(predictor, [str(broken)], topk=0)
    with pytest.raises(ValueError, match="4 class names given for a network with 1000 classes"):
        export_child_network(build_childnet(14), str(tmp_path / "x"), SIZE, class_names=list("abcd"))


def test_logits_difference_restores_train_mode(exported_14):
    model, predictor, _ = exported_14
    model.train()
    try:
        assert exported_logits_difference(model, predictor, SIZE) < 1e-5
        assert model.training
    finally:
        model.eval()
