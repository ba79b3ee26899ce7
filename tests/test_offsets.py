"""ir/offsets.py: offsets in grid steps from each field's own point, so that fields
staggered along some dimensions reverse as fields on the nodes do; vector equations
split into their components at analysis.

A velocity-pressure system on a staggered grid (velocities at the half points,
derivatives between staggerings with ``x0=``), in scalar and in vector form, and
Devito's first-order visco-acoustic models derive exactly: dot tests in float64."""

import numpy as np
import pytest
import sympy
from conftest import dot_test
from devito import NODE, Eq, Function, Grid, TimeFunction

from devito_perforad import adjoint, adjoint_function
from devito_perforad.ir.access import access_of
from devito_perforad.ir.offsets import own_offset


def test_offsets_from_the_fields_own_point():
    grid = Grid(shape=(6, 6))
    x, y = grid.dimensions
    v = TimeFunction(name='v', grid=grid, staggered=x)
    c = TimeFunction(name='c', grid=grid, staggered=(x, y))
    p = TimeFunction(name='p', grid=grid, staggered=NODE)
    assert access_of(v).space == (0, 0) and access_of(c).space == (0, 0)
    assert access_of(v.shift(x, -x.spacing)).space == (-1, 0)
    assert access_of(c.shift(y, 2 * y.spacing).shift(x, x.spacing)).space == (1, 2)
    assert access_of(p.shift(x, x.spacing)).space == (1, 0)
    half = v.subs({v.indices_ref[1]: x})          # v between its points
    assert own_offset(half, x, x) == sympy.Rational(-1, 2)   # refused by the analysis


def _staggered_system(ndim, so, save=None):
    """``v_d.forward = v_d + dt b p.d(x0 = d + h/2)``, ``p.forward = p + dt k
    sum_d v_d.forward.d(x0 = d)``: velocities at the half points."""
    grid = Grid(shape=(18, 14, 12)[:ndim], extent=(17.0, 13.0, 11.0)[:ndim],
                dtype=np.float64)
    rng = np.random.default_rng(4)
    p = TimeFunction(name='p', grid=grid, space_order=so, staggered=NODE, save=save)
    b, k = (Function(name=n, grid=grid, space_order=so) for n in ('b', 'k'))
    b.data[:], k.data[:] = 1 + rng.random(b.shape), 1 + rng.random(k.shape)
    vs = [TimeFunction(name=f'v{d.name}', grid=grid, space_order=so, staggered=d,
                       save=save) for d in grid.dimensions]
    dt = 0.1
    eqs = [Eq(v.forward, v + dt * b * p.diff(d, x0=d + d.spacing / 2))
           for v, d in zip(vs, grid.dimensions, strict=True)]
    eqs.append(Eq(p.forward, p + dt * k * sum(v.forward.diff(d, x0=d) for v, d in
                                             zip(vs, grid.dimensions, strict=True))))
    return eqs, [p, *vs], b


@pytest.mark.parametrize('ndim, so', [(1, 2), (2, 2), (2, 4), (2, 8),
                                      pytest.param(3, 4, marks=pytest.mark.slow)])
def test_staggered_velocity_pressure(ndim, so, rng):
    eqs, fields, _ = _staggered_system(ndim, so)
    adjoints = {f: adjoint_function(f) for f in fields}
    inputs = {f: np.array([True, False]) for f in fields}
    assert dot_test(eqs, adjoints, inputs, apply=dict(time_m=0, time_M=7),
                    rng=rng) < 1e-12


def test_staggered_parameter_gradient(rng):
    """The gradient with respect to ``b``, read at the half points where the
    velocities live (Devito averages it there)."""
    from conftest import fd_test, time_inputs
    eqs, fields, b = _staggered_system(2, 4, save=10)
    adjoints = {f: adjoint_function(f) for f in fields}
    # b as an active input: its adjoint is its gradient
    adjoints[b] = adjoint_function(b)
    inputs = {f: time_inputs(f, 0, 7) for f in fields}
    inputs[b] = slice(None)
    assert fd_test(eqs, adjoints, inputs, apply=dict(time_m=0, time_M=7),
                   rng=rng) < 1e-7


def test_derived_equations_keep_their_accesses():
    """Devito would average the seed of a staggered field read in a node field's
    update; the derived equations read it where they say."""
    grid = Grid(shape=(8,))
    x = grid.dimensions[0]
    p = TimeFunction(name='p', grid=grid, space_order=2)
    v = TimeFunction(name='v', grid=grid, space_order=2, staggered=x)
    eqs = adjoint([Eq(v.forward, v + 0.1 * p.dx(x0=x + x.spacing / 2))],
                  {p: adjoint_function(p), v: adjoint_function(v)})
    update = next(e for e in eqs if e.lhs.function.name == 'p_b')
    assert str(update.evaluate) == str(update)


@pytest.mark.parametrize('so', [2, 4])
def test_vector_equations(so, rng):
    """``v.forward = v + dt b grad(p)``, ``p.forward = p + dt k div(v.forward)`` with a
    ``VectorTimeFunction``: each component one statement; the map keyed by the vector
    itself, its adjoint a vector (``adjoint_function``)."""
    from devito import VectorTimeFunction, div, grad
    grid = Grid(shape=(16, 14), extent=(15.0, 13.0), dtype=np.float64)
    p = TimeFunction(name='p', grid=grid, space_order=so, staggered=NODE)
    v = VectorTimeFunction(name='v', grid=grid, space_order=so)
    b = Function(name='b', grid=grid, space_order=so)
    b.data[:] = 1 + rng.random(b.shape)
    eqs = [Eq(v.forward, v + 0.1 * b * grad(p, shift=.5)),
           Eq(p.forward, p + 0.1 * div(v.forward, shift=-.5))]
    vb = adjoint_function(v)
    assert [c.name for c in vb.values()] == ['v_b_x', 'v_b_y']
    adjoints = {p: adjoint_function(p), v: vb}
    inputs = {f: np.array([True, False]) for f in (p, *v.values())}
    assert dot_test(eqs, {p: adjoints[p], **dict(zip(v.values(), vb.values(),
                                                       strict=True))},
                    inputs, apply=dict(time_m=0, time_M=7), rng=rng) < 1e-12
    # keyed by the vector, as a user would
    derived = adjoint(eqs, adjoints)
    assert {e.lhs.function.name for e in derived} >= {'p_b', 'v_b_x', 'v_b_y'}
