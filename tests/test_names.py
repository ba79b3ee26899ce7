"""Generated names come from a registry per derivation: the same program gives the
same C, whatever the process built before it (ir/names.py)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_grid
from devito import Eq, Function, Grid, TimeFunction

from devito_perforad import AdjointOperator, adjoint_function
from devito_perforad.ir.names import Names, current, naming

HERE = Path(__file__).parent


def seismic_adjoint_code():
    """The C of a damped acoustic adjoint with a gradient, source and receivers: set
    aside seeds, temporaries, core and shell boxes and counter conditions all get
    generated names."""
    from conftest import acoustic_problem
    p = acoustic_problem(so=4, shape=(21, 21), nbl=4, tn=40.0, save=True, nrec=3)
    model, u = p['model'], p['u']
    ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=4)
    adjoints = {u: ub, model.vp: adjoint_function(model.vp),
                p['rec']: adjoint_function(p['rec']), p['src']: None}
    return str(AdjointOperator(p['primal'], adjoints, subs=p['subs']))


def _other_adjoints():
    """Two unrelated adjoints, with temporaries and boxes of their own."""
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
    m = Function(name='m', grid=grid, space_order=2)
    m.data[:] = 1
    AdjointOperator([Eq(u.forward, 2 * u - u.backward + u.dx2 / m)],
                    {u: adjoint_function(u)})
    w, v = (Function(name=n, grid=Grid(shape=(12, 12), dtype=np.float64))
            for n in 'wv')
    AdjointOperator([Eq(w, v.dx / (1 + v * v))],
                    {v: adjoint_function(v), w: adjoint_function(w)})


def test_same_adjoint_same_code_in_one_process():
    first = seismic_adjoint_code()
    _other_adjoints()
    assert seismic_adjoint_code() == first


@pytest.mark.slow
def test_same_adjoint_same_code_in_two_processes():
    """A fresh process, with another hash seed, against this one, which has built
    other adjoints before (in this test or in the tests this worker ran)."""
    here = seismic_adjoint_code()
    child = subprocess.run(
        [sys.executable, '-c', 'import test_names; '
         'print(test_names.seismic_adjoint_code(), end="")'],
        cwd=HERE, capture_output=True, text=True, check=True,
        env=dict(os.environ, PYTHONHASHSEED='3'))
    assert child.stdout == here


def test_registry_numbers_from_zero_per_derivation():
    with naming() as names:
        assert [names.name('u_b_z', 'temporary') for _ in range(2)] == ['u_b_z0',
                                                                        'u_b_z1']
        assert current() is names
        assert names.memo('box', object) is names.memo('box', object)
    with naming():
        assert current().name('u_b_z', 'temporary') == 'u_b_z0'
    assert isinstance(current(), Names) and current() is not names
