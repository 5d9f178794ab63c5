"""lib.engine.child: which child net a config means (selection, arch list, a search's board.json)."""
import json

import pytest

from lib.config import ConfigError, load_config
from lib.engine.child import arch_from_board, create_child_model, resolve_child
from lib.engine.common import RunError
from lib.models import CREAM_ARCHS

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
    assert arch_from_board(board) == ARCH_43
    assert arch_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=100,
                                  best_in_range={"arch": ARCH_114})) == ARCH_114
    with pytest.raises(RunError, match=r"FLOPs range \[0.0, 10.0\]"):
        arch_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=10))
    with pytest.raises(RunError, match="no 'paths' list"):
        arch_from_board(_board(tmp_path, board=[]))


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
