"""Make Cream's 100-class subImageNet from an ImageNet tree: the listed training images of each class
(350 each) under OUT/train/<wnid>/ and all of the class's validation images (50) under OUT/val/<wnid>/,
as symbolic links (default) or copies.

    python tools/make_subimagenet.py ./data/imagenet ./data/subimagenet
    python tools/make_subimagenet.py ./data/imagenet ./data/subimagenet --copy

The class and image lists are the official Cream code's (data/subclass_list.txt,
data/subimages_list.txt). Nothing is written unless every listed file exists; running the command
again completes an interrupted tree. Then train on it with DATA_DIR OUT DATASET.NUM_CLASSES 100.
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import os
import sys

DATA = os.path.join(_entry.REPO_ROOT, "data")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("imagenet", help="ImageNet folder with train/<wnid>/ and val/<wnid>/")
    parser.add_argument("out", help="the subImageNet folder to make (created, or completed)")
    parser.add_argument("--copy", action="store_true", help="copy the images instead of linking them")
    parser.add_argument("--no-val", dest="val", action="store_false",
                        help="only the training split (the reference's generate_subImageNet.py made no val/)")
    parser.add_argument("--classes", default=os.path.join(DATA, "subclass_list.txt"),
                        help="class list, one wnid per line (default: data/subclass_list.txt)")
    parser.add_argument("--images", default=os.path.join(DATA, "subimages_list.txt"),
                        help="image list, one Python list of file names per class (default: "
                             "data/subimages_list.txt)")
    return parser.parse_args(argv)


def _progress(done: int, total: int) -> None:
    if done == total or done % 5000 == 0:
        print(f"  {done}/{total} files", flush=True)


@_entry.entry_point(ValueError, OSError)
def main(argv=None) -> int:
    args = parse_args(argv)
    from pimm.data import SUBSET_MANIFEST, make_image_subset, read_subset_lists

    subset = read_subset_lists(args.classes, args.images)
    how = "copying" if args.copy else "linking"
    print(f"{how} {len(subset)} classes from {os.path.abspath(args.imagenet)} into {os.path.abspath(args.out)}")
    summary = make_image_subset(args.imagenet, args.out, subset, copy=args.copy, val=args.val,
                                progress=_progress)
    state = "complete, nothing to do" if summary.written == 0 else f"{summary.written} files written"
    print(f"{summary.root}: {state}; {summary.classes} classes, {summary.train} train + {summary.val} val "
          f"images ({SUBSET_MANIFEST} lists them)")
    print(f"  use it with: DATA_DIR {summary.root} DATASET.NUM_CLASSES {summary.classes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
