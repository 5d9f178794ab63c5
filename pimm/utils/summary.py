"""Per-epoch CSV summary of train and eval metrics."""
from __future__ import annotations

import csv
import os
from typing import Any, Mapping

__all__ = ["update_summary"]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # paddle / numpy scalars


def update_summary(epoch: int, train_metrics: Mapping[str, Any], eval_metrics: Mapping[str, Any],
                   filename: str, write_header: bool = False) -> None:
    """Append one row ``epoch, train_<k>..., eval_<k>...`` to the CSV ``filename``.

    The header is written when asked, and also when the file does not exist yet or is empty, so
    a resumed run neither repeats it nor starts a headerless file.
    """
    row = {"epoch": epoch}
    row.update((f"train_{k}", _plain(v)) for k, v in train_metrics.items())
    row.update((f"eval_{k}", _plain(v)) for k, v in eval_metrics.items())
    new_file = not os.path.exists(filename) or os.path.getsize(filename) == 0
    with open(filename, mode="a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if write_header or new_file:
            writer.writeheader()
        writer.writerow(row)
