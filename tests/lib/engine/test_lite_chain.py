"""lib.engine.lite_chain's compare stage: the export on its recorded transform against dygraph on
the evaluation's own input (the whole chain runs in tests/tools/test_lite_chain.py)."""
import pytest

from lib.config import load_config
from lib.engine.child import child_loader_policy, resolve_child
from lib.engine.common import build_loaders
from lib.engine.lite_chain import compare_with_dygraph
from lib.models import build_childnet
from pimm.data import transforms_imagenet_eval
from pimm.deploy import eval_transform_from_info


def test_compare_fails_on_another_network_or_another_transform(exported_14, demo_data_dir):
    model, predictor, dataset = exported_14
    size = predictor.info["preprocess"]["image_size"]
    cfg = load_config(None, ["DATA_DIR", demo_data_dir, "DATASET.NUM_CLASSES", "4", "WORKERS", "0",
                             "DATASET.IMAGE_SIZE", str(size), "DATASET.SELECTION_IMAGE_SIZE",
                             "False"])
    _, loader = build_loaders(cfg, None, size, train=False,
                              policy=child_loader_policy(cfg, resolve_child(cfg)))
    paths = [path for path, _ in loader.dataset.samples]
    transform = eval_transform_from_info(predictor.info)
    result = compare_with_dygraph(model, predictor, loader, transform, paths)
    assert result["input"] < 1e-5 and result["logits"] < 1e-4 and result["agreement"] == 1.0
    with pytest.raises(RuntimeError, match="logits differ from dygraph's"):
        compare_with_dygraph(build_childnet(14, num_classes=4), predictor, loader, transform, paths)
    bilinear = transforms_imagenet_eval(size, crop_pct=0.875, interpolation="bilinear")
    with pytest.raises(RuntimeError, match="recorded transform does not reproduce"):
        compare_with_dygraph(model, predictor, loader, bilinear, paths)
