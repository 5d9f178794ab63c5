"""Export a Cream child network for Paddle Inference (and tools/infer.py).

    python tools/export_model.py --selection 14 --checkpoint 14.pth.tar --ema \\
        --output exported/cream_14
    python tools/export_model.py --arch "[[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]]" \\
        --checkpoint run/model_best.pdparams --image-size 224 --class-names-from data/val \\
        --output exported/mine

Writes <output>.json (program), <output>.pdiparams (weights) and <output>.info.json (arch, classes,
evaluation transform), then runs the exported model and dygraph on the same random batch and fails
if their logits differ by more than 1e-4 (relative). The checkpoint may be a .pdparams file or a
PyTorch Cream checkpoint; --ema takes its EMA weights (what the reference's test evaluates).
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import os
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    net = parser.add_mutually_exclusive_group(required=True)
    net.add_argument("--selection", type=int, help="released network: 14, 43, 114, 287, 481 or 604")
    net.add_argument("--arch", type=_entry.arch_list, help="arch list of a searched network")
    parser.add_argument("--checkpoint",
                        help="weights (.pdparams or PyTorch .pth.tar); random weights without")
    parser.add_argument("--ema", action="store_true",
                        help="use the checkpoint's EMA weights (state_dict_ema)")
    parser.add_argument("--output", required=True,
                        help="path prefix of the exported files, e.g. exported/cream_14")
    parser.add_argument("--image-size", type=int,
                        help="input size (default: the selection's, 224 for --arch)")
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--class-names-from", metavar="DIR",
                        help="a folder with one sub-folder per class (e.g. DATA_DIR/val): their "
                             "sorted names become the class names tools/infer.py prints")
    return parser.parse_args(argv)


@_entry.entry_point(ValueError, FileNotFoundError, threads=True)
def main(argv=None) -> int:
    args = parse_args(argv)
    from lib.deploy import LOGITS_TOLERANCE, export_child_network, exported_logits_difference
    from lib.models import build_childnet, resolve_arch
    from pimm.data import ImageDataset
    from pimm.models import load_checkpoint
    from pimm.deploy import InferenceModel

    if args.ema and not args.checkpoint:
        raise ValueError("--ema needs --checkpoint")
    arch, size = resolve_arch(args.selection if args.selection is not None else args.arch)
    size = args.image_size or size
    class_names = ImageDataset(args.class_names_from).classes if args.class_names_from else None
    model = build_childnet(arch, num_classes=args.num_classes)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, use_ema=args.ema)
    model.eval()
    source = os.path.abspath(args.checkpoint) if args.checkpoint else None
    files = export_child_network(model, args.output, size, arch=arch, class_names=class_names,
                                 source=source)
    difference = exported_logits_difference(model, InferenceModel(args.output), size)
    for kind, path in files.items():
        print(f"{kind:8s} {path}")
    print(f"exported logits vs dygraph: {difference:.2e} relative difference "
          f"(tolerance {LOGITS_TOLERANCE:g})")
    if difference > LOGITS_TOLERANCE:
        print("error: the exported model does not reproduce dygraph's logits", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
