"""Training and evaluation pipelines: ImageNet-style data (timm 0.1.20's ``create_transform``) and
CIFAR (the DARTS family's random crop with padding, flip and Cutout)."""
import math
from typing import Optional, Sequence, Tuple, Union

from .auto_augment import augment_from_string
from .constants import (CIFAR10_DEFAULT_MEAN, CIFAR10_DEFAULT_STD, DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN,
                        IMAGENET_DEFAULT_STD)
from .cutout import Cutout
from .random_erasing import RandomErasing
from .random_state import AugRandom
from .transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCropAndInterpolation,
    Resize,
    ToNormalizedArray,
    ToNumpy,
    pair,
)

ColorJitterArg = Union[None, float, Sequence[float]]
PIPELINES = ("imagenet", "cifar")
_DEFAULT_MEAN_STD = {"imagenet": (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD),
                     "cifar": (CIFAR10_DEFAULT_MEAN, CIFAR10_DEFAULT_STD)}


def pipeline_mean_std(pipeline: str, mean: Optional[Sequence[float]] = None,
                      std: Optional[Sequence[float]] = None) -> Tuple[Sequence[float], Sequence[float]]:
    """``mean``/``std``, or the pipeline's defaults (ImageNet's or CIFAR-10's statistics) for None."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}: use one of {PIPELINES}")
    default_mean, default_std = _DEFAULT_MEAN_STD[pipeline]
    return (default_mean if mean is None else mean), (default_std if std is None else std)


def _color_jitter(strength: ColorJitterArg, rng: Optional[AugRandom]) -> Optional[ColorJitter]:
    if strength is None:
        return None
    if isinstance(strength, (int, float)):
        strengths = (float(strength),) * 3
    else:
        strengths = tuple(float(s) for s in strength)
        if len(strengths) not in (3, 4):
            raise ValueError(
                f"color_jitter must be a number or (brightness, contrast, saturation[, hue]), got {strength!r}"
            )
    return ColorJitter(*strengths, rng=rng)


def transforms_imagenet_train(
    img_size: Union[int, Tuple[int, int]] = 224,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    color_jitter: ColorJitterArg = 0.4,
    auto_augment: Optional[str] = None,
    interpolation: str = "random",
    use_prefetcher: bool = False,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    re_prob: float = 0.0,
    re_mode: str = "const",
    re_count: int = 1,
    rng: Optional[AugRandom] = None,
    max_pixel_value: float = 255.0,
    color_order: str = "rgb",
) -> Compose:
    """Random resized crop, horizontal flip, then auto-augmentation or colour jitter, then to array.

    With ``use_prefetcher`` the result is a uint8 RGB ``[3, H, W]`` array and the loader normalises
    and erases whole batches; otherwise a float32 array normalised by ``PixelNormalization(mean,
    std, max_pixel_value, color_order)``, randomly erased here.
    """
    normalization = ToNormalizedArray(mean, std, max_pixel_value, color_order)  # checks the arguments
    steps = [
        RandomResizedCropAndInterpolation(img_size, scale=scale, ratio=ratio, interpolation=interpolation, rng=rng),
        RandomHorizontalFlip(rng=rng),
    ]
    if auto_augment:
        # the fill colour is the mean as a fraction of 255
        fill = [m * max_pixel_value / 255.0 for m in mean]
        steps.append(augment_from_string(auto_augment, pair(img_size), fill, interpolation, rng=rng))
    else:
        # Colour jitter only without auto-augmentation, as in timm.
        jitter = _color_jitter(color_jitter, rng)
        if jitter is not None and jitter.active:
            steps.append(jitter)
    if use_prefetcher:
        steps.append(ToNumpy())
    else:
        steps.append(normalization)
        if re_prob > 0:
            steps.append(RandomErasing(re_prob, mode=re_mode, max_count=re_count, rng=rng))
    return Compose(steps)


def eval_resize_size(img_size: Union[int, Tuple[int, int]], crop_pct: Optional[float] = None):
    """Resize target before the centre crop: the shorter side for square crops, else (h, w)."""
    crop_pct = crop_pct or DEFAULT_CROP_PCT
    height, width = pair(img_size)
    if height == width:
        return int(math.floor(height / crop_pct))
    return int(height / crop_pct), int(width / crop_pct)


def transforms_imagenet_eval(
    img_size: Union[int, Tuple[int, int]] = 224,
    crop_pct: Optional[float] = None,
    interpolation: str = "bilinear",
    use_prefetcher: bool = False,
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    max_pixel_value: float = 255.0,
    color_order: str = "rgb",
) -> Compose:
    """Resize the shorter side to ``size / crop_pct`` (default 0.875), centre crop ``size``, to array
    (uint8 RGB with ``use_prefetcher``, else normalised as in ``transforms_imagenet_train``)."""
    normalization = ToNormalizedArray(mean, std, max_pixel_value, color_order)  # checks the arguments
    # timm resolves 'random' to bilinear outside training crops.
    interpolation = "bilinear" if interpolation == "random" else interpolation
    steps = [Resize(eval_resize_size(img_size, crop_pct), interpolation), CenterCrop(img_size)]
    steps.append(ToNumpy() if use_prefetcher else normalization)
    return Compose(steps)


def transforms_cifar_train(
    img_size: Union[int, Tuple[int, int]] = 32,
    padding: int = 4,
    use_prefetcher: bool = False,
    mean: Sequence[float] = CIFAR10_DEFAULT_MEAN,
    std: Sequence[float] = CIFAR10_DEFAULT_STD,
    cutout_length: int = 0,
    rng: Optional[AugRandom] = None,
) -> Compose:
    """Random crop of ``img_size`` from the image padded by ``padding``, horizontal flip, then to
    array; ``cutout_length`` > 0 adds Cutout after normalisation (here, or on the loader's batches
    with ``use_prefetcher``, which stops at uint8)."""
    steps = [RandomCrop(img_size, padding=padding, rng=rng), RandomHorizontalFlip(rng=rng)]
    if use_prefetcher:
        steps.append(ToNumpy())
    else:
        steps.append(ToNormalizedArray(mean, std))
        if cutout_length > 0:
            steps.append(Cutout(cutout_length, rng=rng))
    return Compose(steps)


def transforms_cifar_eval(
    use_prefetcher: bool = False,
    mean: Sequence[float] = CIFAR10_DEFAULT_MEAN,
    std: Sequence[float] = CIFAR10_DEFAULT_STD,
) -> Compose:
    """The image as it is, to array."""
    return Compose([ToNumpy() if use_prefetcher else ToNormalizedArray(mean, std)])


def create_transform(
    input_size: Union[int, Sequence[int]],
    is_training: bool = False,
    use_prefetcher: bool = False,
    color_jitter: ColorJitterArg = 0.4,
    auto_augment: Optional[str] = None,
    interpolation: str = "bilinear",
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    re_prob: float = 0.0,
    re_mode: str = "const",
    re_count: int = 1,
    crop_pct: Optional[float] = None,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    rng: Optional[AugRandom] = None,
    max_pixel_value: float = 255.0,
    color_order: str = "rgb",
    pipeline: str = "imagenet",
    cutout_length: int = 0,
) -> Compose:
    """The per-image pipeline: PIL RGB image -> array ``[3, H, W]``.

    ``input_size`` is an int, ``(H, W)`` or ``(C, H, W)``. ``pipeline='imagenet'``: training is a
    random resized crop with ``interpolation`` ('random' = bilinear or bicubic per image), flip,
    ``auto_augment`` ('rand-m9-mstd0.5', 'original', 'v0', ...) or else colour jitter, normalise,
    random erasing with ``re_prob``/``re_mode``/``re_count``; eval resizes to ``size / crop_pct``
    and centre crops. Normalisation is ``(pixel / max_pixel_value - mean) / std`` with channels in
    ``color_order`` (``pimm.data.transforms.PixelNormalization``; ``mean=(0, 0, 0), std=(1, 1, 1),
    max_pixel_value=1, color_order='bgr'`` gives the raw BGR 0-255 input of official SPOS).
    ``pipeline='cifar'``: training is a random crop with 4 pixels of padding, flip, normalise and
    Cutout of ``cutout_length`` (0: none); eval only normalises (the ImageNet crop, colour,
    interpolation and pixel-format options do not apply). ``mean``/``std`` default to the
    pipeline's dataset statistics. ``use_prefetcher`` stops at uint8 and leaves normalising,
    erasing and Cutout to the loader.
    """
    mean, std = pipeline_mean_std(pipeline, mean, std)
    if isinstance(input_size, int):
        img_size = input_size
    else:
        img_size = tuple(int(s) for s in input_size[-2:])
    if pipeline == "cifar":
        if auto_augment or re_prob > 0:
            raise ValueError("auto_augment and random erasing are not part of the cifar pipeline; use "
                             "cutout_length, or pipeline='imagenet'")
        if max_pixel_value != 255.0 or color_order != "rgb":
            raise ValueError("the cifar pipeline reads RGB pixels scaled to [0, 1]; max_pixel_value "
                             "and color_order apply to pipeline='imagenet' only")
        if not is_training:
            return transforms_cifar_eval(use_prefetcher=use_prefetcher, mean=mean, std=std)
        return transforms_cifar_train(img_size, use_prefetcher=use_prefetcher, mean=mean, std=std,
                                      cutout_length=cutout_length, rng=rng)
    if cutout_length > 0:
        raise ValueError("Cutout is part of the cifar pipeline; with pipeline='imagenet' use random "
                         "erasing (re_prob)")
    if is_training:
        return transforms_imagenet_train(
            img_size,
            scale=scale,
            ratio=ratio,
            color_jitter=color_jitter,
            auto_augment=auto_augment,
            interpolation=interpolation,
            use_prefetcher=use_prefetcher,
            mean=mean,
            std=std,
            re_prob=re_prob,
            re_mode=re_mode,
            re_count=re_count,
            rng=rng,
            max_pixel_value=max_pixel_value,
            color_order=color_order,
        )
    return transforms_imagenet_eval(
        img_size, crop_pct=crop_pct, interpolation=interpolation, use_prefetcher=use_prefetcher, mean=mean, std=std,
        max_pixel_value=max_pixel_value, color_order=color_order,
    )
