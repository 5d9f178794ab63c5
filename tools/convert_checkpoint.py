"""Convert a PyTorch Cream checkpoint (e.g. a released 43.pth.tar) into a Paddle .pdparams file.

    python tools/convert_checkpoint.py 43.pth.tar 43.pdparams
    python tools/convert_checkpoint.py 43.pth.tar 43_ema.pdparams --ema --selection 43
    python tools/convert_checkpoint.py searched.pth.tar searched.pdparams \\
        --arch "[[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]]"

No PyTorch is needed, and nothing in the file is executed. The network is taken from --selection
or --arch, or else from the run config saved in the checkpoint (NET.SELECTION).
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="PyTorch checkpoint (.pth, .pth.tar; legacy or zip format)")
    parser.add_argument("destination", help="Paddle checkpoint to write (.pdparams)")
    parser.add_argument("--ema", action="store_true",
                        help="write the EMA weights (state_dict_ema) as the model weights, as the reference "
                             "evaluates them; by default state_dict and state_dict_ema are both converted")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--selection", type=int, help="released network: 14, 43, 114, 287, 481 or 604")
    which.add_argument("--arch", type=_entry.arch_list, help="arch list of a searched network")
    parser.add_argument("--num-classes", type=int, help="classifier size (default: from the checkpoint's "
                                                        "config, else 1000)")
    return parser.parse_args(argv)


@_entry.entry_point(ValueError, FileNotFoundError)
def main(argv=None) -> int:
    args = parse_args(argv)
    from lib.models.convert import convert_torch_checkpoint

    summary = convert_torch_checkpoint(
        args.source, args.destination,
        selection_or_arch=args.arch if args.arch is not None else args.selection,
        use_ema=args.ema, num_classes=args.num_classes)
    print(summary.describe())
    return 0


if __name__ == "__main__":
    sys.exit(main())
