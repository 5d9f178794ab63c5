"""Training and evaluation pipelines for ImageNet-style data (timm 0.1.20's ``create_transform``)."""
import math
from typing import Optional, Sequence, Tuple, Union

from .auto_augment import augment_from_string
from .constants import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from .random_erasing import RandomErasing
from .random_state import AugRandom
from .transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    RandomHorizontalFlip,
    RandomResizedCropAndInterpolation,
    Resize,
    ToNormalizedArray,
    ToNumpy,
    pair,
)

ColorJitterArg = Union[None, float, Sequence[float]]


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


def create_transform(
    input_size: Union[int, Sequence[int]],
    is_training: bool = False,
    use_prefetcher: bool = False,
    color_jitter: ColorJitterArg = 0.4,
    auto_augment: Optional[str] = None,
    interpolation: str = "bilinear",
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    re_prob: float = 0.0,
    re_mode: str = "const",
    re_count: int = 1,
    crop_pct: Optional[float] = None,
    scale: Tuple[float, float] = (0.08, 1.0),
    ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    rng: Optional[AugRandom] = None,
    max_pixel_value: float = 255.0,
    color_order: str = "rgb",
) -> Compose:
    """The per-image pipeline: PIL RGB image -> array ``[3, H, W]``.

    ``input_size`` is an int, ``(H, W)`` or ``(C, H, W)``. Training: random resized crop with
    ``interpolation`` ('random' = bilinear or bicubic per image), flip, ``auto_augment``
    ('rand-m9-mstd0.5', 'original', 'v0', ...) or else colour jitter, normalise, random erasing with
    ``re_prob``/``re_mode``/``re_count``. Eval: resize to ``size / crop_pct``, centre crop, normalise.
    ``use_prefetcher`` stops at uint8 and leaves normalising and erasing to the loader.
    Normalisation is ``(pixel / max_pixel_value - mean) / std`` with channels in ``color_order``
    (``pimm.data.transforms.PixelNormalization``; ``mean=(0, 0, 0), std=(1, 1, 1),
    max_pixel_value=1, color_order='bgr'`` gives the raw BGR 0-255 input of official SPOS).
    """
    if isinstance(input_size, int):
        img_size = input_size
    else:
        img_size = tuple(int(s) for s in input_size[-2:])
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
