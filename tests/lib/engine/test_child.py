"""lib.engine.child: which child net a config means (selection, arch list, a search's board.json)."""
import json

import pytest

from lib.config import ConfigError, load_config
from lib.engine.child import entry_from_board, resolve_child
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
    assert entry_from_board(board) == paths[1]
    assert entry_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=100,
                                   best_in_range={"arch": ARCH_114}))["arch"] == ARCH_114
    with pytest.raises(RunError, match=r"FLOPs range \[0.0, 10.0\]"):
        entry_from_board(_board(tmp_path, paths=paths, flops_minimum=0, flops_maximum=10))
    with pytest.raises(RunError, match="no 'paths' list"):
        entry_from_board(_board(tmp_path, board=[]))
