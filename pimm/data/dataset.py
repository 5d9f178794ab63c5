"""ImageNet-style folder dataset: ``root/<class>/<image>`` with classes in sorted order."""
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import paddle
from PIL import Image

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png")
_LAYOUT_HINT = (
    "expected an ImageNet-style tree <root>/<class>/<image>.JPEG, e.g. DATA_DIR/train/<wnid>/*.JPEG "
    "and DATA_DIR/val/<wnid>/*.JPEG; see data/README.md (tools/make_demo_data.py writes a small one)"
)


class ImageReadError(OSError):
    """An image file of the dataset could not be decoded."""


def natural_key(text: str) -> List[Any]:
    """Sort key that orders embedded numbers by value ('img2' < 'img10'), as timm orders classes."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text.lower())]


def _images_under(folder: str) -> List[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(
            os.path.join(dirpath, name)
            for name in filenames
            if os.path.splitext(name)[1].lower() in IMG_EXTENSIONS
        )
    return found


def find_images_and_targets(
    root: str, class_to_idx: Optional[Mapping[str, int]] = None
) -> Tuple[List[Tuple[str, int]], Dict[str, int]]:
    """List ``(path, label)`` for every image below ``root/<class>/``, ordered by path (natural order).

    Class folders are the visible sub-folders of ``root``; images may sit in nested folders inside a
    class folder and take the label of the top-level class folder.
    """
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} not found: {_LAYOUT_HINT}")
    class_dirs = sorted(
        (e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")), key=natural_key
    )
    if not class_dirs:
        raise FileNotFoundError(f"{root} has no class folders: {_LAYOUT_HINT}")
    if class_to_idx is None:
        class_to_idx = {name: idx for idx, name in enumerate(class_dirs)}
    else:
        unknown = [name for name in class_dirs if name not in class_to_idx]
        if unknown:
            raise ValueError(
                f"{root} has class folders missing from the given class_to_idx: {unknown[:5]}"
                f"{' ...' if len(unknown) > 5 else ''}; remove them or extend the mapping"
            )
        class_to_idx = dict(class_to_idx)
    samples = []
    for name in class_dirs:
        images = _images_under(os.path.join(root, name))
        if not images:
            raise FileNotFoundError(
                f"class folder {os.path.join(root, name)} holds no images "
                f"(extensions {', '.join(IMG_EXTENSIONS)}, any case): add its images or remove the folder"
            )
        label = class_to_idx[name]
        samples.extend((path, label) for path in images)
    samples.sort(key=lambda item: natural_key(os.path.relpath(item[0], root)))
    return samples, class_to_idx


def load_rgb(path: str) -> Image.Image:
    """Decode an image file to RGB, naming the file when it is unreadable."""
    try:
        # Opening the file ourselves lets the decoded image outlive it without the copy that
        # Image.open's context manager would force.
        with open(path, "rb") as stream:
            img = Image.open(stream)
            img.load()
        return img if img.mode == "RGB" else img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(
            f"cannot decode image {path}: {err}. Replace or delete the file (it is corrupt, truncated "
            "or not an image)"
        ) from err


class ImageDataset(paddle.io.Dataset):
    """Images in ``root/<class>/*.{jpg,jpeg,png}`` with integer labels by sorted class name.

    ``samples`` is the list of ``(path, label)``; ``class_to_idx`` maps folder names to labels (pass
    one to keep the labels of another split, e.g. a val folder that lacks some classes). Items are
    ``(transform(image), label)``, the image decoded to RGB with PIL.
    """

    def __init__(
        self,
        root: str,
        transform: Optional[Callable[[Image.Image], Any]] = None,
        class_to_idx: Optional[Mapping[str, int]] = None,
    ) -> None:
        super().__init__()
        self.root = str(root)
        self.samples, self.class_to_idx = find_images_and_targets(self.root, class_to_idx)
        self.transform = transform

    @property
    def classes(self) -> List[str]:
        return sorted(self.class_to_idx, key=self.class_to_idx.__getitem__)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        path, label = self.samples[index]
        img = load_rgb(path)
        if self.transform is not None:
            img = self.transform(img)
        return img, label


# timm 0.1.20 exposes the folder dataset under this name; the reference scripts import it so.
Dataset = ImageDataset
