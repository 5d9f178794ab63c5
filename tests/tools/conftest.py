"""Fixtures for running tools/main.py as users do: a subprocess from a scratch folder."""
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(REPO, "tools", "main.py")


@pytest.fixture(scope="session")
def run_main():
    """``run_main(*args, cwd=folder, ok=True)``: ``python tools/main.py ARGS`` in ``folder``,
    returning the CompletedProcess (text output); with ``ok`` it must exit 0."""

    def run(*args, cwd, ok=True, timeout=300):
        env = dict(os.environ, GLOG_minloglevel="2")
        proc = subprocess.run([sys.executable, MAIN, *map(str, args)], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if ok:
            assert proc.returncode == 0, (f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n"
                                          f"{proc.stderr[-3000:]}")
        return proc

    return run


@pytest.fixture(scope="session")
def evaluate_image_by_image():
    """``evaluate_image_by_image(model, val_dir, image_size, interpolation="bicubic")``:
    ``{"top1", "top5", "loss"}`` of ``model`` on every image of ``val_dir``, one image at a time
    through pimm's eval transform (crop 0.875), independently of the engine's loaders and
    reductions."""
    import paddle
    import paddle.nn.functional as F

    from pimm.data import ImageDataset, create_transform

    def evaluate(model, val_dir, image_size, interpolation="bicubic"):
        dataset = ImageDataset(val_dir, transform=create_transform(
            image_size, is_training=False, interpolation=interpolation, crop_pct=0.875))
        model.eval()
        top1 = top5 = loss = 0.0
        with paddle.no_grad():
            for index in range(len(dataset)):
                image, label = dataset[index]
                logits = model(paddle.to_tensor(image[None]))[0]
                ranked = np.argsort(-logits.numpy(), kind="stable")
                top1 += float(ranked[0] == label)
                top5 += float(label in ranked[:5])
                loss += float(F.cross_entropy(logits[None], paddle.to_tensor([label])))
        count = len(dataset)
        return {"top1": 100.0 * top1 / count, "top5": 100.0 * top5 / count, "loss": loss / count}

    return evaluate


@pytest.fixture(scope="session")
def colour_data_dir(tmp_path_factory):
    """An ImageNet-style tree a child net learns in a few CPU epochs even through the retrain
    recipe's random-resized crops: 4 classes of noisy, flat colours (the demo shapes are often
    cropped away and need far longer). 24 train and 16 val 40x40 JPEGs per class."""
    root = tmp_path_factory.mktemp("colours")
    rng = np.random.default_rng(0)
    colours = {"0_red": (200, 40, 40), "1_green": (40, 180, 60), "2_blue": (40, 60, 200),
               "3_yellow": (220, 210, 40)}
    for split, count in (("train", 24), ("val", 16)):
        for name, rgb in colours.items():
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = np.asarray(rgb) * rng.uniform(0.6, 1.2) + rng.normal(0, 25, (40, 40, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg")
    return str(root)
