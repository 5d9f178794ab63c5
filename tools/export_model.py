"""Export a network for Paddle Inference (and tools/infer.py): any registered pimm model, a
released Cream selection or a searched Cream arch.

    python tools/export_model.py --model peleenet --checkpoint peleenet_acc7208.pth.tar \\
        --class-names synset_words.txt --output exported/peleenet
    python tools/export_model.py --selection 14 --checkpoint 14.pth.tar --ema \\
        --output exported/cream_14
    python tools/export_model.py --arch "[[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]]" \\
        --checkpoint run/model_best.pdparams --image-size 224 --class-names-from data/val \\
        --output exported/mine
    python tools/export_model.py --config experiments/configs/test/peleenet.yaml \\
        --checkpoint peleenet_acc7208.pth.tar --output exported/peleenet
    python tools/export_model.py --config experiments/configs/spos/test.yaml \\
        --checkpoint spos.pth.tar --output exported/spos [KEY VALUE ...]

--config takes the network, image size, classes and evaluation transform from a config of
tools/main.py (any METHOD), e.g. an SPOS net with its raw BGR 0-255 input or a P-DARTS genotype;
KEY VALUE pairs override it (after the flags below, which set config keys too).

Writes <output>.json (program), <output>.pdiparams (weights) and <output>.info.json (network,
classes, evaluation transform), then runs the exported model and dygraph on the same random batch
and fails if their logits differ by more than 1e-4 (relative). The evaluation transform is the
one tools/main.py test uses for that network: shorter side to size / crop-pct, centre crop,
ImageNet mean/std, resampled bicubic for Cream nets and bilinear for --model (PeleeNet's
reference); --interpolation and --crop-pct change it, --config takes it (and the network) from a
config. The checkpoint may be a .pdparams file or a PyTorch file (read without PyTorch);
--ema takes its EMA weights.
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import os
import sys
from typing import List


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    net = parser.add_mutually_exclusive_group()
    net.add_argument("--model", help="a registered pimm model, e.g. peleenet (its image size: "
                                     "--image-size, default 224)")
    net.add_argument("--selection", type=int, help="released network: 14, 43, 114, 287, 481 or 604")
    net.add_argument("--arch", type=_entry.arch_list, help="arch list of a searched network")
    parser.add_argument("--config", help="a retrain/test config naming the network and its "
                                         "evaluation transform (NET.*, DATASET.*)")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides, e.g. SPOS.ARCH \"[2,1,0,...]\"")
    parser.add_argument("--checkpoint",
                        help="weights (.pdparams or PyTorch .pth.tar); random weights without")
    parser.add_argument("--ema", action="store_true",
                        help="use the checkpoint's EMA weights (state_dict_ema / model_ema)")
    parser.add_argument("--output", required=True,
                        help="path prefix of the exported files, e.g. exported/cream_14")
    parser.add_argument("--image-size", type=int,
                        help="input size (default: the selection's; else the config's, 224)")
    parser.add_argument("--num-classes", type=int, help="classifier outputs (default 1000)")
    parser.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"),
                        help="resampling of the evaluation resize (default: the network's)")
    parser.add_argument("--crop-pct", type=float,
                        help="centre crop / resized shorter side (default 0.875: 224 of 256)")
    names = parser.add_mutually_exclusive_group()
    names.add_argument("--class-names", metavar="FILE",
                       help="a text file with one class name per line, in index order")
    names.add_argument("--class-names-from", metavar="DIR",
                       help="a folder with one sub-folder per class (e.g. DATA_DIR/val): their "
                            "sorted names become the class names tools/infer.py prints")
    args = parser.parse_intermixed_args(argv)
    if args.config is None and args.model is None and args.selection is None and args.arch is None:
        parser.error("name the network: --model, --selection, --arch or --config")
    return args


def config_overrides(args: argparse.Namespace) -> List[str]:
    """The config keys (tools/main.py's) that the arguments set."""
    overrides: List[str] = []
    if args.model is not None:
        overrides += ["NET.MODEL", args.model]
    elif args.selection is not None:
        overrides += ["NET.MODEL", "", "NET.SELECTION", str(args.selection)]
    elif args.arch is not None:
        overrides += ["NET.MODEL", "", "NET.SELECTION", "-1", "NET.BOARD_JSON", "",
                      "NET.INPUT_ARCH", str(args.arch)]
    if args.image_size is not None:
        overrides += ["DATASET.IMAGE_SIZE", str(args.image_size),
                      "DATASET.SELECTION_IMAGE_SIZE", "False"]
    for key, value in (("DATASET.NUM_CLASSES", args.num_classes),
                       ("DATASET.EVAL_INTERPOLATION", args.interpolation),
                       ("DATASET.CROP_PCT", args.crop_pct)):
        if value is not None:
            overrides += [key, str(value)]
    return overrides


@_entry.entry_point(ValueError, FileNotFoundError, threads=True)
def main(argv=None) -> int:
    args = parse_args(argv)
    from lib.config import load_config
    from lib.deploy import (LOGITS_TOLERANCE, export_child_network, exported_logits_difference,
                            read_class_names)
    from lib.engine.child import child_eval_preprocess, create_child_model, resolve_child
    from pimm.data import ImageDataset
    from pimm.deploy import InferenceModel
    from pimm.models import load_checkpoint

    if args.ema and not args.checkpoint:
        raise ValueError("--ema needs --checkpoint")
    cfg = load_config(args.config, config_overrides(args) + list(args.overrides))
    spec = resolve_child(cfg)
    model = create_child_model(cfg, spec)
    if args.class_names:
        class_names = read_class_names(args.class_names, getattr(model, "num_classes", None))
    else:
        class_names = ImageDataset(args.class_names_from).classes if args.class_names_from else None
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint, use_ema=args.ema)
    model.eval()
    source = os.path.abspath(args.checkpoint) if args.checkpoint else None
    files = export_child_network(model, args.output, spec.image_size, arch=spec.arch_json,
                                 class_names=class_names, source=source,
                                 preprocess=child_eval_preprocess(cfg, spec),
                                 model_name=spec.model or None)
    difference = exported_logits_difference(model, InferenceModel(args.output), spec.image_size)
    for kind, path in files.items():
        print(f"{kind:8s} {path}")
    print(f"network  {spec.source}, {spec.image_size} px")
    print(f"exported logits vs dygraph: {difference:.2e} relative difference "
          f"(tolerance {LOGITS_TOLERANCE:g})")
    if difference > LOGITS_TOLERANCE:
        print("error: the exported model does not reproduce dygraph's logits", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
