"""Distributed helpers in one process and across two CPU ranks (gloo)."""
import json
import os

import paddle
import paddle.distributed as dist
import pytest

from pimm.utils import barrier, get_rank, get_world_size, init_distributed, is_primary


def test_single_process_defaults():
    assert init_distributed() == (0, 1)
    assert (get_rank(), get_world_size(), is_primary()) == (0, 1, True)
    barrier()  # returns at once
    assert not dist.is_initialized()


def _worker(out_dir):
    # imported here: the spawned interpreter runs only this function
    from pimm.utils import barrier as _barrier
    from pimm.utils import init_distributed as _init
    from pimm.utils import is_primary as _is_primary
    from pimm.utils import reduce_tensor as _reduce

    rank, world = _init()
    value = paddle.to_tensor([float(rank + 1), 10.0 * (rank + 1)])
    mean = _reduce(value, world)
    _barrier()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "world": world, "primary": _is_primary(),
                   "mean": mean.numpy().tolist(), "input": value.numpy().tolist()}, f)


@pytest.mark.e2e  # spawns two processes
def test_two_cpu_ranks_reduce_to_the_mean(tmp_path):
    dist.spawn(_worker, args=(str(tmp_path),), nprocs=2)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, res in enumerate(results):
        assert (res["rank"], res["world"], res["primary"]) == (r, 2, r == 0)
        assert res["mean"] == [1.5, 15.0]
        assert res["input"] == [float(r + 1), 10.0 * (r + 1)]  # reduce_tensor copies
