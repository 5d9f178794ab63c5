"""The prioritized path board: the best paths seen while training the supernet, and path sampling.

The board keeps up to ``pool_size`` paths, ranked by the top-1 accuracy they reached on the
training batch they were sampled for (the reference's measure). Each entry also keeps the first
``SLICE`` images of that batch and the path's own softmax on them: the meta-matching network
compares a student's outputs on those images with these stored ones to pick its teacher.

Deliberate differences from the reference (microsoft/Cream ``PrioritizedBoard``):

* an entry stores the *student's* softmax features; the reference stored the teacher's for every
  entry after the first (issue #25 / nni #3418);
* only paths inside ``[flops_minimum, flops_maximum]`` enter, so teachers and the exported
  candidates respect the FLOPs budget (the reference admitted any sampled path);
* a path already on the board keeps a single entry, its best measurement (the reference could list
  the same path several times, wasting slots and skewing 'teacher' sampling);
* ties in accuracy rank the cheaper path first;
* a path never teaches itself: its own entry's KD gradient (and hence the meta gradient) is exactly
  zero, so the reference, which let the student pick its own entry, wasted those steps;
* path sampling draws with the configured probabilities (the reference passed them to
  ``np.random.choice`` as its ``replace`` argument, so every mode sampled uniformly), and
  'teacher' probabilities count only the searched stages 1-5 (the reference also counted the fixed
  ``[0]`` of stages 0 and 6, inflating choice 0);
* 'teacher' sampling mixes the board's choice frequencies with the uniform distribution
  (``SUPERNET.UNIFORM_MIX``): a board of cheap paths would otherwise never sample the choices it
  lacks again, and those blocks would stop training for the rest of the search.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import paddle

__all__ = [
    "PICK_METHODS",
    "SAMPLING_MODES",
    "BoardEntry",
    "PrioritizedBoard",
    "PathSampler",
    "select_teacher",
]

ArchList = List[List[int]]

#: How a student picks its teacher on the board. 'none' turns distillation (and meta-matching) off:
#: training is plain cross-entropy, the board still records the best paths (SPOS-style baseline).
PICK_METHODS = ("meta", "top1", "none")
#: How paths are sampled: uniformly, with SUPERNET.PRE_PROB per layer, or with the frequency of each
#: choice among the board's paths.
SAMPLING_MODES = ("even", "pre_prob", "teacher")

# The reference weighs KD and CE equally, (0.5 * KD + 1.5 * CE) / 2, when the teacher is the top-1.
TOP1_MATCHING_SCORE = 0.5


@dataclass
class BoardEntry:
    arch: ArchList
    prec1: float  # top-1 (%) on the training batch the path was sampled for
    flops: float  # MFLOPs (the supernet's FLOPs table)
    params: float  # M parameters
    images: paddle.Tensor  # [SLICE, 3, H, W], the first images of that batch
    features: paddle.Tensor  # [SLICE, num_classes], the path's softmax on them

    def summary(self) -> Dict[str, Any]:
        return {"arch": [list(s) for s in self.arch], "flops": float(self.flops),
                "params": float(self.params), "prec1": float(self.prec1)}


def _arch_key(arch: Sequence[Sequence[int]]) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(int(c) for c in stage) for stage in arch)


class PrioritizedBoard:
    """Up to ``pool_size`` paths, best first.

    A path within the FLOPs range enters when the board is not full, when its accuracy beats the
    worst entry's by more than ``acc_gap`` points, or when it beats the worst entry with fewer FLOPs
    (the reference's rules); the worst entry then leaves if the board is over capacity.
    """

    def __init__(self, pool_size: int, flops_minimum: float, flops_maximum: float,
                 acc_gap: float = 5.0) -> None:
        if pool_size < 1:
            raise ValueError(f"SUPERNET.POOL_SIZE must be >= 1, got {pool_size}")
        if flops_minimum > flops_maximum:
            raise ValueError(f"the FLOPs range [{flops_minimum}, {flops_maximum}] is empty; set "
                             "SUPERNET.FLOPS_MINIMUM <= SUPERNET.FLOPS_MAXIMUM")
        self.pool_size = int(pool_size)
        self.flops_minimum = float(flops_minimum)
        self.flops_maximum = float(flops_maximum)
        self.acc_gap = float(acc_gap)
        self._entries: List[BoardEntry] = []

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def entries(self) -> List[BoardEntry]:
        """The entries, best first (a copy of the list; the entries themselves are shared)."""
        return list(self._entries)

    def best(self) -> Optional[BoardEntry]:
        return self._entries[0] if self._entries else None

    def in_range(self, flops: float) -> bool:
        return self.flops_minimum <= flops <= self.flops_maximum

    def _index_of(self, arch: Sequence[Sequence[int]]) -> Optional[int]:
        key = _arch_key(arch)
        for i, entry in enumerate(self._entries):
            if _arch_key(entry.arch) == key:
                return i
        return None

    def teachers_for(self, arch: Sequence[Sequence[int]]) -> List[int]:
        """The board indices that may teach ``arch``: every entry but its own, best first."""
        own = self._index_of(arch)
        return [i for i in range(len(self._entries)) if i != own]

    def would_admit(self, prec1: float, flops: float,
                    arch: Optional[Sequence[Sequence[int]]] = None) -> bool:
        """Whether a path measured at ``prec1`` with ``flops`` would enter the board now."""
        if not self.in_range(flops):
            return False
        if arch is not None:
            known = self._index_of(arch)
            if known is not None:
                return prec1 > self._entries[known].prec1
        if len(self._entries) < self.pool_size:
            return True
        worst = self._entries[-1]
        if prec1 > worst.prec1 + self.acc_gap:
            return True
        return prec1 > worst.prec1 and flops < worst.flops

    def consider(self, arch: Sequence[Sequence[int]], prec1: float, flops: float, params: float,
                 images: paddle.Tensor, features: paddle.Tensor) -> bool:
        """Add the path if it qualifies (see the class doc); returns whether it entered.

        ``images``/``features`` are the first SLICE images of the batch and the path's softmax on
        them; they are detached and copied, so later in-place updates cannot change the board.
        """
        if not self.would_admit(prec1, flops, arch):
            return False
        known = self._index_of(arch)
        if known is not None:
            del self._entries[known]
        self._entries.append(BoardEntry(
            arch=[list(map(int, s)) for s in arch], prec1=float(prec1), flops=float(flops),
            params=float(params), images=images.detach().clone(),
            features=features.detach().clone()))
        self._entries.sort(key=lambda e: (-e.prec1, e.flops))
        del self._entries[self.pool_size:]
        return True

    def choice_counts(self, num_choices: int) -> np.ndarray:
        """How often each choice index appears in the searched stages (1-5) of the board's paths."""
        counts = np.zeros(num_choices, dtype=np.int64)
        for entry in self._entries:
            for stage in entry.arch[1:-1]:
                for choice in stage:
                    if choice >= 0:
                        counts[choice] += 1
        return counts

    # ---- export and checkpointing ----------------------------------------------------------
    def to_json(self, epoch: int) -> Dict[str, Any]:
        """The board as written to ``board.json`` (see README, "Searching")."""
        paths = [e.summary() for e in self._entries]
        # only in-range paths enter, so the best of the board is the best within the budget
        return {"paths": paths, "best_in_range": paths[0] if paths else None,
                "flops_minimum": self.flops_minimum, "flops_maximum": self.flops_maximum,
                "epoch": int(epoch)}

    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue with the same board (numpy arrays; pickles with paddle.save)."""
        return {"pool_size": self.pool_size, "flops_minimum": self.flops_minimum,
                "flops_maximum": self.flops_maximum, "acc_gap": self.acc_gap,
                "entries": [dict(e.summary(), images=e.images.numpy(), features=e.features.numpy())
                            for e in self._entries]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if (state["flops_minimum"], state["flops_maximum"]) != (self.flops_minimum, self.flops_maximum):
            raise ValueError(
                f"the saved board was built for the FLOPs range [{state['flops_minimum']}, "
                f"{state['flops_maximum']}], this run searches [{self.flops_minimum}, "
                f"{self.flops_maximum}]; resume with the same SUPERNET.FLOPS_MINIMUM/FLOPS_MAXIMUM")
        entries = [BoardEntry(arch=[list(s) for s in e["arch"]], prec1=float(e["prec1"]),
                              flops=float(e["flops"]), params=float(e["params"]),
                              images=paddle.to_tensor(e["images"]),
                              features=paddle.to_tensor(e["features"]))
                   for e in state["entries"]]
        self._entries = sorted(entries, key=lambda e: (-e.prec1, e.flops))[:self.pool_size]


def select_teacher(board: PrioritizedBoard, pick_method: str,
                   scores: Optional[Sequence[float]] = None,
                   student: Optional[Sequence[Sequence[int]]] = None) -> Tuple[int, float]:
    """The board index of the student's teacher and its matching score ``rho`` in [0, 1].

    Candidates are the board's entries except ``student``'s own (``board.teachers_for``).
    'top1': the best candidate, with the reference's fixed score 0.5. 'meta': ``scores`` are the
    meta layer's raw outputs for each board entry; the teacher is the candidate with the highest
    matching score
    ``rho = sigmoid(score)`` and the KD weight is that same ``rho``. The paper defines the matching
    score as the meta network's sigmoid output and picks the prioritized path with the highest one;
    the reference instead weighted KD by ``sigmoid(-score)`` of the board's *last* entry, i.e. the
    selected teacher got the lowest weight it could have and the weight came from another path.
    """
    candidates = board.teachers_for(student) if student is not None else list(range(len(board)))
    if not candidates:
        raise ValueError("select_teacher: the board holds no path other than the student")
    if pick_method == "top1":
        return candidates[0], TOP1_MATCHING_SCORE
    if pick_method == "meta":
        if scores is None or len(scores) != len(board):
            raise ValueError(f"select_teacher('meta') needs one score per board entry ({len(board)})")
        index = max(candidates, key=lambda i: float(scores[i]))
        return index, 1.0 / (1.0 + math.exp(-float(scores[index])))
    raise ValueError(f"SUPERNET.PICK_METHOD must be one of {PICK_METHODS} to pick a teacher, "
                     f"got {pick_method!r}")


class PathSampler:
    """Draws paths ``[[0], stage1, ..., stage5, [0]]`` with one choice per layer of ``sta_num``.

    Its generator is seeded from ``seed`` alone: every rank of a distributed run draws the same
    paths (the supernet's gradients are only summable when all ranks train the same path), and its
    state goes into checkpoints so a resumed run continues the same sequence.
    """

    def __init__(self, sta_num: Sequence[int], num_choices: int, mode: str = "even",
                 pre_prob: Optional[Sequence[float]] = None, seed: int = 0,
                 uniform_mix: float = 0.0) -> None:
        if mode not in SAMPLING_MODES:
            raise ValueError(f"SUPERNET.HOW_TO_PROB must be one of {SAMPLING_MODES}, got {mode!r}")
        if not 0.0 <= uniform_mix <= 1.0:
            raise ValueError(f"SUPERNET.UNIFORM_MIX must be in [0, 1], got {uniform_mix}")
        self.sta_num = [int(n) for n in sta_num]
        self.num_choices = int(num_choices)
        self.mode = mode
        self.uniform_mix = float(uniform_mix)
        self.pre_prob = None
        if mode == "pre_prob":
            prob = np.asarray(pre_prob if pre_prob is not None else (), dtype=np.float64)
            if prob.shape != (self.num_choices,) or (prob < 0).any() or not np.isclose(prob.sum(), 1.0):
                raise ValueError(
                    f"SUPERNET.PRE_PROB must hold {self.num_choices} non-negative probabilities "
                    f"summing to 1 (one per choice), got {tuple(prob.tolist())}")
            self.pre_prob = prob
        self.rng = np.random.default_rng(seed)

    def probabilities(self, board: Optional[PrioritizedBoard] = None) -> Optional[np.ndarray]:
        """Per-choice probabilities for the next draw; None means uniform.

        'teacher' is uniform while the board is empty, as in the reference, and afterwards
        ``(1 - uniform_mix) * board frequency + uniform_mix / num_choices``, so every choice keeps
        at least ``uniform_mix / num_choices``.
        """
        if self.mode == "pre_prob":
            return self.pre_prob
        if self.mode == "teacher" and board is not None and len(board):
            counts = board.choice_counts(self.num_choices).astype(np.float64)
            return (1.0 - self.uniform_mix) * counts / counts.sum() + self.uniform_mix / self.num_choices
        return None

    def sample(self, board: Optional[PrioritizedBoard] = None) -> ArchList:
        prob = self.probabilities(board)
        stages = [self.rng.choice(self.num_choices, size=n, p=prob).tolist() for n in self.sta_num]
        return [[0]] + stages + [[0]]

    def sample_within(self, cost: Callable[[ArchList], float], low: float, high: float,
                      tries: int = 10000) -> ArchList:
        """A path whose ``cost`` (MFLOPs) lies in ``[low, high]``, drawn by rejection.

        The supernet of a budget also holds paths above it (its size is set by the largest
        choices); such a path can never enter the board, so judging the supernet by it says little.
        """
        for _ in range(tries):
            arch = self.sample()
            if low <= cost(arch) <= high:
                return arch
        raise ValueError(f"no path within [{low:g}, {high:g}] MFLOPs in {tries} draws: widen "
                         f"SUPERNET.FLOPS_MINIMUM/FLOPS_MAXIMUM")

    def state_dict(self) -> Dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
