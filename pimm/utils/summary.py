"""Per-epoch CSV summary of train and eval metrics."""
from __future__ import annotations

import csv
import io
import os
from typing import Any, List, Mapping

from .file_io import atomic_write_text

__all__ = ["SUMMARY_FILE", "update_summary"]

#: the name of a run folder's per-epoch summary
SUMMARY_FILE = "summary.csv"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value  # paddle / numpy scalars


def _read_rows(filename: str) -> List[dict]:
    if not os.path.exists(filename):
        return []
    with open(filename, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def update_summary(epoch: int, train_metrics: Mapping[str, Any], eval_metrics: Mapping[str, Any],
                   filename: str) -> None:
    """Write the row ``epoch, train_<k>..., eval_<k>...`` into the CSV ``filename``.

    The row replaces any row of the same or a later epoch: a run resumed after a crash that
    came between this write and its checkpoint trains the epoch again and must not list it
    twice (rows of later epochs belong to the abandoned continuation). The file is rewritten
    atomically, so a crash leaves the old summary or the new one. Columns are the union of the
    old header and the row's keys (a new column is empty in older rows).
    """
    row = {"epoch": epoch}
    row.update((f"train_{k}", _plain(v)) for k, v in train_metrics.items())
    row.update((f"eval_{k}", _plain(v)) for k, v in eval_metrics.items())
    rows = [r for r in _read_rows(filename) if int(r["epoch"]) < epoch]
    fields = list(rows[0]) if rows else []
    fields += [key for key in row if key not in fields]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows + [row])
    atomic_write_text(text.getvalue(), filename)
