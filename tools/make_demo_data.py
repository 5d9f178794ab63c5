"""Write the synthetic demo dataset: ImageNet-style OUT/train/<class>/*.JPEG and OUT/val/<class>/*.JPEG,
or with --cifar CIFAR-10 python batches of 32 px images (OUT/data_batch_1..5, OUT/test_batch).

    python tools/make_demo_data.py data/demo --classes 10 --train-per-class 500 --val-per-class 50
    python tools/make_demo_data.py data/demo_cifar --cifar --classes 10 --train-per-class 40 --val-per-class 10
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import json
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output folder (created; left alone if it already holds this demo tree)")
    parser.add_argument("--classes", type=int, default=10, help="number of classes, 1-12 (default 10)")
    parser.add_argument("--train-per-class", type=int, default=500, help="training images per class (default 500)")
    parser.add_argument("--val-per-class", type=int, default=50, help="validation images per class (default 50)")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--cifar", action="store_true",
                        help="write CIFAR-10 python batches of 32 px images instead (DATASET.NAME cifar10; "
                             "at most 10 classes; --val-per-class sizes test_batch; --size is ignored)")
    return parser.parse_args(argv)


def write_cifar(args: argparse.Namespace) -> int:
    from pimm.data import CIFAR10, make_demo_cifar

    root = make_demo_cifar(args.out, num_classes=args.classes, train_per_class=args.train_per_class,
                           test_per_class=args.val_per_class, seed=args.seed)
    train, test = CIFAR10(root, train=True), CIFAR10(root, train=False)
    print(f"{root}: {len(train)} training images in data_batch_1..5 and {len(test)} test images in test_batch, "
          f"32 px, {args.classes} classes (DATASET.NAME cifar10 DATA_DIR {root})")
    return 0


@_entry.entry_point(ValueError, FileExistsError)
def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cifar:
        return write_cifar(args)
    from pimm.data.demo import MANIFEST_NAME, make_demo_dataset

    already = os.path.isfile(os.path.join(args.out, MANIFEST_NAME))
    root = make_demo_dataset(args.out, num_classes=args.classes, train_per_class=args.train_per_class,
                             val_per_class=args.val_per_class, image_size=args.size, seed=args.seed)
    with open(os.path.join(root, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    counts = manifest["num_files"]
    state = "already complete, nothing written" if already else "written"
    print(
        f"{root}: {state}: {len(manifest['classes'])} classes, {counts['train']} train + {counts['val']} val "
        f"JPEGs of {args.size}px (sha256 {manifest['sha256'][:16]})"
    )
    print(f"  train: {os.path.join(root, 'train')}/<class>/*.JPEG")
    print(f"  val:   {os.path.join(root, 'val')}/<class>/*.JPEG")
    print(f"  classes: {', '.join(manifest['classes'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
