"""ir/temporaries.py: ``Function``s written in the time loop (one value per step) and
before it (a prologue), in program order; and where Devito itself moves them out of
the loop, refused."""

import numpy as np
import pytest
from conftest import dot_test, fd_test, make_grid
from devito import Eq, Function, Operator, TimeFunction

from devito_perforad import AdjointError, adjoint, adjoint_function


def _fields(save=None):
    grid = make_grid(2, so=4, n=13)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=save)
    r, c = (Function(name=n, grid=grid, space_order=4) for n in 'rc')
    c.data[:] = 1.2
    return grid, u, r, c


def _wave(u):
    return 2 * u - u.backward + 0.01 * u.laplace


CASES = {
    # this step's value, read after the write
    'read after its write': lambda u, r, c: [Eq(r, 0.1 * u.laplace),
                                             Eq(u.forward, _wave(u) + 0.1 * r)],
    # the previous step's value (before the run at the first step), at neighbours
    'read before its write': lambda u, r, c: [Eq(u.forward, _wave(u) + 0.1 * r.dx),
                                              Eq(r, 0.1 * u.forward.dy)],
    # a sum over the steps
    'accumulated': lambda u, r, c: [Eq(u.forward, _wave(u)), Eq(r, r + 0.1 * u.forward)],
    # written once, before the loop
    'prologue': lambda u, r, c: [Eq(r, 0.3 * c.dx + 0.1 * c),
                                 Eq(u.forward, _wave(u) + 0.01 * u.dy + 0.02 * r)],
}


@pytest.mark.parametrize('case', [
    pytest.param(c, marks=[] if c in ('read after its write', 'prologue')
                 else [pytest.mark.slow]) for c in CASES])
def test_temporaries_are_exact(case):
    _, u, r, c = _fields()
    primal = CASES[case](u, r, c)
    adjoints = {u: adjoint_function(u), r: adjoint_function(r)}
    inputs = np.ones(3, dtype=bool)
    inputs[2] = False
    inputs = {u: inputs, r: slice(None)}
    if case == 'prologue':
        # run once, like a time-free program: r_b returns the adjoint of the value
        # written, and the value r held before is no input
        adjoints[c], inputs[c] = adjoint_function(c), slice(None)
        del inputs[r]
    assert dot_test(primal, adjoints, inputs, apply=dict(time_m=1, time_M=5)) < 1e-13


def test_a_nonlinear_prologue_against_finite_differences():
    """``z = 0.3 c.dx + 0.1 c**2`` before the loop, ``z * u.dy`` in it: the gradient
    by ``c`` goes through the loop's seed of ``z``, then the prologue's adjoint."""
    _, u, z, c = _fields(save=8)
    primal = [Eq(z, 0.3 * c.dx + 0.1 * c * c),
              Eq(u.forward, _wave(u) + 0.01 * z * u.dy + 0.02 * z)]
    adjoints = {u: adjoint_function(u), z: adjoint_function(z), c: adjoint_function(c)}
    inputs = np.ones(8, dtype=bool)
    inputs[2:7] = False
    assert fd_test(primal, adjoints, {u: inputs, c: slice(None)},
                   apply=dict(time_m=1, time_M=5)) < 1e-8


def test_a_temporary_devito_hoists_is_refused():
    """``q`` reads only the ``Function`` ``r``: Devito hoists ``Eq(q, ...)`` out of the
    time loop and splits the loop around it (the primal does not follow the
    program). Refused, naming the equation."""
    _, u, r, _ = _fields()
    q = Function(name='q', grid=u.grid, space_order=4)
    primal = [Eq(r, 0.1 * u.dx), Eq(q, 0.2 * r.dy), Eq(u.forward, _wave(u) + 0.1 * q)]
    assert str(Operator(primal)).count('for (int time') == 2
    with pytest.raises(AdjointError, match=r"field `r`: Devito does not run this "
                                           r"equation inside the time loop") as e:
        adjoint(primal, {u: adjoint_function(u), r: adjoint_function(r),
                         q: adjoint_function(q)})
    assert len(str(e.value)) < 400


def test_a_nonlinear_temporary_is_refused():
    """``r * u.dx`` needs ``r`` at every step, which the loop overwrites."""
    _, u, r, _ = _fields()
    primal = [Eq(r, 0.1 * u.laplace), Eq(u.forward, _wave(u) + 0.1 * r * u.dx)]
    with pytest.raises(AdjointError, match=r"`r` takes at every step, but the loop "
                                           r"overwrites it"):
        adjoint(primal, {u: adjoint_function(u), r: adjoint_function(r)})
