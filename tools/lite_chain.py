"""The lite train-to-inference chain on demo data, for any network (a smoke test, like the 'lite'
chain of Paddle model repositories' TIPC):

    python tools/lite_chain.py --model peleenet
    python tools/lite_chain.py --model cream_14
    python tools/lite_chain.py --config experiments/configs/retrain/searched.yaml \\
        NET.BOARD_JSON '' NET.INPUT_ARCH "[[0], [3], [3, 1], [3, 1], [3, 3, 3], [3, 3], [0]]"

Stages: data (a tiny generated demo tree, or --data) -> train (two epochs of the model's retrain
recipe, batch 8 at 32 px, LR scaled linearly) -> evaluate (the test engine on the checkpoint) ->
export (paddle.jit.save with the evaluation transform) -> infer (top-5 with the exported model)
-> compare (exported vs dygraph logits on the same images). Each stage prints one line; the first
failure prints the stage and the error and exits non-zero (2 for a user error, 1 otherwise).
KEY VALUE pairs override the config as in tools/main.py (e.g. DATASET.IMAGE_SIZE 64).
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import os
import re
import sys
import traceback
from typing import List, Optional

SHIPPED_RETRAIN = os.path.join(_entry.REPO_ROOT, "experiments", "configs", "retrain")
#: the recipe of a registered model without a shipped config of its own: plain SGD
DEFAULT_RECIPE = "peleenet.yaml"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python tools/lite_chain.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    net = parser.add_mutually_exclusive_group(required=True)
    net.add_argument("--model", help="a registered model (pimm.models.list_models()): 'peleenet', "
                                     "'cream_14' ... 'cream_604', 'mobilenetv3_large_100', ...")
    net.add_argument("--config", help="a retrain config naming the network itself")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")
    parser.add_argument("--data", help="an ImageNet-style tree with train/ and val/ (default: a "
                                       "tiny demo tree generated under --work)")
    parser.add_argument("--work", default="./experiments/workspace/lite_chain",
                        help="folder of the runs, the export and the generated data")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    return parser.parse_intermixed_args(argv)


def config_and_overrides(args: argparse.Namespace) -> tuple:
    """The retrain config and overrides for ``--model``: Cream's ``cream_<selection>`` trains
    with its selection's recipe (retrain/<selection>.yaml); any other model with its own
    retrain/<model>.yaml, else with the plain SGD recipe of retrain/peleenet.yaml."""
    from lib.config import ConfigError

    if args.config:
        return args.config, list(args.overrides), os.path.splitext(os.path.basename(args.config))[0]
    from lib.models import CREAM_ARCHS  # importing lib.models registers cream_14 ... cream_604
    from pimm.models import is_model, list_models

    if not is_model(args.model):
        raise ConfigError(f"--model {args.model!r} is not registered; choose one of "
                          f"{', '.join(list_models())}")
    cream = re.fullmatch(r"cream_(\d+)", args.model)
    if cream and int(cream.group(1)) in CREAM_ARCHS:
        return (os.path.join(SHIPPED_RETRAIN, f"{cream.group(1)}.yaml"), list(args.overrides),
                args.model)
    own = os.path.join(SHIPPED_RETRAIN, f"{args.model}.yaml")
    config = own if os.path.isfile(own) else os.path.join(SHIPPED_RETRAIN, DEFAULT_RECIPE)
    return config, ["NET.MODEL", args.model, *args.overrides], args.model


@_entry.entry_point(threads=True)
def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from lib.config import ConfigError
    from lib.engine.common import RunError
    from lib.engine.lite_chain import LiteChainOptions, StageFailed, run_lite_chain

    config, overrides, name = config_and_overrides(args)
    options = LiteChainOptions(config=config, overrides=overrides, work_dir=args.work,
                               data_dir=args.data, name=f"lite_{name}", epochs=args.epochs,
                               batch_size=args.batch_size, image_size=args.image_size)
    print(f"lite chain: {name} ({config})", flush=True)
    try:
        run_lite_chain(options, report=lambda stage, line: print(f"[{stage}] {line}", flush=True))
    except StageFailed as failure:
        user_error = isinstance(failure.error, (ConfigError, RunError))
        if not user_error:
            traceback.print_exception(failure.error)
        print(f"error: lite chain failed at stage '{failure.stage}': {failure.error}",
              file=sys.stderr)
        return 2 if user_error else 1
    print("lite chain: all stages passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
