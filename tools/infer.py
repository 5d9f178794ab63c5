"""Predict the top-k classes of image files with an exported network (Paddle Inference).

    python tools/export_model.py --model peleenet --checkpoint peleenet_acc7208.pth.tar \\
        --output exported/peleenet
    python tools/infer.py exported/peleenet cat.jpg dog.png --topk 5 --class-names synset_words.txt
    python tools/infer.py exported/peleenet images/*.jpg --json > predictions.jsonl

Each image goes through the evaluation transform stored at export (resize, centre crop, normalise).
Output: one line per image with "index:name probability" pairs (names from --class-names, a text
file with one name per line in index order, or else those stored at export), or with --json one
JSON object per image.
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import json
import sys

from pimm.data import ImageReadError


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="exported model prefix (tools/export_model.py --output)")
    parser.add_argument("images", nargs="+", help="image files (JPEG, PNG, ...)")
    parser.add_argument("--topk", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: all available cores)")
    parser.add_argument("--tensorrt", action="store_true",
                        help="with --device gpu: build TensorRT engines")
    parser.add_argument("--class-names", metavar="FILE",
                        help="class names, one per line in index order (default: the export's)")
    parser.add_argument("--json", action="store_true", help="one JSON object per image")
    return parser.parse_args(argv)


@_entry.entry_point(ValueError, FileNotFoundError, ImageReadError)
def main(argv=None) -> int:
    args = parse_args(argv)
    from lib.deploy import predict_files, read_class_names
    from pimm.deploy import InferenceModel

    predictor = InferenceModel(args.model, device=args.device, threads=args.threads,
                               tensorrt=args.tensorrt)
    names = None
    if args.class_names:
        names = read_class_names(args.class_names, predictor.info.get("num_classes"))
    predictions = predict_files(predictor, args.images, topk=args.topk,
                                batch_size=args.batch_size, class_names=names)
    for path, top in zip(args.images, predictions):
        if args.json:
            ranked = [{"class": index, "name": name, "probability": prob}
                      for index, name, prob in top]
            print(json.dumps({"image": path, "topk": ranked}))
        else:
            labels = "  ".join(f"{index}:{name} {prob:.4f}" if name else f"{index} {prob:.4f}"
                               for index, name, prob in top)
            print(f"{path}  {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
