"""``devito_perforad.shots.ShotPool``: one object per Dask worker, built once."""

import os

import numpy as np
import pytest

from devito_perforad.shots import ShotPool


class Counter:
    """A per-worker object defined here, in a file the workers do not import: it
    travels by value."""

    def __init__(self, offset):
        self.offset, self.calls, self.pid = offset, 0, os.getpid()

    def evaluate(self, x, shot):
        self.calls += 1
        return float(np.sum(x)) * shot + self.offset, self.pid, self.calls


def test_in_this_process():
    done = []
    pool = ShotPool(Counter, (0.5,), workers=0)
    x = np.ones(2000)
    results = pool.run('evaluate', [(x, s) for s in range(3)], done.append)
    assert [r[0] for r in results] == [0.5, 2000.5, 4000.5]
    assert {r[1] for r in results} == {os.getpid()} and done == [1, 2, 3]
    assert pool.where == 'this process'
    pool.close()


@pytest.mark.slow
def test_on_two_workers_each_object_built_once():
    """Results in task order; each worker's object serves every task it runs (its
    call count grows), in the worker's own process."""
    pool = ShotPool(Counter, (0.5,), workers=2)
    try:
        assert pool.where == '2 Dask worker(s)'
        x = np.ones(2000)                      # shared: sent once to each worker
        done = []
        results = pool.run('evaluate', [(x, s) for s in range(8)], done.append)
        results += pool.run('evaluate', [(x, s) for s in range(8)])
        assert [r[0] for r in results] == [2000. * s + 0.5 for s in range(8)] * 2
        assert done == list(range(1, 9))
        pids = {r[1] for r in results}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        for pid in pids:   # one object per worker: its calls are counted 1, 2, 3, ...
            calls = sorted(r[2] for r in results if r[1] == pid)
            assert calls == list(range(1, len(calls) + 1))
    finally:
        pool.close()
