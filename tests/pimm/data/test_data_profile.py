"""pimm.data.pipeline_stage_times: each stage of a loader's pipeline, in pipeline order."""
import os

import pytest

from pimm.data import ImageDataset, create_loader, pipeline_stage_times


def test_stages_follow_the_pipeline(demo_data_dir):
    dataset = ImageDataset(os.path.join(demo_data_dir, "train"))
    loader = create_loader(dataset, (3, 32, 32), 4, is_training=True, re_prob=0.5, num_workers=0,
                           auto_augment="rand-m9-mstd0.5", interpolation="random", seed=0)
    stages = pipeline_stage_times(loader, range(12), warmup=1)
    assert list(stages) == ["decode", "RandomResizedCropAndInterpolation", "RandomHorizontalFlip",
                            "RandAugment", "ToNumpy", "collate", "normalize", "batch_augment"]
    assert stages["decode"] > 0 and all(v >= 0 for v in stages.values())
    # without the prefetcher each image is normalised (and erased) by its own transform
    per_image = create_loader(dataset, (3, 32, 32), 4, use_prefetcher=False, num_workers=0)
    assert list(pipeline_stage_times(per_image, range(8))) == [
        "decode", "Resize", "CenterCrop", "ToNormalizedArray", "collate"]
    with pytest.raises(ValueError, match="give more than 1 batches' worth"):
        pipeline_stage_times(loader, range(4))
