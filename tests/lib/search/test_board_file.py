"""lib.search.board_file: the board.json a search writes is the one retrain and test read back."""
import json
import os

import paddle
import pytest

from lib.models import CREAM_ARCHS
from lib.search.board import PrioritizedBoard
from lib.search.board_file import BOARD_FILE, best_board_entry, board_paths, write_board_file


def test_written_board_reads_back_its_best_path(tmp_path):
    board = PrioritizedBoard(pool_size=3, flops_minimum=0, flops_maximum=120)
    for selection, prec1 in ((14, 40.0), (114, 60.0), (43, 50.0)):
        entry = CREAM_ARCHS[selection]
        board.consider(entry.arch_list(), prec1, entry.mflops, entry.mparams,
                       paddle.zeros([2, 3, 4, 4]), paddle.zeros([2, 5]))
    path = write_board_file(str(tmp_path), dict(board.to_json(epoch=7), resolution=224))
    assert path == os.path.join(str(tmp_path), BOARD_FILE)
    with open(path, encoding="utf-8") as f:
        content = json.load(f)
    assert (content["epoch"], content["resolution"], len(content["paths"])) == (7, 224, 3)
    assert best_board_entry(path)["arch"] == CREAM_ARCHS[114].arch_list()
    del content["best_in_range"]  # an older board: the first path inside the FLOPs range
    content["flops_maximum"] = 100.0
    write_board_file(str(tmp_path), content)
    assert best_board_entry(path)["arch"] == CREAM_ARCHS[43].arch_list()


def test_unreadable_boards_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        best_board_entry(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read .*bad.json as JSON"):
        best_board_entry(str(bad))


def test_board_paths_lists_every_path_best_first(tmp_path):
    paths = [[[0], [c], [1], [2], [3], [4], [0]] for c in (5, 0)]
    write_board_file(str(tmp_path), {"paths": [{"arch": p, "flops": 50.0, "prec1": 10.0} for p in paths],
                                     "best_in_range": None, "flops_minimum": 0, "flops_maximum": 100})
    assert board_paths(str(tmp_path / "board.json")) == paths
    (tmp_path / "bad.json").write_text('{"paths": [{"flops": 1.0}]}')
    with pytest.raises(ValueError, match="no arch list"):
        board_paths(str(tmp_path / "bad.json"))
