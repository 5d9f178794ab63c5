"""pimm.utils.benchmark: step timing, throughput arithmetic, peak memory, machine facts."""
import time

import pytest

from pimm.utils.benchmark import StepTimes, machine_description, peak_rss_mb, time_steps


def test_warmup_steps_run_untimed_then_each_step_gets_its_clock():
    calls, finished = [], []

    def step():
        calls.append(len(calls))
        time.sleep(0.01 if len(calls) > 2 else 0.0)

    times = time_steps(step, steps=3, warmup=2, on_step_end=lambda: finished.append(len(calls)))
    assert calls == [0, 1, 2, 3, 4]
    assert finished == [1, 2, 3, 4, 5]  # the finishing hook runs after every step, warm-up included
    assert len(times.seconds) == 3
    # each timed step slept 10 ms; only a lower bound holds on a busy machine
    assert all(s > 0.009 for s in times.seconds)


def test_throughput_and_statistics_by_hand():
    times = StepTimes([0.5, 0.25, 0.75, 0.5])
    assert times.mean == pytest.approx(0.5)
    assert times.median == pytest.approx(0.5)
    assert times.best == 0.25
    assert times.images_per_s(32) == pytest.approx(4 * 32 / 2.0)  # 128 images in 2 s
    assert times.as_dict() == {"seconds": [0.5, 0.25, 0.75, 0.5]}


def test_bad_step_counts_raise():
    with pytest.raises(ValueError, match="steps must be >= 1"):
        time_steps(lambda: None, steps=0)
    with pytest.raises(ValueError, match="warmup must be >= 0"):
        time_steps(lambda: None, steps=1, warmup=-1)


def test_peak_memory_grows_with_an_allocation():
    before = peak_rss_mb()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it becomes resident
    assert peak_rss_mb() >= max(before, 64.0)
    del block


def test_machine_description_names_cpu_and_paddle():
    info = machine_description()
    assert info["cpu_cores"] >= 1 and info["cpu"]
    assert info["device"] == "cpu" or info["gpu"]
    assert set(info) == {"cpu", "cpu_cores", "device", "gpu", "paddle", "python"}


def test_children_cpu_seconds_and_peak_memory_of_a_busy_child():
    import subprocess
    import sys

    from pimm.utils.benchmark import children_cpu_seconds, children_peak_rss_mb

    # spins on the CPU for 0.3 s of its own CPU time, with a 40 MB buffer, then waits to be read
    child = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nbuf = bytearray(40 << 20)\nbuf[::4096] = b'x' * len(buf[::4096])\n"
        "while time.process_time() < 0.3: pass\nprint('done', flush=True)\nsys.stdin.read()")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "done\n"
        used = children_cpu_seconds()
        # its CPU time (counted in 10 ms ticks), however long the wall clock took
        assert 0.25 <= used[child.pid] < 5.0
        assert max(children_peak_rss_mb()) > 40
    finally:
        child.stdin.close()
        child.wait()
    assert child.pid not in children_cpu_seconds()
