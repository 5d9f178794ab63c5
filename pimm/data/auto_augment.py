"""RandAugment and AutoAugment on PIL images, with timm 0.1.20's operations and level scaling.

Magnitudes run from 0 to 10 (``MAX_LEVEL``); ``magnitude_std`` adds Gaussian noise to the magnitude
of every applied op (clipped to [0, 10]). Geometric ops fill uncovered pixels with ``img_mean`` (the
dataset mean as uint8) and resample with the configured interpolation, or a random choice of
bilinear/bicubic per op.
"""
import re
from functools import partial
from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from .random_state import AugRandom, resolve_rng
from .transforms import RANDOM_INTERPOLATIONS, pil_interpolation

MAX_LEVEL = 10.0
_DEFAULT_FILL = (128, 128, 128)
_DEFAULT_HPARAMS = {"translate_const": 250, "img_mean": _DEFAULT_FILL}
Fill = Tuple[int, int, int]


def _affine(img: Image.Image, matrix, fill: Fill, resample: int) -> Image.Image:
    return img.transform(img.size, Image.AFFINE, matrix, resample=resample, fillcolor=fill)


def _shear_x(img, factor, fill, resample):
    return _affine(img, (1, factor, 0, 0, 1, 0), fill, resample)


def _shear_y(img, factor, fill, resample):
    return _affine(img, (1, 0, 0, factor, 1, 0), fill, resample)


def _translate_x(img, pixels, fill, resample):
    return _affine(img, (1, 0, pixels, 0, 1, 0), fill, resample)


def _translate_y(img, pixels, fill, resample):
    return _affine(img, (1, 0, 0, 0, 1, pixels), fill, resample)


def _translate_x_rel(img, fraction, fill, resample):
    return _translate_x(img, fraction * img.width, fill, resample)


def _translate_y_rel(img, fraction, fill, resample):
    return _translate_y(img, fraction * img.height, fill, resample)


def _rotate(img, degrees, fill, resample):
    return img.rotate(degrees, resample=resample, fillcolor=fill)


def _auto_contrast(img, _arg, _fill, _resample):
    return ImageOps.autocontrast(img)


def _equalize(img, _arg, _fill, _resample):
    return ImageOps.equalize(img)


def _invert(img, _arg, _fill, _resample):
    return ImageOps.invert(img)


def _solarize(img, threshold, _fill, _resample):
    return ImageOps.solarize(img, threshold)


def _solarize_add(img, addition, _fill, _resample, threshold: int = 128):
    lut = [min(255, v + addition) if v < threshold else v for v in range(256)]
    return img.point(lut * len(img.getbands()))


def _posterize(img, bits, _fill, _resample):
    return img if bits >= 8 else ImageOps.posterize(img, bits)


def _enhance(kind, img, factor, _fill, _resample):
    return kind(img).enhance(factor)


def _enhancer(kind) -> Callable:
    # A partial of a module-level function, so transforms pickle (for spawned loader workers).
    return partial(_enhance, kind)


# Level -> argument. `rng` is only used for the random sign of symmetric ops.
def _signed(value: float, rng: AugRandom) -> float:
    return -value if rng.py.random() > 0.5 else value


def _rotate_arg(level, _hp, rng):
    return _signed(level / MAX_LEVEL * 30.0, rng)


def _enhance_arg(level, _hp, _rng):
    return level / MAX_LEVEL * 1.8 + 0.1


def _enhance_increasing_arg(level, _hp, rng):
    return 1.0 + _signed(level / MAX_LEVEL * 0.9, rng)


def _shear_arg(level, _hp, rng):
    return _signed(level / MAX_LEVEL * 0.3, rng)


def _translate_abs_arg(level, hparams, rng):
    return _signed(level / MAX_LEVEL * float(hparams["translate_const"]), rng)


def _translate_rel_arg(level, hparams, rng):
    return _signed(level / MAX_LEVEL * hparams.get("translate_pct", 0.45), rng)


def _posterize_arg(level, _hp, _rng):
    # TF TPU EfficientNet: keep 0..4 most significant bits, fewer bits (stronger) at LOWER levels.
    return int(level / MAX_LEVEL * 4)


def _posterize_increasing_arg(level, hparams, rng):
    return 4 - _posterize_arg(level, hparams, rng)


def _posterize_original_arg(level, hparams, rng):
    # AutoAugment paper: keep 4..8 bits.
    return _posterize_arg(level, hparams, rng) + 4


def _solarize_arg(level, _hp, _rng):
    return int(level / MAX_LEVEL * 256)


def _solarize_increasing_arg(level, hparams, rng):
    return 256 - _solarize_arg(level, hparams, rng)


def _solarize_add_arg(level, _hp, _rng):
    return int(level / MAX_LEVEL * 110)


class _OpSpec(NamedTuple):
    apply: Callable
    level_to_arg: Optional[Callable]
    geometric: bool = False


OPS: Dict[str, _OpSpec] = {
    "AutoContrast": _OpSpec(_auto_contrast, None),
    "Equalize": _OpSpec(_equalize, None),
    "Invert": _OpSpec(_invert, None),
    "Rotate": _OpSpec(_rotate, _rotate_arg, True),
    "Posterize": _OpSpec(_posterize, _posterize_arg),
    "PosterizeIncreasing": _OpSpec(_posterize, _posterize_increasing_arg),
    "PosterizeOriginal": _OpSpec(_posterize, _posterize_original_arg),
    "Solarize": _OpSpec(_solarize, _solarize_arg),
    "SolarizeIncreasing": _OpSpec(_solarize, _solarize_increasing_arg),
    "SolarizeAdd": _OpSpec(_solarize_add, _solarize_add_arg),
    "Color": _OpSpec(_enhancer(ImageEnhance.Color), _enhance_arg),
    "ColorIncreasing": _OpSpec(_enhancer(ImageEnhance.Color), _enhance_increasing_arg),
    "Contrast": _OpSpec(_enhancer(ImageEnhance.Contrast), _enhance_arg),
    "ContrastIncreasing": _OpSpec(_enhancer(ImageEnhance.Contrast), _enhance_increasing_arg),
    "Brightness": _OpSpec(_enhancer(ImageEnhance.Brightness), _enhance_arg),
    "BrightnessIncreasing": _OpSpec(_enhancer(ImageEnhance.Brightness), _enhance_increasing_arg),
    "Sharpness": _OpSpec(_enhancer(ImageEnhance.Sharpness), _enhance_arg),
    "SharpnessIncreasing": _OpSpec(_enhancer(ImageEnhance.Sharpness), _enhance_increasing_arg),
    "ShearX": _OpSpec(_shear_x, _shear_arg, True),
    "ShearY": _OpSpec(_shear_y, _shear_arg, True),
    "TranslateX": _OpSpec(_translate_x, _translate_abs_arg, True),
    "TranslateY": _OpSpec(_translate_y, _translate_abs_arg, True),
    "TranslateXRel": _OpSpec(_translate_x_rel, _translate_rel_arg, True),
    "TranslateYRel": _OpSpec(_translate_y_rel, _translate_rel_arg, True),
}


class AugmentOp:
    """One named op applied with probability ``prob`` at ``magnitude`` (0..10).

    ``hparams``: ``img_mean`` (fill colour), ``interpolation`` (PIL filter; default: random
    bilinear/bicubic per call), ``translate_const`` (pixels at level 10 for absolute translation),
    ``translate_pct`` (fraction at level 10 for relative translation), ``magnitude_std``.
    """

    def __init__(
        self,
        name: str,
        prob: float = 0.5,
        magnitude: float = 10,
        hparams: Optional[Mapping] = None,
        rng: Optional[AugRandom] = None,
    ) -> None:
        if name not in OPS:
            raise ValueError(f"unknown augmentation op {name!r}: use one of {sorted(OPS)}")
        self.name = name
        self.spec = OPS[name]
        self.prob = prob
        self.magnitude = magnitude
        self.hparams = dict(hparams if hparams is not None else _DEFAULT_HPARAMS)
        self.fill = tuple(self.hparams.get("img_mean", _DEFAULT_FILL))
        interpolation = self.hparams.get("interpolation")
        self.resamples = RANDOM_INTERPOLATIONS if interpolation is None else (interpolation,)
        self.magnitude_std = float(self.hparams.get("magnitude_std", 0.0))
        self.rng = rng

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = resolve_rng(self.rng)
        if self.prob < 1.0 and rng.py.random() > self.prob:
            return img
        level = self.magnitude
        if self.magnitude_std > 0:
            level = rng.py.gauss(level, self.magnitude_std)
        level = min(MAX_LEVEL, max(0.0, level))
        arg = self.spec.level_to_arg(level, self.hparams, rng) if self.spec.level_to_arg else None
        resample = None
        if self.spec.geometric:
            resample = rng.py.choice(self.resamples) if len(self.resamples) > 1 else self.resamples[0]
        return self.spec.apply(img, arg, self.fill, resample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name}, p={self.prob}, m={self.magnitude}, mstd={self.magnitude_std})"


RAND_OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
    "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)
# 'inc1': the same ops, with levels whose strength grows with magnitude.
_INCREASING = {
    name: name + "Increasing" for name in ("Posterize", "Solarize", "Color", "Contrast", "Brightness", "Sharpness")
}
RAND_INCREASING_OPS = tuple(_INCREASING.get(name, name) for name in RAND_OPS)
# 'w0': timm's experimental op-choice weights (ops are then drawn without replacement).
_RAND_CHOICE_WEIGHTS = {
    "Rotate": 0.3, "ShearX": 0.2, "ShearY": 0.2, "TranslateXRel": 0.1, "TranslateYRel": 0.1,
    "Color": 0.025, "Sharpness": 0.025, "AutoContrast": 0.025, "Solarize": 0.005, "SolarizeAdd": 0.005,
    "Contrast": 0.005, "Brightness": 0.005, "Equalize": 0.005, "Posterize": 0.0, "Invert": 0.0,
}


class RandAugment:
    """Apply ``num_layers`` ops drawn from ``ops`` (uniformly with replacement, or by ``choice_weights``
    without replacement)."""

    def __init__(
        self,
        ops: Sequence[AugmentOp],
        num_layers: int = 2,
        choice_weights: Optional[Sequence[float]] = None,
        rng: Optional[AugRandom] = None,
    ) -> None:
        self.ops = list(ops)
        self.num_layers = num_layers
        self.choice_weights = None if choice_weights is None else np.asarray(choice_weights, dtype=np.float64)
        self.rng = rng

    def __call__(self, img: Image.Image) -> Image.Image:
        rng = resolve_rng(self.rng)
        if self.choice_weights is None:
            chosen = rng.py.choices(self.ops, k=self.num_layers)
        else:
            picks = rng.np.choice(len(self.ops), self.num_layers, replace=False, p=self.choice_weights)
            chosen = [self.ops[i] for i in picks]
        for op in chosen:
            img = op(img)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.num_layers}, ops={[op.name for op in self.ops]})"


class AutoAugment:
    """Apply one randomly chosen sub-policy (a sequence of ops, each with its own probability)."""

    def __init__(self, policy: Sequence[Sequence[AugmentOp]], rng: Optional[AugRandom] = None) -> None:
        self.policy = [list(sub) for sub in policy]
        self.rng = rng

    def __call__(self, img: Image.Image) -> Image.Image:
        for op in resolve_rng(self.rng).py.choice(self.policy):
            img = op(img)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.policy)} sub-policies)"


# Sub-policies as ((op, probability, magnitude), (op, probability, magnitude)).
# 'v0': the ImageNet policy of the TF TPU EfficientNet code.
_POLICY_V0 = (
    (("Equalize", 0.8, 1), ("ShearY", 0.8, 4)),
    (("Color", 0.4, 9), ("Equalize", 0.6, 3)),
    (("Color", 0.4, 1), ("Rotate", 0.6, 8)),
    (("Solarize", 0.8, 3), ("Equalize", 0.4, 7)),
    (("Solarize", 0.4, 2), ("Solarize", 0.6, 2)),
    (("Color", 0.2, 0), ("Equalize", 0.8, 8)),
    (("Equalize", 0.4, 8), ("SolarizeAdd", 0.8, 3)),
    (("ShearX", 0.2, 9), ("Rotate", 0.6, 8)),
    (("Color", 0.6, 1), ("Equalize", 1.0, 2)),
    (("Invert", 0.4, 9), ("Rotate", 0.6, 0)),
    (("Equalize", 1.0, 9), ("ShearY", 0.6, 3)),
    (("Color", 0.4, 7), ("Equalize", 0.6, 0)),
    (("Posterize", 0.4, 6), ("AutoContrast", 0.4, 7)),
    (("Solarize", 0.6, 8), ("Color", 0.6, 9)),
    (("Solarize", 0.2, 4), ("Rotate", 0.8, 9)),
    (("Rotate", 1.0, 7), ("TranslateYRel", 0.8, 9)),
    (("ShearX", 0.0, 0), ("Solarize", 0.8, 4)),
    (("ShearY", 0.8, 0), ("Color", 0.6, 4)),
    (("Color", 1.0, 0), ("Rotate", 0.6, 2)),
    (("Equalize", 0.8, 4), ("Equalize", 0.0, 8)),
    (("Equalize", 1.0, 4), ("AutoContrast", 0.6, 2)),
    (("ShearY", 0.4, 7), ("SolarizeAdd", 0.6, 7)),
    (("Posterize", 0.8, 2), ("Solarize", 0.6, 10)),
    (("Solarize", 0.6, 8), ("Equalize", 0.6, 1)),
    (("Color", 0.8, 6), ("Rotate", 0.4, 5)),
)
# 'original': the ImageNet policy of the AutoAugment paper (arXiv:1805.09501).
_POLICY_ORIGINAL = (
    (("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)
# The 'r' variants swap in the research-code posterize, whose strength grows with magnitude.
_RESEARCH_POSTERIZE = {"Posterize": "PosterizeIncreasing", "PosterizeOriginal": "PosterizeIncreasing"}


def _with_research_posterize(policy):
    return tuple(tuple((_RESEARCH_POSTERIZE.get(n, n), p, m) for n, p, m in sub) for sub in policy)


AUTO_AUGMENT_POLICIES = {
    "v0": _POLICY_V0,
    "v0r": _with_research_posterize(_POLICY_V0),
    "original": _POLICY_ORIGINAL,
    "originalr": _with_research_posterize(_POLICY_ORIGINAL),
}


def auto_augment_policy(
    name: str = "v0", hparams: Optional[Mapping] = None, rng: Optional[AugRandom] = None
) -> List[List[AugmentOp]]:
    if name not in AUTO_AUGMENT_POLICIES:
        raise ValueError(f"unknown AutoAugment policy {name!r}: use one of {sorted(AUTO_AUGMENT_POLICIES)}")
    return [
        [AugmentOp(op, prob, magnitude, hparams=hparams, rng=rng) for op, prob, magnitude in sub]
        for sub in AUTO_AUGMENT_POLICIES[name]
    ]


def _parse_sections(config_str: str, kind: str, allowed: Sequence[str]) -> Tuple[str, Dict[str, str]]:
    """Split 'name-key1val1-key2val2' into name and {key: value}; keys are letters, values start with a digit."""
    parts = config_str.split("-")
    values = {}
    for section in parts[1:]:
        match = re.fullmatch(r"([a-z]+)(\d.*)", section)
        if match is None or match.group(1) not in allowed:
            raise ValueError(
                f"bad {kind} section {section!r} in {config_str!r}: expected <key><number> with key in "
                f"{list(allowed)}, e.g. 'rand-m9-n2-mstd0.5' or 'original-mstd0.5'"
            )
        values[match.group(1)] = match.group(2)
    return parts[0], values


def rand_augment_transform(
    config_str: str, hparams: Optional[Mapping] = None, rng: Optional[AugRandom] = None
) -> RandAugment:
    """RandAugment from a spec such as ``'rand-m9-n2-mstd0.5-inc1'``.

    Sections: ``m`` magnitude (default 10), ``n`` ops per image (default 2), ``mstd`` magnitude noise
    std, ``inc`` 1 to use the increasing-strength op variants, ``w`` index of op-choice weights (0).
    """
    name, values = _parse_sections(config_str, "RandAugment", ("m", "n", "mstd", "inc", "w"))
    if name != "rand":
        raise ValueError(f"RandAugment spec must start with 'rand-', got {config_str!r}")
    hparams = dict(hparams if hparams is not None else _DEFAULT_HPARAMS)
    try:
        magnitude = float(values.get("m", MAX_LEVEL))
        num_layers = int(values.get("n", 2))
        if "mstd" in values:
            hparams.setdefault("magnitude_std", float(values["mstd"]))
        # timm 0.1.20 reads 'inc0' as on (bool of a non-empty string); 0 means off here.
        increasing = bool(int(values.get("inc", 0)))
        weight_idx = int(values["w"]) if "w" in values else None
    except ValueError:
        raise ValueError(f"bad number in RandAugment spec {config_str!r}") from None
    if weight_idx not in (None, 0):
        raise ValueError(f"RandAugment spec {config_str!r}: only op-choice weights 'w0' exist")
    names = RAND_INCREASING_OPS if increasing else RAND_OPS
    ops = [AugmentOp(op, prob=0.5, magnitude=magnitude, hparams=hparams, rng=rng) for op in names]
    weights = None
    if weight_idx is not None:
        raw = np.asarray([_RAND_CHOICE_WEIGHTS[base] for base in RAND_OPS], dtype=np.float64)
        weights = raw / raw.sum()
    return RandAugment(ops, num_layers, choice_weights=weights, rng=rng)


def auto_augment_transform(
    config_str: str, hparams: Optional[Mapping] = None, rng: Optional[AugRandom] = None
) -> AutoAugment:
    """AutoAugment from a spec ``'<policy>[-mstd<std>]'``, policy one of v0, v0r, original, originalr."""
    name, values = _parse_sections(config_str, "AutoAugment", ("mstd",))
    hparams = dict(hparams if hparams is not None else _DEFAULT_HPARAMS)
    if "mstd" in values:
        hparams.setdefault("magnitude_std", float(values["mstd"]))
    return AutoAugment(auto_augment_policy(name, hparams, rng=rng), rng=rng)


def augment_from_string(
    config_str: str,
    img_size: Tuple[int, int],
    mean: Sequence[float],
    interpolation: str = "random",
    rng: Optional[AugRandom] = None,
):
    """The training pipeline's auto-augmentation: 'rand-...' is RandAugment, a policy name AutoAugment.

    Translations reach 45% of the smaller image side at level 10, fills use the mean colour, and
    geometric ops use ``interpolation`` unless it is 'random'.
    """
    hparams = {
        "translate_const": int(min(img_size) * 0.45),
        "img_mean": tuple(min(255, round(255 * m)) for m in mean),
    }
    if interpolation and interpolation != "random":
        hparams["interpolation"] = pil_interpolation(interpolation)
    if config_str.startswith("rand"):
        return rand_augment_transform(config_str, hparams, rng=rng)
    if config_str.startswith("augmix"):
        raise ValueError(
            f"auto_augment {config_str!r}: AugMix is not supported; use 'rand-...' or an AutoAugment policy"
        )
    return auto_augment_transform(config_str, hparams, rng=rng)
