"""Evolutionary search over a ``PathSpace`` under a FLOPs limit (SPOS's search), independent of any
network: candidates are scored by a fitness callback (higher is better, e.g. top-1 accuracy).

Generation 0 is ``population`` random paths; every later generation is ``mutations`` children of
the top-k (each gene redrawn with ``mutation_prob``), ``crossovers`` children of two top-k parents,
then random paths up to ``population``. A path above ``flops_limit`` is rejected unscored; a path
scored before is skipped, so each path is evaluated once. The top-k are the best of every path
scored so far. The state is plain data (``state_dict``), written after each generation; a search
restored from it continues exactly as an uninterrupted one.

Deliberate differences from the official search (megvii-model/SinglePathOneShot ``search.py``):

* every scored generation enters the top-k (the official scores a 21st population after its last
  top-k update, wasting those evaluations); ``generations`` counts the bred generations, so the
  default scores the same 21 x 50 paths;
* a crossover takes two *different* top-k parents when there are two (the official could cross a
  path with itself, which only produces an already-visited path);
* random filling stops after ``random_draws`` draws in a generation (the official loops forever
  when the FLOPs limit leaves fewer unvisited paths than it needs).
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from lib.spos.paths import Genes, PathSpace

__all__ = ["Candidate", "Evolution", "EvolutionConfig", "Fitness"]

_logger = logging.getLogger(__name__)

Fitness = Callable[[Any], float]  # decoded arch -> score, higher is better
ORIGINS = ("random", "mutation", "crossover")
_STATE_VERSION = 1


@dataclass(frozen=True)
class EvolutionConfig:
    """The official search's settings by default; ``flops_limit`` is in the space's FLOPs unit
    (the official 330e6 for SPOS) and None means no limit."""

    population: int = 50
    top_k: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1
    generations: int = 20
    flops_limit: Optional[float] = None
    tries_per_child: int = 10  # draws allowed per wanted mutation / crossover child (official 10)
    random_draws: int = 100_000  # random draws allowed per generation
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.population < 1 or self.top_k < 1 or self.generations < 0:
            problems.append("population and top_k must be >= 1, generations >= 0")
        if min(self.mutations, self.crossovers) < 0 or self.mutations + self.crossovers > self.population:
            problems.append(f"mutations + crossovers ({self.mutations} + {self.crossovers}) must be "
                            f"non-negative and at most the population ({self.population})")
        if not 0.0 <= self.mutation_prob <= 1.0:
            problems.append(f"mutation_prob must be in [0, 1], got {self.mutation_prob}")
        if self.tries_per_child < 1 or self.random_draws < 1:
            problems.append("tries_per_child and random_draws must be >= 1")
        if problems:
            raise ValueError("invalid evolution settings: " + "; ".join(problems))


@dataclass
class Candidate:
    """A scored path: its genes, FLOPs, score, the generation that scored it, how it was made and
    from which parents (none for random paths)."""

    genes: Genes
    flops: float
    score: float
    generation: int
    origin: str
    parents: Tuple[Genes, ...] = ()

    def to_dict(self) -> Dict[str, Any]:
        return {"genes": list(self.genes), "flops": self.flops, "score": self.score,
                "generation": self.generation, "origin": self.origin,
                "parents": [list(p) for p in self.parents]}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Candidate":
        return cls(tuple(int(g) for g in data["genes"]), float(data["flops"]), float(data["score"]),
                   int(data["generation"]), str(data["origin"]),
                   tuple(tuple(int(g) for g in p) for p in data["parents"]))


@dataclass
class _Generation:
    candidates: List[Candidate] = field(default_factory=list)
    rejected: int = 0  # draws above the FLOPs limit
    skipped: int = 0  # draws of paths scored before


class Evolution:
    """The search's state and its steps: ``step(fitness)`` scores one generation, ``run`` all."""

    def __init__(self, space: PathSpace, config: EvolutionConfig = EvolutionConfig()) -> None:
        self.space = space
        self.config = config
        self.rng = np.random.default_rng(config.seed)
        self.generation = 0  # generations scored so far
        self.history: List[Candidate] = []  # every scored path, in scoring order
        self.top_k: List[Candidate] = []  # best first
        self.log: List[Dict[str, Any]] = []  # one summary per scored generation
        self._scored: Dict[Genes, Candidate] = {}
        self._flops: Dict[Genes, float] = {}

    @property
    def done(self) -> bool:
        return self.generation > self.config.generations

    @property
    def best(self) -> Optional[Candidate]:
        return self.top_k[0] if self.top_k else None

    def path_flops(self, genes: Genes) -> float:
        if genes not in self._flops:
            self._flops[genes] = float(self.space.flops(genes))
        return self._flops[genes]

    # ---- one generation -------------------------------------------------------------------
    def _consider(self, genes: Genes, origin: str, parents: Tuple[Genes, ...], fitness: Fitness,
                  gen: _Generation) -> bool:
        """Score ``genes`` unless it was scored before or is over the limit; whether it was scored."""
        if genes in self._scored:
            gen.skipped += 1
            return False
        flops = self.path_flops(genes)
        if self.config.flops_limit is not None and flops > self.config.flops_limit:
            gen.rejected += 1
            return False
        score = float(fitness(self.space.decode(genes)))
        if not math.isfinite(score):
            raise ValueError(f"fitness of {list(genes)} is {score}; scores must be finite numbers")
        candidate = Candidate(genes, flops, score, self.generation, origin, parents)
        self._scored[genes] = candidate
        self.history.append(candidate)
        gen.candidates.append(candidate)
        return True

    def _breed(self, count: int, origin: str, fitness: Fitness, gen: _Generation) -> None:
        if not self.top_k or count == 0:
            return
        made = 0
        for _ in range(count * self.config.tries_per_child):
            if made == count:
                break
            if origin == "mutation":
                parents = (self.top_k[int(self.rng.integers(len(self.top_k)))].genes,)
                genes = self.space.mutate(parents[0], self.config.mutation_prob, self.rng)
            else:
                picks = self.rng.choice(len(self.top_k), size=2, replace=len(self.top_k) < 2)
                parents = tuple(self.top_k[int(i)].genes for i in picks)
                genes = self.space.crossover(parents[0], parents[1], self.rng)
            made += self._consider(genes, origin, parents, fitness, gen)

    def _fill_randomly(self, fitness: Fitness, gen: _Generation) -> None:
        for _ in range(self.config.random_draws):
            if len(gen.candidates) >= self.config.population:
                return
            self._consider(self.space.random_path(self.rng), "random", (), fitness, gen)
        if len(gen.candidates) < self.config.population:
            _logger.warning("generation %d: only %d of %d paths after %d random draws (%d above the FLOPs "
                            "limit, %d scored before); the limit leaves too few unscored paths",
                            self.generation, len(gen.candidates), self.config.population,
                            self.config.random_draws, gen.rejected, gen.skipped)

    def step(self, fitness: Fitness) -> List[Candidate]:
        """Score the next generation (``fitness`` gets decoded archs), update the top-k; returns the
        generation's candidates in scoring order."""
        if self.done:
            raise RuntimeError(f"the search is complete ({self.config.generations} bred generations)")
        gen = _Generation()
        if self.generation > 0:
            self._breed(self.config.mutations, "mutation", fitness, gen)
            self._breed(self.config.crossovers, "crossover", fitness, gen)
        self._fill_randomly(fitness, gen)
        # sort is stable: equal scores keep the earlier-scored path first
        self.top_k = sorted(self.top_k + gen.candidates, key=lambda c: -c.score)[:self.config.top_k]
        self.log.append({
            "generation": self.generation,
            "scored": {origin: sum(c.origin == origin for c in gen.candidates) for origin in ORIGINS},
            "rejected": gen.rejected, "skipped": gen.skipped,
            "best_score": self.top_k[0].score if self.top_k else None,
            "top_k": [list(c.genes) for c in self.top_k],
        })
        self.generation += 1
        return gen.candidates

    def run(self, fitness: Fitness, on_generation: Optional[Callable[["Evolution"], None]] = None
            ) -> Optional[Candidate]:
        """Score generations until done, calling ``on_generation(self)`` after each (checkpoint there);
        returns the best candidate (None when no path fits the FLOPs limit)."""
        while not self.done:
            self.step(fitness)
            if on_generation is not None:
                on_generation(self)
        return self.best

    # ---- checkpointing and reporting --------------------------------------------------------
    def state_dict(self) -> Dict[str, Any]:
        """Everything needed to continue identically, as JSON-serialisable plain data."""
        return {"version": _STATE_VERSION, "config": asdict(self.config),
                "num_choices": list(self.space.num_choices), "generation": self.generation,
                "rng": self.rng.bit_generator.state, "history": [c.to_dict() for c in self.history],
                "top_k": [list(c.genes) for c in self.top_k], "log": self.log}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore a saved search. Its settings must equal this one's, except ``generations``
        (a finished search can be continued for more)."""
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"evolution state version {state.get('version')!r} is not {_STATE_VERSION}")
        if list(state["num_choices"]) != list(self.space.num_choices):
            raise ValueError(f"the saved search ran on a space with choices {state['num_choices']}, "
                             f"this one has {list(self.space.num_choices)}")
        saved = {f.name: state["config"][f.name] for f in fields(EvolutionConfig)}
        mine = asdict(self.config)
        differ = [f"{k}: saved {saved[k]!r}, now {mine[k]!r}" for k in mine
                  if k != "generations" and saved[k] != mine[k]]
        if differ:
            raise ValueError("the saved search used other settings; resume with the same ones ("
                             + "; ".join(differ) + ")")
        self.history = [Candidate.from_dict(c) for c in state["history"]]
        self._scored = {c.genes: c for c in self.history}
        self.top_k = [self._scored[tuple(g)] for g in state["top_k"]]
        self.log = list(state["log"])
        self.generation = int(state["generation"])
        self.rng.bit_generator.state = state["rng"]

    def to_json(self) -> Dict[str, Any]:
        """The search's record for ``evolution.json``: every scored path (decoded arch, FLOPs, score,
        generation, origin), each generation's summary and top-k, and the best path."""
        def entry(c: Candidate) -> Dict[str, Any]:
            return {"arch": _plain(self.space.decode(c.genes)), "flops": c.flops, "score": c.score,
                    "generation": c.generation, "origin": c.origin}
        generations = [dict(summary, top_k=[entry(self._scored[tuple(g)]) for g in summary["top_k"]])
                       for summary in self.log]
        return {"config": asdict(self.config), "generations_scored": self.generation,
                "candidates": [entry(c) for c in self.history], "generations": generations,
                "best": entry(self.best) if self.best else None}


def _plain(arch: Any) -> Any:
    """Tuples -> lists, recursively (JSON has no tuples)."""
    if isinstance(arch, (list, tuple)):
        return [_plain(a) for a in arch]
    return int(arch) if isinstance(arch, (int, np.integer)) else arch
