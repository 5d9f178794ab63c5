"""Run the GPU checks (lib/engine/gpu_check.py) and print their result as one JSON line.

    python tools/gpu_check.py                      # on a machine with paddlepaddle-gpu and a GPU
    python tools/gpu_check.py --out gpu_check.json

Training steps in float32 and AMP O1/O2 (the loss falls), float16 logits against float32, a demo
retrain whose loss scaler is checkpointed and resumed, a demo search with meta-matching updates
under AMP, and tools/benchmark.py figures (train, search with its meta update, dygraph, Paddle
Inference and TensorRT evaluation). Exit status 0 when every check passed or when there is no GPU
(then the line is {"skipped": "..."}), 1 when a check failed.
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import json
import sys


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="also write the result to this JSON file")
    return parser.parse_args(argv)


@_entry.entry_point(ValueError)
def main(argv=None) -> int:
    args = parse_args(argv)
    from lib.engine.gpu_check import run_gpu_checks
    from pimm.utils import atomic_write_text

    result = run_gpu_checks()
    text = json.dumps(result)
    if args.out:
        atomic_write_text(json.dumps(result, indent=2) + "\n", args.out)
    print(text)
    return 0 if result.get("skipped") or result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
