"""Path spaces: SPOS's uniform and FLOPs-window samplers for supernet training, and Cream's supernet
as a path space that SPOS's evolution searches."""
import json

import numpy as np
import paddle
import pytest

from lib.models.supernet import SuperNet
from lib.models import FlopsEst
from lib.spos import Evolution, EvolutionConfig, UniformPathSampler, cream_path_space, spos_path_space

WINDOW_BINS = [(290e6 + 10e6 * k, 300e6 + 10e6 * k) for k in range(7)]


def test_uniform_sampler_is_uniform_seeded_and_resumable():
    sampler = UniformPathSampler(spos_path_space(), seed=5)
    paths = np.array([sampler.sample() for _ in range(2000)])
    assert paths.shape == (2000, 20)
    assert np.bincount(paths.ravel(), minlength=4) / paths.size == pytest.approx([0.25] * 4, abs=0.01)
    state = json.loads(json.dumps(sampler.state_dict()))
    ahead = [sampler.sample() for _ in range(5)]
    again = UniformPathSampler(spos_path_space(), seed=0)
    again.load_state_dict(state)
    assert [again.sample() for _ in range(5)] == ahead
    first = UniformPathSampler(spos_path_space(), seed=5).sample()
    assert first == tuple(paths[0])


def test_flops_window_sampler_spreads_paths_over_the_official_bins():
    space = spos_path_space()
    sampler = UniformPathSampler(space, flops_range=(290e6, 360e6), bin_width=10e6, seed=0)
    assert list(sampler.bins) == WINDOW_BINS
    flops = np.array([space.flops(sampler.sample()) for _ in range(350)])
    counts = np.histogram(flops, bins=[290e6 + 10e6 * k for k in range(8)])[0]
    # uniform paths put ~1 % in 290-300 M and ~2 % in 350-360 M; the window gives each bin ~1/7
    assert counts.sum() + sampler.misses >= 350 and sampler.misses <= 5
    assert counts.min() >= 30, counts
    uniform = UniformPathSampler(space, seed=0)
    assert sum(space.flops(uniform.sample()) < 300e6 for _ in range(350)) < 15


def test_invalid_flops_windows_are_refused():
    with pytest.raises(ValueError, match="empty"):
        UniformPathSampler(spos_path_space(), flops_range=(360e6, 290e6), bin_width=10e6)
    with pytest.raises(ValueError, match="empty"):
        UniformPathSampler(spos_path_space(), flops_range=(290e6, 360e6), bin_width=0)


@pytest.fixture(scope="module")
def small_cream_supernet():
    with paddle.utils.unique_name.guard():
        model = SuperNet([1, 2, 1, 1, 1], num_classes=4)
    model.eval()
    return model


def test_cream_paths_encode_and_decode():
    space = cream_path_space([1, 2, 1, 1, 1], flops=lambda arch: 0.0)
    assert space.num_choices == (6,) * 6
    arch = [[0], [3], [1, 5], [2], [4], [0], [0]]
    assert space.decode(space.encode(arch)) == arch and space.encode(arch) == (3, 1, 5, 2, 4, 0)
    for bad in ([[0], [3], [1], [2], [4], [0], [0]], [[1], [3], [1, 5], [2], [4], [0], [0]],
                [[0], [3], [1, -1], [2], [4], [0], [0]], [[0], [3], [1, 6], [2], [4], [0], [0]]):
        with pytest.raises(ValueError, match="not a path of the Cream supernet"):
            space.encode(bad)


def test_evolution_searches_a_cream_supernet_under_its_mflops_limit(small_cream_supernet):
    est = FlopsEst(small_cream_supernet)
    space = cream_path_space([1, 2, 1, 1, 1], est.get_flops)
    flops = sorted(space.flops(space.random_path(np.random.default_rng(s))) for s in range(40))
    limit = flops[len(flops) // 2]  # about half of the paths fit
    rng = np.random.default_rng(0)
    images = paddle.to_tensor(rng.standard_normal((4, 3, 32, 32)).astype("float32"))
    labels = paddle.to_tensor(np.arange(4))
    scored = []

    def fitness(arch):  # a real forward pass of the Cream supernet on the decoded path
        scored.append(arch)
        with paddle.no_grad():
            return -float(paddle.nn.functional.cross_entropy(small_cream_supernet(images, arch), labels))

    config = EvolutionConfig(population=6, top_k=3, mutations=2, crossovers=2, generations=2,
                             flops_limit=limit, seed=0)
    evolution = Evolution(space, config)
    best = evolution.run(fitness)
    assert len(scored) == len(evolution.history) == 18
    assert all(est.get_flops(arch) <= limit for arch in scored)
    assert best.score == max(c.score for c in evolution.history)
    report = evolution.to_json()
    assert report["best"]["arch"][0] == [0] and len(report["best"]["arch"]) == 7
    assert json.loads(json.dumps(report)) == report
