"""Draw (again) the PNG plots of a run folder: training curves, and the board of a search.

    python tools/plot.py experiments/workspace/train/demo_search
    python tools/plot.py experiments/workspace/retrain/demo_retrain

Writes training_curves.png (from summary.csv) and, for a search, board.png (from board.json) into
the folder. Needs matplotlib (python -m pip install matplotlib).
"""
import _entry  # first: the repository root on sys.path, quiet Paddle  # isort: skip

import argparse
import os
import sys
from typing import Optional

from lib.config import ConfigError, load_config
from pimm.utils.plots import PlotsUnavailable, plot_run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_folder", help="a run folder of tools/main.py train or retrain (holds summary.csv)")
    return parser.parse_args(argv)


def _num_classes(run_folder: str) -> Optional[int]:
    """DATASET.NUM_CLASSES of the run's config.yaml, for the chance level; None if unreadable."""
    try:
        return int(load_config(os.path.join(run_folder, "config.yaml")).DATASET.NUM_CLASSES)
    except ConfigError:
        return None


@_entry.entry_point(PlotsUnavailable, FileNotFoundError, ValueError)
def main(argv=None) -> int:
    args = parse_args(argv)
    for path in plot_run(args.run_folder, num_classes=_num_classes(args.run_folder)):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
