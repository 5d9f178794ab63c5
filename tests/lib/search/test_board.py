"""The prioritized board's entry rules, order, export and state; teacher selection; path sampling."""
import json
import math

import numpy as np
import paddle
import pytest

from lib.search.board import PathSampler, PrioritizedBoard, select_teacher

SLICE, CLASSES = 2, 3


def _arch(*stages):
    return [[0]] + [list(s) for s in stages] + [[0]]


def _add(board, arch, prec1, flops, params=1.0, fill=0.0):
    images = paddle.full([SLICE, 3, 4, 4], fill)
    features = paddle.full([SLICE, CLASSES], fill)
    return board.consider(arch, prec1, flops, params, images, features)


def test_board_fills_then_keeps_the_best_sorted():
    board = PrioritizedBoard(pool_size=3, flops_minimum=0, flops_maximum=100)
    assert _add(board, _arch([1]), 40.0, 50)
    assert _add(board, _arch([2]), 60.0, 50)
    assert _add(board, _arch([3]), 50.0, 50)
    assert [e.prec1 for e in board.entries] == [60.0, 50.0, 40.0]
    # full: 44 does not beat the worst (40) by the 5-point gap and is not cheaper
    assert not _add(board, _arch([4]), 44.0, 50)
    # beats the worst by more than the gap: enters, the worst leaves
    assert _add(board, _arch([4]), 45.5, 50)
    assert [e.prec1 for e in board.entries] == [60.0, 50.0, 45.5]
    assert [e.arch[1] for e in board.entries] == [[2], [3], [4]]
    # beats the worst by less than the gap but with fewer FLOPs: enters
    assert _add(board, _arch([5]), 46.0, 49)
    assert [e.prec1 for e in board.entries] == [60.0, 50.0, 46.0]
    # same accuracy as the worst: never enters
    assert not _add(board, _arch([0]), 46.0, 10)
    assert len(board) == 3 and board.best().arch == _arch([2])


def test_board_rejects_paths_outside_the_flops_range():
    board = PrioritizedBoard(pool_size=5, flops_minimum=20, flops_maximum=30)
    assert not _add(board, _arch([1]), 99.0, 19.9)
    assert not _add(board, _arch([1]), 99.0, 30.1)
    assert _add(board, _arch([1]), 10.0, 20)
    assert _add(board, _arch([2]), 10.0, 30)
    assert len(board) == 2


def test_board_keeps_one_entry_per_path_with_its_best_measurement():
    board = PrioritizedBoard(pool_size=3, flops_minimum=0, flops_maximum=100)
    _add(board, _arch([1], [2]), 40.0, 50, fill=1.0)
    _add(board, _arch([2], [2]), 45.0, 50)
    assert not _add(board, _arch([1], [2]), 39.0, 50, fill=2.0)  # worse than its own entry
    assert _add(board, _arch([1], [2]), 70.0, 50, fill=3.0)
    assert [(e.arch, e.prec1) for e in board.entries] == [(_arch([1], [2]), 70.0), (_arch([2], [2]), 45.0)]
    assert float(board.entries[0].images.mean()) == 3.0  # the new measurement's images


def test_ties_rank_the_cheaper_path_first():
    board = PrioritizedBoard(pool_size=3, flops_minimum=0, flops_maximum=100)
    _add(board, _arch([1]), 50.0, 80)
    _add(board, _arch([2]), 50.0, 20)
    assert [e.flops for e in board.entries] == [20, 80]


def test_board_copies_what_it_stores():
    board = PrioritizedBoard(pool_size=2, flops_minimum=0, flops_maximum=100)
    images, features = paddle.zeros([SLICE, 3, 4, 4]), paddle.zeros([SLICE, CLASSES])
    board.consider(_arch([1]), 50.0, 10, 1.0, images, features)
    images.add_(paddle.ones_like(images))
    features.add_(paddle.ones_like(features))
    assert float(board.best().images.abs().sum()) == 0.0
    assert float(board.best().features.abs().sum()) == 0.0


def test_json_export_and_state_round_trip(tmp_path):
    board = PrioritizedBoard(pool_size=4, flops_minimum=5, flops_maximum=100)
    _add(board, _arch([1, 2], [3]), 40.0, 50, params=2.5, fill=0.5)
    _add(board, _arch([2, 2], [3]), 60.0, 70, params=3.0, fill=0.25)
    exported = json.loads(json.dumps(board.to_json(epoch=3)))
    assert exported == {
        "paths": [{"arch": [[0], [2, 2], [3], [0]], "flops": 70.0, "params": 3.0, "prec1": 60.0},
                  {"arch": [[0], [1, 2], [3], [0]], "flops": 50.0, "params": 2.5, "prec1": 40.0}],
        "best_in_range": {"arch": [[0], [2, 2], [3], [0]], "flops": 70.0, "params": 3.0, "prec1": 60.0},
        "flops_minimum": 5.0, "flops_maximum": 100.0, "epoch": 3}
    empty = PrioritizedBoard(pool_size=4, flops_minimum=5, flops_maximum=100)
    assert empty.to_json(0)["best_in_range"] is None

    path = str(tmp_path / "board.pdparams")
    paddle.save({"board": board.state_dict()}, path)
    restored = PrioritizedBoard(pool_size=4, flops_minimum=5, flops_maximum=100)
    restored.load_state_dict(paddle.load(path)["board"])
    assert restored.to_json(3) == board.to_json(3)
    for a, b in zip(restored.entries, board.entries):
        np.testing.assert_array_equal(a.images.numpy(), b.images.numpy())
        np.testing.assert_array_equal(a.features.numpy(), b.features.numpy())
    other_range = PrioritizedBoard(pool_size=4, flops_minimum=0, flops_maximum=100)
    with pytest.raises(ValueError, match="FLOPS_MINIMUM"):
        other_range.load_state_dict(board.state_dict())


def test_select_teacher():
    board = PrioritizedBoard(pool_size=3, flops_minimum=0, flops_maximum=100)
    for choice, prec1 in ((1, 50.0), (2, 60.0), (3, 40.0)):
        _add(board, _arch([choice]), prec1, 10)
    # top1: the best entry with the reference's fixed weight
    assert select_teacher(board, "top1") == (0, 0.5)
    # meta: the highest score wins and the KD weight is that entry's sigmoid(score)
    index, rho = select_teacher(board, "meta", [0.3, -2.0, 1.2])
    assert index == 2 and rho == pytest.approx(1 / (1 + math.exp(-1.2)))
    with pytest.raises(ValueError, match="one score per board entry"):
        select_teacher(board, "meta", [0.1])
    with pytest.raises(ValueError, match="PICK_METHOD"):
        select_teacher(board, "none")
    # a path on the board never teaches itself: the best other entry / the best other score
    assert board.teachers_for(_arch([2])) == [1, 2]
    assert board.teachers_for(_arch([4])) == [0, 1, 2]
    assert select_teacher(board, "top1", student=_arch([2])) == (1, 0.5)
    assert select_teacher(board, "meta", [0.3, -2.0, 1.2], student=_arch([3]))[0] == 0
    with pytest.raises(ValueError, match="no path other than the student"):
        select_teacher(PrioritizedBoard(2, 0, 1), "top1")
    alone = PrioritizedBoard(pool_size=3, flops_minimum=0, flops_maximum=100)
    _add(alone, _arch([1]), 50.0, 10)
    with pytest.raises(ValueError, match="no path other than the student"):
        select_teacher(alone, "top1", student=_arch([1]))


def _frequencies(sampler, board=None, draws=3000):
    counts = np.zeros(sampler.num_choices)
    for _ in range(draws):
        arch = sampler.sample(board)
        assert arch[0] == [0] and arch[-1] == [0]
        assert [len(s) for s in arch[1:-1]] == sampler.sta_num
        for stage in arch[1:-1]:
            np.add.at(counts, stage, 1)
    return counts / counts.sum()


def test_sampler_uses_the_configured_probabilities():
    """The reference's sampler put PRE_PROB into np.random.choice's `replace` argument, so every
    mode sampled uniformly; here each mode's probabilities are what gets sampled."""
    pre_prob = (0.05, 0.2, 0.05, 0.5, 0.05, 0.15)
    sta_num = [2, 1, 3, 1, 1]  # 8 layers per draw
    even = _frequencies(PathSampler(sta_num, 6, "even", seed=0))
    np.testing.assert_allclose(even, np.full(6, 1 / 6), atol=0.015)
    weighted = _frequencies(PathSampler(sta_num, 6, "pre_prob", pre_prob, seed=0))
    np.testing.assert_allclose(weighted, pre_prob, atol=0.015)

    board = PrioritizedBoard(pool_size=2, flops_minimum=0, flops_maximum=100)
    _add(board, [[0], [1, 1], [1], [3, 3, 3], [1], [5], [0]], 60, 10)
    _add(board, [[0], [1, 3], [3], [3, 3, 3], [1], [5], [0]], 50, 10)
    teacher = PathSampler(sta_num, 6, "teacher", seed=0)
    # counts over stages 1-5 only: choice 1 x6, 3 x8, 5 x2 (the fixed [0] stages do not count)
    np.testing.assert_allclose(teacher.probabilities(board), np.array([0, 6, 0, 8, 0, 2]) / 16)
    np.testing.assert_allclose(_frequencies(teacher, board), np.array([0, 6, 0, 8, 0, 2]) / 16, atol=0.015)
    assert teacher.probabilities(PrioritizedBoard(2, 0, 1)) is None  # empty board: uniform


def test_uniform_mix_keeps_every_choice_alive():
    """A board of cheap paths gave the choices it lacks probability 0, so their blocks stopped
    training; UNIFORM_MIX keeps a floor of mix / num_choices for each."""
    board = PrioritizedBoard(pool_size=2, flops_minimum=0, flops_maximum=100)
    _add(board, _arch([0], [0], [0], [0], [1]), 60, 10)
    _add(board, _arch([0], [0], [0], [1], [1]), 50, 10)
    frequencies = np.array([7, 3, 0, 0, 0, 0]) / 10
    sampler = PathSampler([1] * 5, 6, "teacher", seed=0, uniform_mix=0.5)
    np.testing.assert_allclose(sampler.probabilities(board), 0.5 * frequencies + 0.5 / 6)
    np.testing.assert_allclose(_frequencies(sampler, board), 0.5 * frequencies + 0.5 / 6, atol=0.015)
    assert all(sampler.probabilities(board) >= 0.5 / 6)
    np.testing.assert_allclose(PathSampler([1] * 5, 6, "teacher", seed=0).probabilities(board), frequencies)
    with pytest.raises(ValueError, match="UNIFORM_MIX"):
        PathSampler([1], 6, "teacher", uniform_mix=1.5)


def test_sample_within_draws_only_paths_in_the_budget():
    sampler = PathSampler([1] * 5, 6, "even", seed=3)
    cost = lambda arch: float(sum(stage[0] for stage in arch[1:-1]))  # noqa: E731
    paths = [sampler.sample_within(cost, 2, 6) for _ in range(300)]
    assert all(2 <= cost(p) <= 6 for p in paths)
    assert len({str(p) for p in paths}) > 50  # still spread over the paths in the budget
    with pytest.raises(ValueError, match="no path within"):
        sampler.sample_within(cost, 30, 40, tries=100)


def test_sampler_state_resumes_the_same_sequence():
    sampler = PathSampler([2, 2], 6, "even", seed=7)
    sampler.sample()
    state = sampler.state_dict()
    expected = [sampler.sample() for _ in range(5)]
    resumed = PathSampler([2, 2], 6, "even", seed=123)
    resumed.load_state_dict(state)
    assert [resumed.sample() for _ in range(5)] == expected
    # the same seed gives the same paths (every rank of a distributed run trains the same path)
    assert PathSampler([2, 2], 6, seed=7).sample() == PathSampler([2, 2], 6, seed=7).sample()


@pytest.mark.parametrize("bad", [(0.5, 0.5), (0.1,) * 6, (-0.1, 0.3, 0.2, 0.2, 0.2, 0.2)])
def test_bad_pre_prob_is_rejected(bad):
    with pytest.raises(ValueError, match="PRE_PROB"):
        PathSampler([1], 6, "pre_prob", bad)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="HOW_TO_PROB"):
        PathSampler([1], 6, "uniform")
    with pytest.raises(ValueError, match="POOL_SIZE"):
        PrioritizedBoard(0, 0, 10)
    with pytest.raises(ValueError, match="FLOPS_MINIMUM"):
        PrioritizedBoard(3, 20, 10)
