"""Per-image transforms on PIL images (torchvision/timm semantics, no torch).

Geometry and colour work stays in PIL on uint8 pixels; conversion to an array happens once at the
end (:class:`ToNumpy` keeps uint8 for the loader to normalise a whole batch, :class:`ToNormalizedArray`
does it per image). Random choices come from :mod:`pimm.data.random_state`.
"""
import math
from functools import partial
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageEnhance

from .random_state import AugRandom, resolve_rng

SizeLike = Union[int, Sequence[int]]

_PIL_INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "hamming": Image.HAMMING,
}
# 'random' picks one of these per image, as timm does for training crops.
RANDOM_INTERPOLATIONS = (Image.BILINEAR, Image.BICUBIC)


def pil_interpolation(name: str) -> int:
    """PIL resampling filter for an interpolation name."""
    try:
        return _PIL_INTERPOLATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown interpolation {name!r}: use one of {sorted(_PIL_INTERPOLATIONS)} (or 'random' for "
            "training crops)"
        ) from None


def pair(size: SizeLike) -> Tuple[int, int]:
    """(height, width) from an int or a 2-sequence."""
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f"image size must be an int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


class Compose:
    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img):
        for transform in self.transforms:
            img = transform(img)
        return img

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"{type(self).__name__}({inner}\n)"


class RandomResizedCropAndInterpolation:
    """Crop a random area and aspect ratio, resize it to ``size`` (timm/torchvision semantics).

    Ten tries draw an area fraction from ``scale`` and a log-uniform aspect ratio from ``ratio``;
    when none fits, fall back to the largest centred crop whose ratio lies within ``ratio``.
    ``interpolation='random'`` picks bilinear or bicubic per image.
    """

    def __init__(
        self,
        size: SizeLike,
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
        interpolation: str = "bilinear",
        rng: Optional[AugRandom] = None,
    ) -> None:
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError(f"scale {scale} and ratio {ratio} must be (min, max) ranges")
        self.size = pair(size)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.interpolation = interpolation
        self.resamples = RANDOM_INTERPOLATIONS if interpolation == "random" else (pil_interpolation(interpolation),)
        self.rng = rng

    def get_params(self, width: int, height: int, rng: AugRandom) -> Tuple[int, int, int, int]:
        """Crop box as (top, left, height, width)."""
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = rng.py.uniform(*self.scale) * area
            aspect = math.exp(rng.py.uniform(*log_ratio))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if w <= width and h <= height:
                return rng.py.randint(0, height - h), rng.py.randint(0, width - w), h, w
        in_ratio = width / height
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            w, h = int(round(height * self.ratio[1])), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = resolve_rng(self.rng)
        top, left, h, w = self.get_params(img.width, img.height, rng)
        resample = rng.py.choice(self.resamples) if len(self.resamples) > 1 else self.resamples[0]
        return img.crop((left, top, left + w, top + h)).resize(self.size[::-1], resample)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(size={self.size}, scale={self.scale}, ratio="
            f"{tuple(round(r, 4) for r in self.ratio)}, interpolation={self.interpolation})"
        )


class RandomCrop:
    """Crop ``size`` at a random place of the image padded by ``padding`` black pixels on every side
    (torchvision's ``RandomCrop(size, padding)``: each offset in ``0..2 * padding`` when the image
    already has the crop size)."""

    def __init__(self, size: SizeLike, padding: int = 0, rng: Optional[AugRandom] = None) -> None:
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding}")
        self.size = pair(size)
        self.padding = padding
        self.rng = rng

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = resolve_rng(self.rng)
        h, w = self.size
        pad = self.padding
        if img.height + 2 * pad < h or img.width + 2 * pad < w:
            raise ValueError(f"cannot crop {self.size} from a {img.height}x{img.width} image padded by {pad}")
        top = rng.py.randint(0, img.height + 2 * pad - h) - pad
        left = rng.py.randint(0, img.width + 2 * pad - w) - pad
        # PIL fills the part of the box outside the image with zeros: the padding.
        return img.crop((left, top, left + w, top + h))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, padding={self.padding})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5, rng: Optional[AugRandom] = None) -> None:
        self.p = p
        self.rng = rng

    def __call__(self, img: Image.Image) -> Image.Image:
        if resolve_rng(self.rng).py.random() < self.p:
            return img.transpose(Image.FLIP_LEFT_RIGHT)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def adjust_hue(img: Image.Image, hue_shift: float) -> Image.Image:
    """Rotate hue by ``hue_shift`` turns (in [-0.5, 0.5]) in PIL's 8-bit HSV, wrapping around."""
    hue, sat, val = img.convert("HSV").split()
    shifted = (np.asarray(hue, dtype=np.int16) + int(hue_shift * 255)) % 256
    hue = Image.fromarray(shifted.astype(np.uint8))
    return Image.merge("HSV", (hue, sat, val)).convert(img.mode)


def _enhance(kind, img: Image.Image, factor: float) -> Image.Image:
    return kind(img).enhance(factor)


class ColorJitter:
    """Random brightness, contrast, saturation (and hue) in random order, as torchvision's.

    Each strength ``v`` draws a factor uniformly from ``[max(0, 1 - v), 1 + v]`` (hue: a shift in
    ``[-v, v]``); a strength of 0 leaves that property alone.
    """

    def __init__(
        self,
        brightness: float = 0.0,
        contrast: float = 0.0,
        saturation: float = 0.0,
        hue: float = 0.0,
        rng: Optional[AugRandom] = None,
    ) -> None:
        if min(brightness, contrast, saturation, hue) < 0 or hue > 0.5:
            raise ValueError(
                f"color jitter strengths must be >= 0 and hue <= 0.5, got {(brightness, contrast, saturation, hue)}"
            )
        self.strengths = (brightness, contrast, saturation, hue)
        self.rng = rng
        self._ops = []
        # Partials of module-level functions keep the transform picklable (spawned loader workers).
        for strength, kind in zip(
            (brightness, contrast, saturation), (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)
        ):
            if strength > 0:
                self._ops.append((partial(_enhance, kind), (max(0.0, 1.0 - strength), 1.0 + strength)))
        if hue > 0:
            self._ops.append((adjust_hue, (-hue, hue)))

    @property
    def active(self) -> bool:
        """False when every strength is 0 (the jitter would change nothing)."""
        return bool(self._ops)

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = resolve_rng(self.rng)
        steps = [(op, rng.py.uniform(*bounds)) for op, bounds in self._ops]
        rng.py.shuffle(steps)
        for op, factor in steps:
            img = op(img, factor)
        return img

    def __repr__(self) -> str:
        b, c, s, h = self.strengths
        return f"{type(self).__name__}(brightness={b}, contrast={c}, saturation={s}, hue={h})"


class Resize:
    """Resize so the shorter side is ``size`` (int; aspect kept), or to exactly ``(height, width)``."""

    def __init__(self, size: SizeLike, interpolation: str = "bilinear") -> None:
        self.size = size if isinstance(size, int) else pair(size)
        self.interpolation = interpolation
        self.resample = pil_interpolation(interpolation)

    def __call__(self, img: Image.Image) -> Image.Image:
        width, height = img.size
        if isinstance(self.size, int):
            if width <= height:
                target = (self.size, int(self.size * height / width))
            else:
                target = (int(self.size * width / height), self.size)
        else:
            target = (self.size[1], self.size[0])
        return img if target == img.size else img.resize(target, self.resample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, interpolation={self.interpolation})"


class CenterCrop:
    """Central ``(height, width)`` crop; offsets rounded half-to-even like torchvision."""

    def __init__(self, size: SizeLike) -> None:
        self.size = pair(size)

    def __call__(self, img: Image.Image) -> Image.Image:
        crop_h, crop_w = self.size
        top = int(round((img.height - crop_h) / 2.0))
        left = int(round((img.width - crop_w) / 2.0))
        return img.crop((left, top, left + crop_w, top + crop_h))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class ToNumpy:
    """PIL RGB image -> uint8 array [3, H, W] (normalisation left to the loader, batch-wise)."""

    def __call__(self, img: Image.Image) -> np.ndarray:
        # A writable copy: PIL exposes its pixels as read-only bytes.
        return np.array(img, dtype=np.uint8).transpose(2, 0, 1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


COLOR_ORDERS = ("rgb", "bgr")


class PixelNormalization:
    """``(pixel / max_pixel_value - mean) / std`` per channel, then the channels in ``color_order``.

    ``mean``/``std`` are fractions of ``max_pixel_value`` and in RGB order whatever the output
    order (the ImageNet constants as usual). ``max_pixel_value=255`` is timm's ``/ 255``; mean 0,
    std 1 and ``max_pixel_value=1`` keep raw 0-255 values, which with ``color_order='bgr'`` is the
    input of networks trained on OpenCV images (the official SPOS checkpoints).
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], max_pixel_value: float = 255.0,
                 color_order: str = "rgb") -> None:
        if color_order not in COLOR_ORDERS:
            raise ValueError(f"color_order must be one of {COLOR_ORDERS}, got {color_order!r}")
        if not max_pixel_value > 0:
            raise ValueError(f"max_pixel_value must be positive, got {max_pixel_value}")
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_pixel_value = max_pixel_value
        self.color_order = color_order
        # One subtract and one multiply on the pixel values, instead of /max, -mean, /std.
        self._offset = np.asarray(mean, dtype=np.float32) * max_pixel_value
        self._scale = 1.0 / (np.asarray(std, dtype=np.float32) * max_pixel_value)

    def __call__(self, images: np.ndarray, channel_axis: int) -> np.ndarray:
        """Normalise float32 ``images`` in place along ``channel_axis``; returns the result."""
        shape = [1] * images.ndim
        shape[channel_axis] = -1
        images -= self._offset.reshape(shape)
        images *= self._scale.reshape(shape)
        if self.color_order == "bgr":
            images = np.ascontiguousarray(np.flip(images, axis=channel_axis))
        return images

    def __repr__(self) -> str:
        return (f"mean={self.mean}, std={self.std}, max_pixel_value={self.max_pixel_value}, "
                f"color_order={self.color_order!r}")


class ToNormalizedArray:
    """PIL RGB image -> float32 array [3, H, W] normalised by :class:`PixelNormalization`."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], max_pixel_value: float = 255.0,
                 color_order: str = "rgb") -> None:
        self.normalization = PixelNormalization(mean, std, max_pixel_value, color_order)

    def __call__(self, img: Image.Image) -> np.ndarray:
        arr = self.normalization(np.asarray(img, dtype=np.float32), channel_axis=-1)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.normalization!r})"
