"""A class and image subset of an ImageNet-style tree (e.g. Cream's 100-class subImageNet), made of
links or copies.

The subset is described by two lists: a class list (one class folder name per line) and an image
list (line ``i``: a Python list literal of the training file names of class ``i``, e.g.
``['n01440764_10026.JPEG', ...]``). Training images are the listed files of ``SOURCE/train/<class>/``;
validation images, unless turned off, are every image of ``SOURCE/val/<class>/``.

Nothing is created until every listed file has been found. Each file is written under a temporary
name and renamed into place, so a name in the subset is always a complete link or copy; running
again on a partial tree (interrupted, or made with links where copies are wanted) checks every file
and completes it. ``subset_manifest.json``, written last, records the finished tree.
"""
from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from pimm.utils.file_io import atomic_write_text

from .dataset import IMG_EXTENSIONS

__all__ = ["SUBSET_MANIFEST", "SubsetError", "SubsetSummary", "read_subset_lists", "make_image_subset"]

SUBSET_MANIFEST = "subset_manifest.json"
_PARTIAL_SUFFIX = ".partial"  # a file being written; never an image extension, so datasets skip it
_SHOWN_MISSING = 5


class SubsetError(ValueError):
    """A subset that cannot be made as asked: unreadable lists, missing source files, or a target
    folder holding something else. The message names the files and the fix."""


@dataclass(frozen=True)
class SubsetSummary:
    root: str
    classes: int
    train: int  # files per split in the finished subset
    val: int
    written: int  # links or copies made by this call (0 when the tree was complete)


def _check_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name:
        raise SubsetError(f"{what}: {name!r} is not a plain file or folder name")
    return name


def read_subset_lists(class_list: str, image_list: str) -> List[Tuple[str, List[str]]]:
    """``[(class, [training file names])]`` from the two list files (see the module doc). The
    image lists are read with ``ast.literal_eval`` (no code runs) and must hold plain file names."""
    for path in (class_list, image_list):
        if not os.path.isfile(path):
            raise SubsetError(f"list file {path} not found")
    with open(class_list) as f:
        classes = [_check_name(line.strip(), class_list) for line in f if line.strip()]
    files: List[List[str]] = []
    with open(image_list) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                names = ast.literal_eval(line.strip())
            except (ValueError, SyntaxError):
                names = None
            if not isinstance(names, list):
                raise SubsetError(f"{image_list}, line {number}: expected a list of file names such as "
                                  "['n01440764_10026.JPEG', ...]")
            files.append([_check_name(n, f"{image_list}, line {number}") for n in names])
    if len(classes) != len(files) or len(set(classes)) != len(classes):
        raise SubsetError(f"{class_list} lists {len(classes)} classes ({len(set(classes))} distinct) but "
                          f"{image_list} has {len(files)} lines: they must match line by line")
    return list(zip(classes, files))


def _images_in(folder: str) -> List[str]:
    return sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in IMG_EXTENSIONS
                  and os.path.isfile(os.path.join(folder, n)))


def _plan(source: str, subset: Sequence[Tuple[str, Sequence[str]]], val: bool
          ) -> Tuple[Dict[str, List[Tuple[str, str]]], List[str]]:
    """``({split: [(source file, path relative to the subset root)]}, missing source paths)``."""
    plan: Dict[str, List[Tuple[str, str]]] = {"train": [], "val": []}
    missing: List[str] = []
    for cls, names in subset:
        for name in names:
            path = os.path.join(source, "train", cls, name)
            if os.path.isfile(path):
                plan["train"].append((path, os.path.join("train", cls, name)))
            else:
                missing.append(path)
        if val:
            folder = os.path.join(source, "val", cls)
            if os.path.isdir(folder):
                plan["val"] += [(os.path.join(folder, n), os.path.join("val", cls, n)) for n in _images_in(folder)]
            else:
                missing.append(folder + os.sep)
    return plan, missing


def _is_done(source: str, target: str, copy: bool) -> bool:
    if copy:
        return (os.path.isfile(target) and not os.path.islink(target)
                and os.path.getsize(target) == os.path.getsize(source))
    return os.path.islink(target) and os.readlink(target) == source


def _place(source: str, target: str, copy: bool) -> None:
    partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}{_PARTIAL_SUFFIX}")
    if os.path.lexists(partial):  # left by an interrupted run
        os.remove(partial)
    if copy:
        shutil.copyfile(source, partial)
    else:
        os.symlink(source, partial)
    os.replace(partial, target)


def _unexpected(out: str, plan: Dict[str, List[Tuple[str, str]]]) -> List[str]:
    """Images and class folders under ``out/<split>`` that the plan does not make."""
    expected = {rel for files in plan.values() for _, rel in files}
    folders = {os.path.dirname(rel) for rel in expected} | {"train", "val"}
    found: List[str] = []
    for split in plan:
        root = os.path.join(out, split)
        if not os.path.isdir(root):
            continue
        for cls in sorted(os.listdir(root)):
            rel_cls = os.path.join(split, cls)
            if rel_cls not in folders:
                found.append(rel_cls)
                continue
            if os.path.isdir(os.path.join(out, rel_cls)):
                found += [os.path.join(rel_cls, n) for n in sorted(os.listdir(os.path.join(out, rel_cls)))
                          if not n.endswith(_PARTIAL_SUFFIX) and os.path.join(rel_cls, n) not in expected]
    return found


def make_image_subset(source: str, out: str, subset: Sequence[Tuple[str, Sequence[str]]], *,
                      copy: bool = False, val: bool = True,
                      progress: Optional[Callable[[int, int], None]] = None) -> SubsetSummary:
    """Make ``out/train/<class>/`` (the listed files) and, with ``val``, ``out/val/<class>/`` (all of
    the class's validation images) from the tree at ``source``: absolute symbolic links, or copies
    with ``copy``. ``subset`` comes from :func:`read_subset_lists`. ``progress(done, total)`` is
    called as files are checked. Raises :class:`SubsetError` before writing anything when source
    files are missing or ``out`` holds files the subset does not list."""
    source = os.path.abspath(source)
    if not os.path.isdir(os.path.join(source, "train")):
        raise SubsetError(f"{source} has no train/ folder: point it at the ImageNet tree that holds "
                          "train/<wnid>/ and val/<wnid>/ (data/README.md)")
    plan, missing = _plan(source, subset, val)
    if missing:
        total = sum(len(names) for _, names in subset) + (len(subset) if val else 0)
        shown = ", ".join(os.path.relpath(p, source) for p in missing[:_SHOWN_MISSING])
        raise SubsetError(f"{len(missing)} of the {total} listed files and folders are missing under "
                          f"{source}: {shown}{', ...' if len(missing) > _SHOWN_MISSING else ''}; the "
                          "subset needs the full ImageNet tree (train/<wnid>/*.JPEG, val/<wnid>/*.JPEG "
                          "sorted into class folders, data/README.md)")
    unexpected = _unexpected(out, plan)
    if unexpected:
        raise SubsetError(f"{out} holds {len(unexpected)} files or folders this subset does not list "
                          f"(e.g. {unexpected[0]}): use an empty folder, or the one this subset was made in")
    files = plan["train"] + plan["val"]
    written = 0
    for cls in {os.path.dirname(rel) for _, rel in files}:
        os.makedirs(os.path.join(out, cls), exist_ok=True)
    for done, (path, rel) in enumerate(files, start=1):
        target = os.path.join(out, rel)
        if not _is_done(path, target, copy):
            _place(path, target, copy)
            written += 1
        if progress is not None:
            progress(done, len(files))
    summary = SubsetSummary(os.path.abspath(out), len(subset), len(plan["train"]), len(plan["val"]), written)
    lists_digest = hashlib.sha256(json.dumps([[c, list(n)] for c, n in subset]).encode()).hexdigest()
    atomic_write_text(json.dumps({"source": source, "mode": "copy" if copy else "link",
                                  "classes": [c for c, _ in subset], "num_files": {"train": summary.train,
                                                                                   "val": summary.val},
                                  "lists_sha256": lists_digest}, indent=1) + "\n",
                      os.path.join(out, SUBSET_MANIFEST))
    return summary
