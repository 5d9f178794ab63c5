"""DARTS cell genotypes: the operation set, the published cells, validation and JSON files.

A genotype describes the two cell types of a DARTS network. ``normal`` and ``reduce`` list two
``(operation, input)`` pairs per intermediate node, in node order: the pairs of node ``i`` (0-based)
take inputs in ``[0, i + 2)``, where 0 and 1 are the cell's two inputs (the outputs of the previous
two cells) and ``k >= 2`` is intermediate node ``k - 2``. ``normal_concat`` / ``reduce_concat`` name
the states concatenated into the cell output. The order of the pairs is part of the genotype: the
evaluation network builds its operations in that order, and checkpoints name them by position.

Genotypes are data: files hold JSON (``{name: {"normal": [["sep_conv_3x3", 0], ...], ...}}``),
read by :func:`load_genotypes` with full validation; nothing is ever evaluated.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, Mapping, NamedTuple, Sequence, Tuple

from pimm.utils.file_io import atomic_write_text

__all__ = [
    "DARTS_V1", "DARTS_V2", "Genotype", "GenotypeError", "PDARTS", "PRIMITIVES", "PUBLISHED_GENOTYPES",
    "genotype_from_dict", "genotype_to_dict", "load_genotypes", "resolve_genotype", "save_genotypes",
    "validate_genotype",
]

# The operations of the DARTS space, in the order of the search network's architecture weights.
PRIMITIVES: Tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)

Edge = Tuple[str, int]


class Genotype(NamedTuple):
    """A searched cell pair (the official field names and order)."""

    normal: Tuple[Edge, ...]
    normal_concat: Tuple[int, ...]
    reduce: Tuple[Edge, ...]
    reduce_concat: Tuple[int, ...]


class GenotypeError(ValueError):
    """A genotype (or genotype file) that is malformed; the message names the place and the fix."""


def _genotype(normal: Sequence[Edge], reduce: Sequence[Edge], concat: Sequence[int] = (2, 3, 4, 5)) -> Genotype:
    return Genotype(tuple(normal), tuple(concat), tuple(reduce), tuple(concat))


# Published cells, copied value by value from the official genotypes (chenxin061/pdarts, quark0/darts).
DARTS_V1 = _genotype(
    normal=[("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)],
)
DARTS_V2 = _genotype(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
)
PDARTS = _genotype(
    normal=[("skip_connect", 0), ("dil_conv_3x3", 1), ("skip_connect", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("sep_conv_3x3", 3), ("sep_conv_3x3", 0), ("dil_conv_5x5", 4)],
    reduce=[("avg_pool_3x3", 0), ("sep_conv_5x5", 1), ("sep_conv_3x3", 0), ("dil_conv_5x5", 2),
            ("max_pool_3x3", 0), ("dil_conv_3x3", 1), ("dil_conv_3x3", 1), ("dil_conv_5x5", 3)],
)
PUBLISHED_GENOTYPES: Dict[str, Genotype] = {"PDARTS": PDARTS, "DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2}

_FIELDS = Genotype._fields


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_edges(edges: Any, where: str) -> Tuple[Edge, ...]:
    if not isinstance(edges, (list, tuple)) or not edges or len(edges) % 2:
        raise GenotypeError(f"{where} must be a non-empty list of [operation, input] pairs, two per node; "
                            f"got {edges!r}")
    checked = []
    for position, edge in enumerate(edges):
        node = position // 2
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise GenotypeError(f"{where}[{position}] must be an [operation, input] pair, got {edge!r}")
        op, index = edge
        if op not in PRIMITIVES:
            raise GenotypeError(f"{where}[{position}] has unknown operation {op!r}; "
                                f"use one of {', '.join(PRIMITIVES)}")
        if not _is_int(index) or not 0 <= index < node + 2:
            raise GenotypeError(f"{where}[{position}] (node {node}) takes input {index!r}, but node {node} can "
                                f"only take 0..{node + 1} (the two cell inputs and the nodes before it)")
        checked.append((op, index))
    return tuple(checked)


def _check_concat(concat: Any, num_states: int, where: str) -> Tuple[int, ...]:
    if isinstance(concat, range):
        concat = list(concat)
    if (not isinstance(concat, (list, tuple)) or not concat
            or not all(_is_int(i) and 0 <= i < num_states for i in concat)):
        raise GenotypeError(f"{where} must be a non-empty list of state indices in 0..{num_states - 1}, "
                            f"got {concat!r}")
    return tuple(concat)


def validate_genotype(genotype: Any, where: str = "genotype") -> Genotype:
    """Check ``genotype`` (a Genotype or any 4-sequence in field order) and return it as a
    ``Genotype`` of tuples. Raises GenotypeError naming the bad field, position and fix."""
    if not isinstance(genotype, (list, tuple)) or len(genotype) != len(_FIELDS):
        raise GenotypeError(f"{where} must have the fields {', '.join(_FIELDS)}, got {genotype!r}")
    normal, normal_concat, reduce, reduce_concat = genotype
    normal = _check_edges(normal, f"{where}.normal")
    reduce = _check_edges(reduce, f"{where}.reduce")
    return Genotype(normal, _check_concat(normal_concat, len(normal) // 2 + 2, f"{where}.normal_concat"),
                    reduce, _check_concat(reduce_concat, len(reduce) // 2 + 2, f"{where}.reduce_concat"))


def genotype_to_dict(genotype: Genotype) -> Dict[str, list]:
    """JSON-ready form: ``{"normal": [[op, input], ...], "normal_concat": [...], ...}``."""
    genotype = validate_genotype(genotype)
    return {field: [list(item) if isinstance(item, tuple) else item for item in value]
            for field, value in zip(_FIELDS, genotype)}


def genotype_from_dict(data: Any, where: str = "genotype") -> Genotype:
    """The genotype in a parsed JSON object with exactly the four fields; validated."""
    if not isinstance(data, dict):
        raise GenotypeError(f"{where} must be a JSON object with the keys {', '.join(_FIELDS)}, "
                            f"got {type(data).__name__}")
    missing = [f for f in _FIELDS if f not in data]
    unknown = sorted(set(data) - set(_FIELDS))
    if missing or unknown:
        raise GenotypeError(f"{where} must have exactly the keys {', '.join(_FIELDS)}"
                            f"{'; missing ' + ', '.join(missing) if missing else ''}"
                            f"{'; unknown ' + ', '.join(map(str, unknown)) if unknown else ''}")
    return validate_genotype([data[f] for f in _FIELDS], where)


def save_genotypes(path: str, genotypes: Mapping[str, Genotype]) -> None:
    """Write ``{name: genotype}`` to ``path`` as JSON (atomically: temp file, then rename)."""
    # One line per field, so a file reads like the cells it describes.
    entries = []
    for name, genotype in genotypes.items():
        fields = ",\n".join(f"    {json.dumps(field)}: {json.dumps(value)}"
                            for field, value in genotype_to_dict(genotype).items())
        entries.append(f"  {json.dumps(str(name))}: {{\n{fields}\n  }}")
    atomic_write_text("{\n" + ",\n".join(entries) + "\n}\n", path)


def load_genotypes(path: str) -> Dict[str, Genotype]:
    """Read a genotype file written by :func:`save_genotypes` (or by hand): a JSON object mapping
    names to genotypes. Every genotype is validated; errors name the file and the entry."""
    if not os.path.isfile(path):
        raise GenotypeError(f"genotype file {path} not found: give the genotypes.json a search wrote, "
                            f"or a published genotype name ({', '.join(PUBLISHED_GENOTYPES)})")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise GenotypeError(f"cannot read genotype file {path}: {err}; it must be JSON "
                            f"({{name: {{\"normal\": [[op, input], ...], ...}}}})") from err
    if not isinstance(data, dict) or not data:
        raise GenotypeError(f"genotype file {path} must hold a non-empty JSON object of name -> genotype")
    return {name: genotype_from_dict(value, f"{path}: {name}") for name, value in data.items()}


def resolve_genotype(spec: str, default_name: str = "recommended") -> Genotype:
    """A genotype from a published name (``PDARTS``, ``DARTS_V1``, ``DARTS_V2``), a genotype file
    (its ``default_name`` entry, or its only entry), or ``FILE:NAME`` for a named entry of a file."""
    if spec in PUBLISHED_GENOTYPES:
        return PUBLISHED_GENOTYPES[spec]
    path, name = spec, None
    if not os.path.isfile(spec) and ":" in spec:
        path, _, name = spec.rpartition(":")
    genotypes = load_genotypes(path)
    if name is None:
        if len(genotypes) == 1:
            return next(iter(genotypes.values()))
        name = default_name
    if name not in genotypes:
        raise GenotypeError(f"genotype file {path} has no entry {name!r}; it has {', '.join(genotypes)} "
                            f"(choose one with {path}:NAME)")
    return genotypes[name]
