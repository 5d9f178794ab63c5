"""Checkpoints and recovery files for a training run, written crash-safely and ranked by metric.

Files in ``checkpoint_dir`` (``.pdparams`` by default, the format of docs/DEVELOPING.md):

* ``last.pdparams``: the latest epoch;
* ``checkpoint-<epoch>.pdparams``: the ``max_history`` best epochs by eval metric;
* ``model_best.pdparams``: the best epoch so far;
* ``checkpoint_index.json``: the ranking (file, epoch, metric), so that a resumed process keeps
  the same top-k instead of starting an empty list (timm's saver forgot it and then never deleted
  the earlier run's files, and let a worse epoch overwrite ``model_best``).

``recovery_dir`` holds ``recovery-<epoch>-<batch>.pdparams``, only the newest one.

Code that resumes a run asks the class for these names (``last_file``, ``newest_recovery``,
``resume_file``: static, usable on any rank without constructing a saver) instead of spelling them.

Every file is written to a temporary name and renamed into place (:mod:`pimm.utils.file_io`);
``checkpoint-<epoch>`` and ``model_best`` are hard links to the ``last`` they were taken from
(copies where the file system has no hard links). Create the saver on the primary rank only.

Surviving kill -9 at any point: an epoch's save writes ``last`` first, then links
``checkpoint-<epoch>`` and ``model_best`` and writes the index, which records the epoch of the
``last`` it describes (``last_epoch``), then deletes evicted files. A new saver compares the two:
when ``last`` is newer than its index, the save was cut short and the saver finishes it (links,
index, evictions) from ``last``'s own epoch and metric; checkpoint files the index does not list
from before that epoch are leftovers of an interrupted eviction and are deleted. A resumed run then
holds what an uninterrupted one holds. ``resume_file`` skips a truncated or corrupt file for the
newest intact one, with a warning naming both. States with NaN or Inf weights are refused
(:class:`NonFiniteStateError`): a diverged run never overwrites the last finite checkpoint.
"""
from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Any, List, Mapping, Optional, Tuple

import paddle

from .file_io import atomic_link, atomic_save, atomic_write_text, remove_stale_temp_files
from .model_ema import unwrap_model
from .options import to_plain_dict
from .paddle_checkpoint import UnsafeCheckpointError, read_paddle_checkpoint

__all__ = ["CheckpointSaver", "CHECKPOINT_VERSION", "NonFiniteStateError"]

_logger = logging.getLogger(__name__)

#: ``version`` 2: ``epoch`` is the last completed epoch, resume at ``epoch + 1`` (timm)
CHECKPOINT_VERSION = 2
_RESERVED_KEYS = ("state_dict", "state_dict_ema", "optimizer", "scheduler", "epoch", "version",
                  "arch", "args", "metric", "batch_idx")
_INDEX_FORMAT = 1
_DEFAULT_EXTENSION = ".pdparams"
_LAST_NAME = "last"
_BEST_NAME = "model_best"
_DEFAULT_CHECKPOINT_PREFIX = "checkpoint"
_DEFAULT_RECOVERY_PREFIX = "recovery"


class NonFiniteStateError(ValueError):
    """A state to be saved holds NaN or Inf weights (the training diverged); nothing was written."""


def _recovery_pattern(prefix: str, extension: str) -> "re.Pattern[str]":
    return re.compile(rf"{re.escape(prefix)}-(\d+)-(\d+){re.escape(extension)}")


def _read_state(path: str) -> dict:
    """The checkpoint at ``path`` (arrays as numpy); a planted file is refused by the restricted
    reader (UnsafeCheckpointError), a damaged one raises another ValueError or OSError."""
    state = read_paddle_checkpoint(path, return_numpy=True)
    if not isinstance(state, dict) or "epoch" not in state:
        raise ValueError(f"{path} is not a checkpoint of this saver (no 'epoch' entry)")
    return state


def _first_non_finite(weights: Mapping[str, Any]) -> Optional[str]:
    for name, tensor in weights.items():
        if paddle.is_floating_point(tensor) and not bool(paddle.isfinite(tensor).all()):
            return name
    return None


@dataclass
class _Entry:
    file: str  # basename inside checkpoint_dir
    epoch: int
    metric: Optional[float]


def _as_metric(metric: Any) -> Optional[float]:
    if metric is None:
        return None
    value = float(metric)
    if math.isnan(value):
        _logger.warning("checkpoint metric is NaN; the checkpoint is kept unranked")
        return None
    return value


class CheckpointSaver:
    """Save ``model`` (+ ``optimizer``, ``model_ema``, ``scheduler``) each epoch, keeping the
    ``max_history`` best by metric (lower is better when ``decreasing``).

    ``args`` (a yacs config, argparse namespace or dict) is stored as a plain dict. ``arch`` is the
    model name stored in the file (default: ``args.model``/``MODEL`` if present, else the model's
    class name). ``scheduler`` is optional; when given, its ``state_dict()`` goes under
    ``scheduler``. Anything else (RNG state, the prioritized board, ...) goes in through
    ``extra_state`` and is stored at the top level of the checkpoint dict.
    """

    def __init__(
        self,
        model: paddle.nn.Layer,
        optimizer: paddle.optimizer.Optimizer,
        args: Any = None,
        model_ema: Any = None,
        checkpoint_dir: str = "",
        recovery_dir: str = "",
        decreasing: bool = False,
        max_history: int = 10,
        checkpoint_prefix: str = _DEFAULT_CHECKPOINT_PREFIX,
        recovery_prefix: str = _DEFAULT_RECOVERY_PREFIX,
        extension: str = _DEFAULT_EXTENSION,
        scheduler: Any = None,
        arch: Optional[str] = None,
    ) -> None:
        if max_history < 1:
            raise ValueError(f"CheckpointSaver: max_history must be >= 1, got {max_history}")
        self.model = model
        self.optimizer = optimizer
        self.args = args
        self.model_ema = model_ema
        self.scheduler = scheduler
        self.arch = arch or self._default_arch(model, args)
        self.decreasing = decreasing
        self.max_history = max_history
        self.checkpoint_dir = checkpoint_dir or "."
        self.recovery_dir = recovery_dir or "."
        self.checkpoint_prefix = checkpoint_prefix
        self.recovery_prefix = recovery_prefix
        self.extension = extension if extension.startswith(".") else "." + extension
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        os.makedirs(self.recovery_dir, exist_ok=True)

        ext = re.escape(self.extension)
        self._checkpoint_re = re.compile(rf"{re.escape(checkpoint_prefix)}-(\d+){ext}")
        self._recovery_re = _recovery_pattern(recovery_prefix, self.extension)
        self.last_path = self.last_file(self.checkpoint_dir, self.extension)
        self.best_path = os.path.join(self.checkpoint_dir, _BEST_NAME + self.extension)
        self.index_path = os.path.join(self.checkpoint_dir, f"{checkpoint_prefix}_index.json")
        remove_stale_temp_files(self.checkpoint_dir, [
            self._checkpoint_re.pattern, re.escape(os.path.basename(self.last_path)),
            re.escape(os.path.basename(self.best_path)),
            re.escape(os.path.basename(self.index_path))])
        remove_stale_temp_files(self.recovery_dir, [self._recovery_re.pattern])

        self._entries: List[_Entry] = []
        self.best_metric: Optional[float] = None
        self.best_epoch: Optional[int] = None
        self._last_epoch: Optional[int] = None  # the epoch ``last`` holds, as the index records it
        self._restore_ranking()

    # ---- ranking --------------------------------------------------------------------------
    @staticmethod
    def _default_arch(model: Any, args: Any) -> str:
        for key in ("model", "MODEL"):
            value = args.get(key) if isinstance(args, Mapping) else getattr(args, key, None)
            if isinstance(value, str) and value:
                return value
        return type(unwrap_model(model)).__name__

    def _rank_key(self, entry: _Entry):
        # ranked entries first, best first, older first on ties (a new equal metric does not
        # displace an old one, as in timm); unranked (no metric) entries after, newest first
        if entry.metric is None:
            return (1, -entry.epoch)
        return (0, entry.metric if self.decreasing else -entry.metric, entry.epoch)

    def _is_better(self, metric: float, than: Optional[float]) -> bool:
        if than is None:
            return True
        return metric < than if self.decreasing else metric > than

    def _path(self, entry: _Entry) -> str:
        return os.path.join(self.checkpoint_dir, entry.file)

    @property
    def checkpoint_files(self) -> List[Tuple[str, Optional[float]]]:
        """``(path, metric)`` of the kept checkpoints, best first."""
        return [(self._path(e), e.metric) for e in self._entries]

    def _read_index(self) -> Optional[dict]:
        if not os.path.exists(self.index_path):
            return None
        try:
            with open(self.index_path, encoding="utf-8") as f:
                index = json.load(f)
            if index.get("format") != _INDEX_FORMAT:
                raise ValueError(f"unknown format {index.get('format')!r}")
        except (OSError, ValueError) as err:
            _logger.warning("ignoring unreadable checkpoint index %s (%s); ranking rebuilt from "
                            "the checkpoint files", self.index_path, err)
            return None
        if bool(index["decreasing"]) != self.decreasing:
            raise ValueError(
                f"{self.checkpoint_dir} holds checkpoints ranked with decreasing="
                f"{index['decreasing']}, but this saver has decreasing={self.decreasing}; use the "
                "same eval metric direction as that run, or another output folder"
            )
        return index

    def _read_file_metric(self, path: str) -> Optional[Tuple[int, Optional[float]]]:
        try:
            checkpoint = _read_state(path)
            return int(checkpoint["epoch"]), _as_metric(checkpoint.get("metric"))
        except Exception as err:  # a foreign or damaged file must not stop a resume
            _logger.warning("skipping %s while rebuilding the checkpoint ranking: %s", path, err)
            return None

    def _file_epoch(self, name: str) -> int:
        return int(self._checkpoint_re.fullmatch(name).group(1))

    def _restore_ranking(self) -> None:
        index = self._read_index()
        last = (self._read_file_metric(self.last_path) if os.path.exists(self.last_path)
                else None)
        entries = {}
        if index is not None:
            for item in index["checkpoints"]:
                entry = _Entry(item["file"], int(item["epoch"]), item["metric"])
                if os.path.exists(self._path(entry)):
                    entries[entry.file] = entry
        indexed_last = index.get("last_epoch") if index is not None else None
        for name in sorted(os.listdir(self.checkpoint_dir)):
            if name in entries or not self._checkpoint_re.fullmatch(name):
                continue
            if indexed_last is not None and self._file_epoch(name) <= indexed_last:
                # not in an index written after its epoch: evicted, and the crash came before
                # the file was deleted
                os.remove(os.path.join(self.checkpoint_dir, name))
                continue
            # written just before a crash (the link of an unfinished save), or by an older saver
            read = self._read_file_metric(os.path.join(self.checkpoint_dir, name))
            if read is not None:
                entries[name] = _Entry(name, *read)
        self._entries = sorted(entries.values(), key=self._rank_key)

        best = index.get("best") if index is not None else None
        if best is None and os.path.exists(self.best_path):
            read = self._read_file_metric(self.best_path)
            best = None if read is None else {"epoch": read[0], "metric": read[1]}
        if best is None:
            ranked = [e for e in self._entries if e.metric is not None]
            best = {"epoch": ranked[0].epoch, "metric": ranked[0].metric} if ranked else None
        if best is not None and best["metric"] is not None:
            self.best_epoch, self.best_metric = int(best["epoch"]), float(best["metric"])
        if last is not None and (index is None or indexed_last != last[0]):
            _logger.info("finishing the interrupted save of epoch %d from %s", last[0],
                         self.last_path)
            self._commit(*last)
        self._restore_best_file(last)
        if self._entries:
            _logger.info("resumed checkpoint ranking from %s: %s", self.checkpoint_dir,
                         [(e.epoch, e.metric) for e in self._entries])

    def _restore_best_file(self, last: Optional[Tuple[int, Optional[float]]]) -> None:
        """Re-create ``model_best`` when the ranking names an epoch whose file still exists but
        ``model_best`` does not (deleted by hand, or lost by an older saver)."""
        if self.best_epoch is None or os.path.exists(self.best_path):
            return
        sources = [self._path(e) for e in self._entries if e.epoch == self.best_epoch]
        if last is not None and last[0] == self.best_epoch:
            sources.append(self.last_path)
        if sources:
            atomic_link(sources[0], self.best_path)
        else:
            _logger.warning("the best epoch %d has no checkpoint file left in %s; model_best "
                            "returns with the next better epoch", self.best_epoch,
                            self.checkpoint_dir)
            self.best_epoch = self.best_metric = None

    def _write_index(self) -> None:
        best = None if self.best_epoch is None else {"epoch": self.best_epoch,
                                                      "metric": self.best_metric}
        index = {"format": _INDEX_FORMAT, "decreasing": self.decreasing,
                 "checkpoints": [asdict(e) for e in self._entries], "best": best,
                 "last_epoch": self._last_epoch}
        atomic_write_text(json.dumps(index, indent=1), self.index_path)

    # ---- saving ---------------------------------------------------------------------------
    def _state(self, epoch: int, metric: Optional[float], extra_state: Optional[Mapping]) -> dict:
        state = {
            "state_dict": unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "epoch": int(epoch),
            "version": CHECKPOINT_VERSION,
            "arch": self.arch,
            "args": to_plain_dict(self.args),
            "metric": metric,
        }
        if self.model_ema is not None:
            state["state_dict_ema"] = unwrap_model(self.model_ema).state_dict()
        if self.scheduler is not None:
            state["scheduler"] = self.scheduler.state_dict()
        if extra_state:
            clash = sorted(set(extra_state) & set(_RESERVED_KEYS))
            if clash:
                raise ValueError(f"extra_state may not use the checkpoint's own keys {clash}; "
                                 "rename them")
            state.update(extra_state)
        return state

    def save_checkpoint(self, epoch: int, metric: Any = None,
                        extra_state: Optional[Mapping] = None
                        ) -> Tuple[Optional[float], Optional[int]]:
        """Save epoch ``epoch`` (just completed) with its eval ``metric``; returns
        ``(best_metric, best_epoch)`` so far, ``(None, None)`` before any metric. Raises
        NonFiniteStateError, writing nothing, when the weights hold NaN or Inf
        (:meth:`check_finite`)."""
        if epoch < 0:
            raise ValueError(f"save_checkpoint: epoch must be >= 0, got {epoch}")
        metric = _as_metric(metric)
        self.check_finite(f"epoch {epoch}")
        atomic_save(self._state(epoch, metric, extra_state), self.last_path)
        self._commit(int(epoch), metric)
        # a crash between writing a recovery file and deleting the one before leaves both
        newest = self.find_recovery()
        if newest:
            self._remove_recoveries_but(os.path.basename(newest))
        _logger.info("checkpoints kept (epoch, metric): %s",
                     [(e.epoch, e.metric) for e in self._entries])
        return (self.best_metric, self.best_epoch)

    def _commit(self, epoch: int, metric: Optional[float]) -> None:
        """Everything an epoch's save does after ``last`` holds it: rank it, link
        ``checkpoint-<epoch>`` and ``model_best`` to ``last``, write the index, delete evicted
        files. Repeating it for the same ``last`` changes nothing, so a new saver can finish a
        save that a crash cut short."""
        entry = _Entry(f"{self.checkpoint_prefix}-{epoch}{self.extension}", epoch, metric)
        ranked = sorted([e for e in self._entries if e.file != entry.file] + [entry],
                        key=self._rank_key)
        kept, evicted = ranked[:self.max_history], ranked[self.max_history:]
        if entry in kept:
            atomic_link(self.last_path, self._path(entry))
        else:
            evicted.append(entry)  # a file of that name from an earlier attempt is stale now
        if metric is not None and self._is_better(metric, self.best_metric):
            atomic_link(self.last_path, self.best_path)
            self.best_metric, self.best_epoch = metric, epoch
        self._entries = kept
        self._last_epoch = epoch
        # the index is written before files are deleted: a crash in between leaves extra files,
        # which the next saver deletes (their epoch is not after the index's last_epoch), never
        # an index entry without its file
        self._write_index()
        for old in evicted:
            if os.path.exists(self._path(old)):
                os.remove(self._path(old))

    def save_recovery(self, epoch: int, batch_idx: int = 0,
                      extra_state: Optional[Mapping] = None) -> str:
        """Save a mid-epoch recovery point (``batch_idx`` is stored too); older recovery files in
        ``recovery_dir`` are removed once it is in place. Returns its path."""
        if epoch < 0 or batch_idx < 0:
            raise ValueError(f"save_recovery: epoch and batch_idx must be >= 0, got {epoch}, "
                             f"{batch_idx}")
        self.check_finite(f"epoch {epoch}, batch {batch_idx}")
        state = self._state(epoch, None, extra_state)
        state["batch_idx"] = int(batch_idx)
        name = f"{self.recovery_prefix}-{epoch}-{batch_idx}{self.extension}"
        path = os.path.join(self.recovery_dir, name)
        atomic_save(state, path)
        self._remove_recoveries_but(name)
        return path

    def check_finite(self, when: str) -> None:
        """Raise NonFiniteStateError when the model's (or EMA's) weights hold NaN or Inf, with the
        message a save would give (``when``: "epoch 3"); for files written beside a checkpoint
        and before it (the summary, a search's board), so a diverged epoch writes none of them."""
        for key, model in (("state_dict", self.model), ("state_dict_ema", self.model_ema)):
            name = None if model is None else _first_non_finite(unwrap_model(model).state_dict())
            if name is not None:
                raise NonFiniteStateError(
                    f"training diverged: the weights of {when} are not finite ({key} entry {name!r} "
                    f"holds NaN or Inf); refusing to save them, so the checkpoints in "
                    f"{self.checkpoint_dir} stay as they were and a rerun resumes from the last "
                    "finite one. Lower LR (or check the data) and run again")

    def _remove_recoveries_but(self, name: str) -> None:
        for other in os.listdir(self.recovery_dir):
            if other != name and self._recovery_re.fullmatch(other):
                os.remove(os.path.join(self.recovery_dir, other))

    def find_recovery(self) -> str:
        """Path of the newest recovery file (by epoch, then batch), or '' if there is none."""
        newest = self.newest_recovery(self.recovery_dir, self.recovery_prefix, self.extension)
        return newest[2] if newest is not None else ""

    # ---- file names, for code that resumes a run --------------------------------------------
    @staticmethod
    def last_file(folder: str, extension: str = _DEFAULT_EXTENSION) -> str:
        """Path of the latest epoch's checkpoint in ``folder`` (which may not exist yet)."""
        return os.path.join(folder, _LAST_NAME + extension)

    @staticmethod
    def newest_recovery(folder: str, prefix: str = _DEFAULT_RECOVERY_PREFIX,
                        extension: str = _DEFAULT_EXTENSION) -> Optional[Tuple[int, int, str]]:
        """``(epoch, batch, path)`` of the newest recovery file in ``folder`` (by epoch, then
        batch), or None."""
        found = _recovery_files(folder, prefix, extension)
        # timm sorted names as strings and returned the first: recovery-10 before recovery-9
        return found[0] if found else None

    @classmethod
    def resume_file(cls, folder: str, extension: str = _DEFAULT_EXTENSION) -> Optional[str]:
        """The newest intact state a saver left in ``folder``: ``last`` (the end of an epoch),
        or the newest recovery file when it belongs to a later epoch; None when there is
        neither.

        A truncated or corrupt candidate is passed over, with a warning naming it and the file
        used instead, for the next newest: ``last`` or the recovery file, then (``last`` existing
        but unreadable) the recovery and ``checkpoint-<epoch>`` files from the newest on (a
        recovery file of epoch N comes before ``checkpoint-N``, which ends that epoch), and
        ``model_best``.
        Raises ValueError when files exist but none is intact, and at once for a file the
        restricted reader refuses (a planted file is reported, never skipped).
        """
        last = cls.last_file(folder, extension)
        problems: List[Tuple[str, BaseException]] = []
        last_epoch = _intact_epoch(last, problems) if os.path.isfile(last) else None
        recoveries = _recovery_files(folder, _DEFAULT_RECOVERY_PREFIX, extension)
        if last_epoch is not None:
            candidates = [path for epoch, _, path in recoveries if epoch > last_epoch]
        elif not problems:  # no epoch has ended yet: at most a recovery point
            candidates = [path for _, _, path in recoveries]
        else:
            newest_first = sorted(recoveries + _epoch_files(folder, extension), reverse=True)
            best = os.path.join(folder, _BEST_NAME + extension)
            candidates = ([path for _, _, path in newest_first]
                          + ([best] if os.path.isfile(best) else []))
        chosen = next((path for path in candidates if _intact_epoch(path, problems) is not None),
                      last if last_epoch is not None else None)
        if chosen is None and problems:
            bad, err = problems[0]
            raise ValueError(f"cannot resume from the run folder {folder}: {bad} is unreadable "
                             f"({err}) and no other checkpoint there is intact; move the folder "
                             "away (or set AUTO_RESUME False) to start afresh")
        for bad, err in problems:
            _logger.warning("cannot resume from %s (%s); resuming from %s instead", bad, err,
                            chosen)
        return chosen


def _intact_epoch(path: str, problems: List[Tuple[str, BaseException]]) -> Optional[int]:
    """The epoch of the checkpoint at ``path``, or None (recorded in ``problems``) when it is
    truncated or corrupt; a file the restricted reader refuses raises."""
    try:
        return int(_read_state(path)["epoch"])
    except UnsafeCheckpointError as err:
        raise ValueError(f"cannot resume from {path}: {err}") from err
    except (ValueError, OSError) as err:
        problems.append((path, err))
        return None


def _recovery_files(folder: str, prefix: str, extension: str) -> List[Tuple[int, int, str]]:
    """``(epoch, batch, path)`` of the recovery files in ``folder``, newest first."""
    pattern = _recovery_pattern(prefix, extension)
    found = [(int(m.group(1)), int(m.group(2)), os.path.join(folder, name))
             for name in os.listdir(folder) for m in [pattern.fullmatch(name)] if m]
    return sorted(found, reverse=True)


def _epoch_files(folder: str, extension: str) -> List[Tuple[int, float, str]]:
    """``(epoch, inf, path)`` of the ``checkpoint-<epoch>`` files of ``folder``: the end of the
    epoch, after any of its recovery points."""
    pattern = re.compile(rf"{_DEFAULT_CHECKPOINT_PREFIX}-(\d+){re.escape(extension)}")
    return [(int(m.group(1)), math.inf, os.path.join(folder, name))
            for name in os.listdir(folder) for m in [pattern.fullmatch(name)] if m]
