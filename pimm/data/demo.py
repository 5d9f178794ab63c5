"""A small synthetic ImageNet-style dataset of drawn shapes and textures, for demos and tests.

``make_demo_dataset(root)`` writes ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG``.
Each class is a shape (circle, square, triangle, ring, cross, star, zigzag), drawn large near the
middle at a random size, rotation and offset, or a texture over the whole image (stripes,
checker, dots, gradient, blobs), in one random colour over another with light noise: colour carries
no label, shape and texture do, and they are recognisable at 32 px. Every image is a pure function
of (seed, class, split, index): the same arguments give byte-identical files with the same
Pillow/libjpeg.
"""
import hashlib
import json
import os
import shutil
from typing import Callable, Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

MANIFEST_NAME = "demo_manifest.json"
_FORMAT_VERSION = 2  # 2: large centred figures, whole-image textures
_SUPERSAMPLE = 2  # draw at twice the size and downsample, for anti-aliased edges
_SPLITS = ("train", "val")

Canvas = np.ndarray  # float32 [S, S, 3] in 0..255


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3).astype(np.float32)


def _contrasting(rng: np.random.Generator, other: np.ndarray, min_distance: float = 110.0) -> np.ndarray:
    colour = _colour(rng)
    for _ in range(32):
        if np.linalg.norm(colour - other) >= min_distance:
            break
        colour = _colour(rng)
    return colour


def _rotated(points: np.ndarray, angle: float, centre: Tuple[float, float]) -> List[Tuple[float, float]]:
    cos, sin = np.cos(angle), np.sin(angle)
    xs = points[:, 0] * cos - points[:, 1] * sin + centre[0]
    ys = points[:, 0] * sin + points[:, 1] * cos + centre[1]
    return list(zip(xs.tolist(), ys.tolist()))


def _regular_polygon(count: int, radius: float) -> np.ndarray:
    angles = np.arange(count) * (2 * np.pi / count)
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


class _Figure:
    """Random placement shared by the figure kinds: centre, radius (a fraction of the side), rotation.

    Figures are large and kept near the middle, so a crop of most of the image still shows them
    and the class is in the shape, not in where it happens to be.
    """

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        self.size = size
        self.radius = rng.uniform(0.26, 0.38) * size
        self.centre = tuple(size / 2 + rng.uniform(-0.12, 0.12, size=2) * size)
        self.angle = rng.uniform(0, 2 * np.pi)

    def box(self, scale: float = 1.0) -> Tuple[float, float, float, float]:
        r = self.radius * scale
        return (self.centre[0] - r, self.centre[1] - r, self.centre[0] + r, self.centre[1] + r)


def _mask(size: int, draw: Callable[[ImageDraw.ImageDraw], None]) -> np.ndarray:
    img = Image.new("L", (size, size), 0)
    draw(ImageDraw.Draw(img))
    return np.asarray(img, dtype=np.float32)[..., None] / 255.0


def _paint(canvas: Canvas, mask: np.ndarray, colour) -> Canvas:
    return canvas * (1.0 - mask) + mask * colour


def _polygon(fig: _Figure, points: np.ndarray) -> np.ndarray:
    return _mask(fig.size, lambda d: d.polygon(_rotated(points, fig.angle, fig.centre), fill=255))


def _phase(fig: _Figure, period: float, angle: float) -> np.ndarray:
    """Distance along direction ``angle`` across the whole image, in units of ``period``."""
    ys, xs = np.mgrid[0:fig.size, 0:fig.size].astype(np.float32)
    return (xs * np.cos(angle) + ys * np.sin(angle)) / period


# Figures: one solid shape.
def _circle(rng, fig):
    return _mask(fig.size, lambda d: d.ellipse(fig.box(), fill=255))


def _square(rng, fig):
    return _polygon(fig, _regular_polygon(4, fig.radius * 1.15))


def _triangle(rng, fig):
    return _polygon(fig, _regular_polygon(3, fig.radius * 1.3))


def _ring(rng, fig):
    width = max(2, int(round(fig.radius * rng.uniform(0.3, 0.4))))
    return _mask(fig.size, lambda d: d.ellipse(fig.box(), outline=255, width=width))


def _cross(rng, fig):
    arm, half = fig.radius * 1.15, fig.radius * 0.3
    bar = np.array([[-arm, -half], [arm, -half], [arm, half], [-arm, half]])
    return np.maximum(_polygon(fig, bar), _polygon(fig, bar[:, ::-1]))


def _star(rng, fig):
    outer = _regular_polygon(5, fig.radius * 1.25)
    # inner vertices half-way (36 degrees) between the outer ones
    inner = _regular_polygon(10, fig.radius * 0.5)[1::2]
    return _polygon(fig, np.stack([outer, inner], axis=1).reshape(-1, 2))


# Textures: a pattern over the whole image, no single figure.
def _stripes(rng, fig):
    phase = _phase(fig, rng.uniform(0.2, 0.3) * fig.size, fig.angle)
    return (np.floor(phase) % 2)[..., None]


def _checker(rng, fig):
    cell = rng.uniform(0.14, 0.2) * fig.size
    u, v = _phase(fig, cell, fig.angle), _phase(fig, cell, fig.angle + np.pi / 2)
    return ((np.floor(u) + np.floor(v)) % 2)[..., None]


def _dots(rng, fig):
    # a jittered lattice, so the dots cover the image without merging
    cells = int(rng.integers(3, 5))
    step = fig.size / cells
    radius = step * rng.uniform(0.16, 0.24)
    grid = (np.stack(np.meshgrid(np.arange(cells), np.arange(cells)), -1).reshape(-1, 2) + 0.5) * step
    centres = grid + rng.uniform(-0.2, 0.2, size=grid.shape) * step

    def draw(d):
        for cx, cy in centres.tolist():
            d.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=255)

    return _mask(fig.size, draw)


def _gradient(rng, fig):
    ramp = _phase(fig, fig.size, fig.angle)
    return ((ramp - ramp.min()) / (ramp.max() - ramp.min()))[..., None]


def _zigzag(rng, fig):
    turns = int(rng.integers(4, 6))
    xs = np.linspace(-1.4, 1.4, turns) * fig.radius
    ys = np.where(np.arange(turns) % 2 == 0, -0.6, 0.6) * fig.radius
    width = max(2, int(round(fig.size * 0.08)))
    points = _rotated(np.stack([xs, ys], axis=1), fig.angle, fig.centre)
    return _mask(fig.size, lambda d: d.line(points, fill=255, width=width, joint="curve"))


def _blobs(rng, fig):
    coarse = rng.standard_normal((4, 4)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse).resize((fig.size, fig.size), Image.BICUBIC))
    return (field > np.quantile(field, 0.6)).astype(np.float32)[..., None]


# kind -> mask of the foreground colour in [0, 1], [S, S, 1]. The first ten are the default
# classes: six shapes and four textures, each recognisable at 32 px whatever the colours.
DEMO_KINDS: Dict[str, Callable[[np.random.Generator, _Figure], np.ndarray]] = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "stripes": _stripes,
    "checker": _checker,
    "ring": _ring,
    "cross": _cross,
    "dots": _dots,
    "star": _star,
    "gradient": _gradient,
    "zigzag": _zigzag,
    "blobs": _blobs,
}


def demo_class_names(num_classes: int) -> List[str]:
    """Folder names ``'<index>_<kind>'``, so the sorted order (the label) is the kind's index."""
    if not 1 <= num_classes <= len(DEMO_KINDS):
        raise ValueError(f"the demo dataset has 1 to {len(DEMO_KINDS)} classes, asked for {num_classes}")
    return [f"{i:02d}_{kind}" for i, kind in enumerate(list(DEMO_KINDS)[:num_classes])]


def render_demo_image(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One image of ``kind``: the kind's figure or texture in one random colour over another
    (far enough apart to stay visible), light noise, downsampled to ``size`` pixels."""
    big = size * _SUPERSAMPLE
    background = _colour(rng)
    foreground = _contrasting(rng, background)
    mask = DEMO_KINDS[kind](rng, _Figure(rng, big))
    canvas = _paint(np.broadcast_to(background, (big, big, 3)).astype(np.float32), mask, foreground)
    canvas = canvas + rng.normal(0.0, rng.uniform(2.0, 8.0), size=canvas.shape).astype(np.float32)
    img = Image.fromarray(np.clip(canvas + 0.5, 0, 255).astype(np.uint8))
    return img.resize((size, size), Image.BOX)


def _tree_digest(root: str, relpaths: List[str]) -> str:
    digest = hashlib.sha256()
    for rel in relpaths:
        digest.update(rel.encode())
        with open(os.path.join(root, rel), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()


def _write_split(staging: str, split_id: int, classes: List[str], per_class: int, params: dict) -> List[str]:
    written = []
    split = _SPLITS[split_id]
    for class_idx, name in enumerate(classes):
        kind = name.split("_", 1)[1]
        os.makedirs(os.path.join(staging, split, name))
        for index in range(per_class):
            rng = np.random.default_rng([params["seed"], class_idx, split_id, index])
            rel = os.path.join(split, name, f"{kind}_{index:05d}.JPEG")
            render_demo_image(kind, params["image_size"], rng).save(
                os.path.join(staging, rel), format="JPEG", quality=params["jpeg_quality"]
            )
            written.append(rel)
    return written


def make_demo_dataset(
    root: str,
    num_classes: int = 10,
    train_per_class: int = 500,
    val_per_class: int = 50,
    image_size: int = 32,
    seed: int = 0,
    jpeg_quality: int = 90,
) -> str:
    """Write the demo tree under ``root`` (if not already there) and return ``root``.

    Layout: ``root/train/<NN_kind>/<kind>_<index>.JPEG``, the same under ``root/val``, and
    ``root/demo_manifest.json`` (parameters, file count, SHA-256 of the tree), written last. A root
    whose manifest has the same parameters is left untouched; one with other parameters, or with
    train/val folders but no manifest, raises rather than mixing trees. Images are generated in
    ``root/.demo-staging`` and moved into place, so an interrupted run leaves nothing half-written.
    """
    if image_size < 16:
        raise ValueError(f"demo image_size must be >= 16 pixels, got {image_size}")
    if train_per_class < 1 or val_per_class < 1:
        raise ValueError(f"demo needs >= 1 image per class and split, got {train_per_class}/{val_per_class}")
    root = os.fspath(root)
    params = {
        "num_classes": num_classes,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "image_size": image_size,
        "seed": seed,
        "jpeg_quality": jpeg_quality,
    }
    classes = demo_class_names(num_classes)
    manifest_path = os.path.join(root, MANIFEST_NAME)
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            existing = json.load(f)
        if existing.get("params") == params and existing.get("version") == _FORMAT_VERSION:
            return root
        if existing.get("params") == params:
            raise FileExistsError(
                f"{root} was written by an older demo generator (format {existing.get('version')}, "
                f"now {_FORMAT_VERSION}): delete it and run the command again"
            )
        raise FileExistsError(
            f"{root} holds a demo dataset made with {existing.get('params')}, not {params}: "
            "choose another folder or delete it"
        )
    for split in _SPLITS:
        if os.path.exists(os.path.join(root, split)):
            raise FileExistsError(
                f"{os.path.join(root, split)} exists but {root} has no {MANIFEST_NAME}: it is not a "
                "complete demo tree; choose another folder or delete it"
            )
    staging = os.path.join(root, ".demo-staging")
    shutil.rmtree(staging, ignore_errors=True)
    files = []
    for split_id, per_class in enumerate((train_per_class, val_per_class)):
        files += _write_split(staging, split_id, classes, per_class, params)
    for split in _SPLITS:
        os.replace(os.path.join(staging, split), os.path.join(root, split))
    os.rmdir(staging)
    manifest = {
        "version": _FORMAT_VERSION,
        "params": params,
        "classes": classes,
        "num_files": {split: per * num_classes for split, per in zip(_SPLITS, (train_per_class, val_per_class))},
        "sha256": _tree_digest(root, files),
    }
    tmp_path = manifest_path + ".tmp"
    with open(tmp_path, "w") as f:
        json.dump(manifest, f, indent=2)
    os.replace(tmp_path, manifest_path)
    return root
