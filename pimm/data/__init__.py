"""Data pipeline (timm 0.1.20 semantics on Paddle): folder and CIFAR-10 datasets, transforms, loader, mixup,
demo data, class and image subsets of a tree (subImageNet)."""
from .auto_augment import (
    AugmentOp,
    AutoAugment,
    RandAugment,
    augment_from_string,
    auto_augment_policy,
    auto_augment_transform,
    rand_augment_transform,
)
from .cifar import CIFAR10, CIFAR10_CLASSES, CifarFormatError, read_cifar_batch, write_cifar_batch
from .constants import (CIFAR10_DEFAULT_MEAN, CIFAR10_DEFAULT_STD, DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN,
                        IMAGENET_DEFAULT_STD)
from .cutout import Cutout
from .dataset import IMG_EXTENSIONS, Dataset, ImageDataset, ImageReadError, find_images_and_targets
from .demo import DEMO_KINDS, demo_class_names, make_demo_dataset
from .demo_cifar import make_demo_cifar
from .loader import (ImageLoader, ShardedBatchSampler, UnreadableImagesError, create_loader,
                     fast_collate)
from .mixup import Mixup, mixup_target, one_hot
from .profile import pipeline_stage_times
from .random_erasing import RandomErasing
from .random_state import AugRandom, augmentation_rng, seed_augmentation
from .subset import SUBSET_MANIFEST, SubsetError, SubsetSummary, make_image_subset, read_subset_lists
from .transforms import (
    COLOR_ORDERS,
    CenterCrop,
    ColorJitter,
    Compose,
    PixelNormalization,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCropAndInterpolation,
    Resize,
    ToNormalizedArray,
    ToNumpy,
)
from .transforms_factory import (
    PIPELINES,
    create_transform,
    transforms_cifar_eval,
    transforms_cifar_train,
    transforms_imagenet_eval,
    transforms_imagenet_train,
)

__all__ = [
    "AugRandom",
    "COLOR_ORDERS",
    "AugmentOp",
    "AutoAugment",
    "CIFAR10",
    "CIFAR10_CLASSES",
    "CIFAR10_DEFAULT_MEAN",
    "CIFAR10_DEFAULT_STD",
    "CenterCrop",
    "CifarFormatError",
    "ColorJitter",
    "Compose",
    "Cutout",
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
    "PIPELINES",
    "RandAugment",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomResizedCropAndInterpolation",
    "SUBSET_MANIFEST",
    "SubsetError",
    "SubsetSummary",
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
    "make_demo_cifar",
    "make_demo_dataset",
    "mixup_target",
    "one_hot",
    "pipeline_stage_times",
    "rand_augment_transform",
    "read_cifar_batch",
    "read_subset_lists",
    "make_image_subset",
    "seed_augmentation",
    "transforms_cifar_eval",
    "transforms_cifar_train",
    "transforms_imagenet_eval",
    "transforms_imagenet_train",
    "write_cifar_batch",
]
