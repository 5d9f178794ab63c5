"""lib.engine.child: which child net a config means (selection, arch list, a search's board.json,
a DARTS genotype) and what its training adds."""
import json

import pytest

from lib.config import ConfigError, load_config
from lib.darts import DARTS_V1, DARTS_V2, PDARTS, NetworkCIFAR, NetworkImageNet, save_genotypes
from lib.engine.child import (ChildTraining, child_training, create_child_model, entry_from_board,
                              resolve_child)
from lib.engine.common import RunError
from lib.models import CREAM_ARCHS
from pimm.utils import count_parameters

ARCH_43 = CREAM_ARCHS[43].arch_list()
ARCH_114 = CREAM_ARCHS[114].arch_list()


def test_resolve_child_selection_size_and_searched_paths(tmp_path):
    spec = resolve_child(load_config(None, ["NET.SELECTION", "114", "DATASET.IMAGE_SIZE", "224"]))
    assert (spec.arch, spec.image_size, spec.selection) == (ARCH_114, 160, 114)
    spec = resolve_child(load_config(None, ["NET.SELECTION", "114", "DATASET.IMAGE_SIZE", "96",
                                            "DATASET.SELECTION_IMAGE_SIZE", "False"]))
    assert spec.image_size == 96
    spec = resolve_child(load_config(None, ["NET.SELECTION", "-1", "NET.INPUT_ARCH", str(ARCH_43),
                                            "DATASET.IMAGE_SIZE", "128"]))
    assert (spec.arch, spec.image_size, spec.selection) == (ARCH_43, 128, -1)
    with pytest.raises(ConfigError, match="both set"):
        resolve_child(load_config(None, ["NET.SELECTION", "-1", "NET.INPUT_ARCH", str(ARCH_43),
                                         "NET.BOARD_JSON", "board.json"]))
    with pytest.raises(RunError, match="no file at"):
        resolve_child(load_config(None, ["NET.SELECTION", "-1",
                                         "NET.BOARD_JSON", str(tmp_path / "x")]))


def _board(tmp_path, **content):
    path = tmp_path / "board.json"
    path.write_text(json.dumps(content))
    return str(path)


def test_board_path_is_the_best_one_within_the_flops_range(tmp_path):
    paths = [{"arch": ARCH_114, "flops": 114.5, "prec1": 70.0},  # best, but above the range
             {"arch": ARCH_43, "flops": 42.4, "prec1": 60.0},
             {"arch": CREAM_ARCHS[14].arch_list(), "flops": 13.8, "prec1": 50.0}]
    board = _board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=100)
    assert entry_from_board(board) == paths[1]
    assert entry_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=100,
                                   best_in_range={"arch": ARCH_114}))["arch"] == ARCH_114
    with pytest.raises(RunError, match=r"FLOPs range \[0.0, 10.0\]"):
        entry_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=10))
    with pytest.raises(RunError, match="no 'paths' list"):
        entry_from_board(_board(tmp_path, board=[]))


def test_a_board_path_is_built_as_the_search_ran_it(tmp_path):
    """In a space of one layer per searched stage the reference's rule (a single-layer stage keeps
    its template block) would make every board path the same network; the search's paths are
    built choice by choice, a NET.INPUT_ARCH list as the reference builds it."""
    cheap, large = [[0], [0], [0], [2], [0], [0], [0]], [[0], [4], [4], [4], [4], [4], [0]]
    sizes = {}
    for name, arch in (("cheap", cheap), ("large", large)):
        board = _board(tmp_path, paths=[{"arch": arch, "flops": 90.0, "prec1": 50.0}], flops_minimum=0,
                       flops_maximum=100)
        cfg = load_config(None, ["NET.SELECTION", "-1", "NET.BOARD_JSON", board, "DATASET.NUM_CLASSES", "10"])
        spec = resolve_child(cfg)
        assert spec.exact and spec.arch == arch
        sizes[name] = count_parameters(create_child_model(cfg, spec))
    listed = load_config(None, ["NET.SELECTION", "-1", "NET.INPUT_ARCH", str(large), "DATASET.NUM_CLASSES", "10"])
    spec = resolve_child(listed)
    assert not spec.exact
    template = count_parameters(create_child_model(listed, spec))
    assert len({sizes["cheap"], sizes["large"], template}) == 3  # three different networks


def _pdarts(*overrides):
    return load_config(None, ["METHOD", "pdarts", "DATASET.IMAGE_SIZE", "32", "DATASET.NUM_CLASSES", "10",
                              *map(str, overrides)])


def test_pdarts_child_is_the_darts_network_of_the_genotype(tmp_path):
    spec = resolve_child(_pdarts())  # the defaults: PDARTS, CIFAR network, C 36, 20 cells, auxiliary
    assert (spec.arch, spec.image_size, spec.method, spec.source) == (PDARTS, 32, "pdarts", "genotype PDARTS")
    model = create_child_model(_pdarts(), spec)
    assert isinstance(model, NetworkCIFAR) and len(model.cells) == 20
    # the paper's count (3.4 M) leaves out the auxiliary head
    assert count_parameters(model) - count_parameters(model.auxiliary_head) == 3_433_798
    path = tmp_path / "genotypes.json"
    save_genotypes(str(path), {"recommended": DARTS_V2, "max_skip_1": DARTS_V1})
    assert resolve_child(_pdarts("DARTS.GENOTYPE", path)).arch == DARTS_V2
    assert resolve_child(_pdarts("DARTS.GENOTYPE", f"{path}:max_skip_1")).arch == DARTS_V1
    cfg = _pdarts("DARTS.NETWORK", "imagenet", "DATASET.IMAGE_SIZE", 224, "DARTS.INIT_CHANNELS", 8,
                  "DARTS.LAYERS", 3, "DARTS.AUXILIARY", False)
    model = create_child_model(cfg, resolve_child(cfg))
    assert isinstance(model, NetworkImageNet) and not hasattr(model, "auxiliary_head")


@pytest.mark.parametrize("overrides, message", [
    (["DARTS.GENOTYPE", "PDARTS_V9"], "DARTS.GENOTYPE: genotype file PDARTS_V9 not found.*PDARTS, DARTS_V1"),
    (["DARTS.NETWORK", "mobile"], "DARTS.NETWORK 'mobile' is unknown"),
    (["DATASET.IMAGE_SIZE", 64], "auxiliary head of DARTS.NETWORK cifar is built for 32 px"),
    (["DARTS.DROP_PATH_PROB", 1.5], "DARTS.DROP_PATH_PROB in"),
])
def test_pdarts_child_errors_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_child(_pdarts(*overrides))


def test_pdarts_genotype_files_that_are_not_genotypes(tmp_path):
    path = tmp_path / "genotypes.json"
    path.write_text("{'normal': 1}")
    with pytest.raises(ConfigError, match=r"DARTS.GENOTYPE: cannot read genotype file .*genotypes.json"):
        resolve_child(_pdarts("DARTS.GENOTYPE", path))
    save_genotypes(str(path), {"a": PDARTS, "b": DARTS_V1})
    with pytest.raises(ConfigError, match=r"has no entry 'recommended'; it has a, b \(choose one with"):
        resolve_child(_pdarts("DARTS.GENOTYPE", path))
    path.write_text(json.dumps({"recommended": {"normal": [["sep_conv_3x3", 5]] * 8, "normal_concat": [2],
                                                "reduce": [["skip_connect", 0]] * 8, "reduce_concat": [2]}}))
    with pytest.raises(ConfigError, match=r"recommended.normal\[0\] \(node 0\) takes input 5"):
        resolve_child(_pdarts("DARTS.GENOTYPE", path))


def test_pdarts_training_hooks_raise_drop_path_and_weigh_the_auxiliary_loss():
    cfg = _pdarts("DARTS.DROP_PATH_PROB", 0.3, "DARTS.AUXILIARY_WEIGHT", 0.4)
    training = child_training(cfg, resolve_child(cfg))
    model = NetworkCIFAR(4, 10, 3, True, PDARTS)
    assert training.aux_weight == 0.4
    assert training.start_epoch(model, 0, 600) == {"drop_path_prob": 0.0} and model.drop_path_prob == 0.0
    assert training.start_epoch(model, 300, 600) == {"drop_path_prob": 0.15} and model.drop_path_prob == 0.15
    assert child_training(_pdarts("DARTS.AUXILIARY", False), resolve_child(_pdarts())).aux_weight == 0.0
    cream = load_config(None, [])
    assert child_training(cream, resolve_child(cream)) == ChildTraining()


def test_net_model_names_any_registered_network_at_the_dataset_size():
    cfg = load_config(None, ["NET.MODEL", "peleenet", "DATASET.IMAGE_SIZE", "96",
                             "DATASET.NUM_CLASSES", "7", "NET.DROPOUT_RATE", "0.05"])
    spec = resolve_child(cfg)
    assert (spec.model, spec.arch, spec.image_size, spec.selection) == ("peleenet", None, 96, -1)
    assert spec.name == "peleenet" and spec.source == "model peleenet"
    model = create_child_model(cfg, spec)
    assert type(model).__name__ == "PeleeNet"
    assert (model.num_classes, model.drop_rate, model.classifier.weight.shape) == (7, 0.05, [704, 7])
    # a released Cream net by its registered name runs at DATASET.IMAGE_SIZE, not its own 64 px
    spec = resolve_child(load_config(None, ["NET.MODEL", "cream_14", "DATASET.IMAGE_SIZE", "96"]))
    assert (spec.model, spec.image_size) == ("cream_14", 96)
    assert resolve_child(load_config(None, [])).name == str(CREAM_ARCHS[14].arch_list())


def test_net_model_errors_name_the_key_and_the_fix():
    with pytest.raises(ConfigError, match=r"NET.MODEL: Unknown model 'pelenet'. Did you mean peleenet"):
        resolve_child(load_config(None, ["NET.MODEL", "pelenet"]))
    with pytest.raises(ConfigError, match="conflicts with NET.INPUT_ARCH/NET.BOARD_JSON"):
        resolve_child(load_config(None, ["NET.MODEL", "peleenet", "NET.INPUT_ARCH", str(ARCH_43)]))
    cfg = load_config(None, ["NET.MODEL", "peleenet", "NET.GP", "max"])
    with pytest.raises(ConfigError, match="NET.MODEL 'peleenet': PeleeNet pools by global average"):
        create_child_model(cfg, resolve_child(cfg))
