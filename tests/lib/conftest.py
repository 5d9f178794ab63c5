"""Fixtures shared by the lib tests."""
import os

import paddle
import pytest

EXPORT_SIZE = 64  # the exported_14 fixture's image size


@pytest.fixture(scope="session")
def supernet_600():
    """``build_supernet(0, 600)`` (the published search space, 1000 classes), built once per session:
    ``(model, sta_num, resolution)``. Treat the model as read-only."""
    from lib.models import build_supernet

    return build_supernet(0, 600)


def _decisive_net(num_classes: int = 4) -> paddle.nn.Layer:
    """Net 14 with random weights and a scaled-up classifier: fresh classifiers give nearly equal
    logits, whose order float rounding could flip; scaled ones make top-1 a real decision."""
    from lib.models import build_childnet

    paddle.seed(3)
    model = build_childnet(14, num_classes=num_classes)
    with paddle.no_grad():
        model.classifier.weight.set_value(model.classifier.weight * 400.0)
    model.eval()
    return model


@pytest.fixture(scope="session")
def exported_14(demo_data_dir, tmp_path_factory):
    """Net 14 with random weights and decisive logits, exported once for the session at 64 px with
    the demo classes: ``(model, predictor, val dataset)``. Treat them as read-only."""
    from lib.deploy import export_child_network
    from pimm.data import ImageDataset
    from pimm.deploy import InferenceModel

    model = _decisive_net()
    dataset = ImageDataset(os.path.join(demo_data_dir, "val"))
    prefix = str(tmp_path_factory.mktemp("export") / "cream_14")
    files = export_child_network(model, prefix, EXPORT_SIZE, arch=[[0], [3], [3, 3], [3, 3], [3], [3], [0]],
                                 class_names=dataset.classes, source="random weights")
    assert all(os.path.isfile(path) for path in files.values())
    return model, InferenceModel(prefix, threads=1), dataset
