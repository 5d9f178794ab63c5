"""DARTS / P-DARTS: the cell search space, genotypes, the evaluation networks, the search network
and P-DARTS' progressive search logic (Chen et al., ICCV 2019; official code chenxin061/pdarts).

Layout: ``genotypes`` and ``space`` (data: operations, cells, switches), ``operations``,
``model`` (``NetworkCIFAR``, ``NetworkImageNet``) and ``search_model`` (``SearchNetwork``), then
``pdarts`` (stages, pruning, skip-connect dropout, ``derive_genotype``).
"""
from .genotypes import (DARTS_V1, DARTS_V2, PDARTS, PRIMITIVES, PUBLISHED_GENOTYPES, Genotype, GenotypeError,
                        genotype_from_dict, genotype_to_dict, load_genotypes, resolve_genotype, save_genotypes,
                        validate_genotype)
from .model import NetworkCIFAR, NetworkImageNet
from .pdarts import SearchStage, derive_genotype, plan_stages, prune_switches, skip_dropout_rate
from .search_model import SearchNetwork
from .space import check_switches, edge_inputs, full_switches, num_edges, ops_in_play

__all__ = [
    "DARTS_V1", "DARTS_V2", "Genotype", "GenotypeError", "NetworkCIFAR", "NetworkImageNet", "PDARTS", "PRIMITIVES",
    "PUBLISHED_GENOTYPES", "SearchNetwork", "SearchStage", "check_switches", "derive_genotype", "edge_inputs",
    "full_switches", "genotype_from_dict", "genotype_to_dict", "load_genotypes", "num_edges", "ops_in_play",
    "plan_stages", "prune_switches", "resolve_genotype", "save_genotypes", "skip_dropout_rate",
    "validate_genotype",
]
