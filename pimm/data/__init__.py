"""Data pipeline (timm 0.1.20 semantics on Paddle): folder dataset, transforms, loader, mixup, demo data."""
from .auto_augment import (
    AugmentOp,
    AutoAugment,
    RandAugment,
    augment_from_string,
    auto_augment_policy,
    auto_augment_transform,
    rand_augment_transform,
)
from .constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from .dataset import IMG_EXTENSIONS, Dataset, ImageDataset, ImageReadError, find_images_and_targets
from .demo import DEMO_KINDS, demo_class_names, make_demo_dataset
from .loader import (ImageLoader, ShardedBatchSampler, UnreadableImagesError, create_loader,
                     fast_collate)
from .mixup import Mixup, mixup_target, one_hot
from .random_erasing import RandomErasing
from .random_state import AugRandom, augmentation_rng, seed_augmentation
from .transforms import (
    COLOR_ORDERS,
    CenterCrop,
    ColorJitter,
    Compose,
    PixelNormalization,
    RandomHorizontalFlip,
    RandomResizedCropAndInterpolation,
    Resize,
    ToNormalizedArray,
    ToNumpy,
)
from .transforms_factory import create_transform, transforms_imagenet_eval, transforms_imagenet_train

__all__ = [
    "AugRandom",
    "COLOR_ORDERS",
    "AugmentOp",
    "AutoAugment",
    "CenterCrop",
    "ColorJitter",
    "Compose",
    "DEFAULT_CROP_PCT",
    "DEMO_KINDS",
    "Dataset",
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "IMG_EXTENSIONS",
    "ImageDataset",
    "ImageLoader",
    "ImageReadError",
    "Mixup",
    "PixelNormalization",
    "RandAugment",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomResizedCropAndInterpolation",
    "Resize",
    "ShardedBatchSampler",
    "ToNormalizedArray",
    "ToNumpy",
    "UnreadableImagesError",
    "augment_from_string",
    "augmentation_rng",
    "auto_augment_policy",
    "auto_augment_transform",
    "create_loader",
    "create_transform",
    "demo_class_names",
    "fast_collate",
    "find_images_and_targets",
    "make_demo_dataset",
    "mixup_target",
    "one_hot",
    "rand_augment_transform",
    "seed_augmentation",
    "transforms_imagenet_eval",
    "transforms_imagenet_train",
]
