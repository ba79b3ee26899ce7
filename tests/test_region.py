"""Boundaries are exact: domain edges, SubDomains, first and last time steps."""

import numpy as np
import pytest
import sympy
from conftest import Box, dot_test, make_grid, positive, time_inputs
from devito import Eq, Function, Operator, TimeFunction

from devito_perforad import AdjointError, AdjointOperator, adjoint, adjoint_function
from devito_perforad.ir.symbolic import Select, finite
from devito_perforad.passes.core_shell import domain_edge
from devito_perforad.region import space_conditions, time_conditions

TOL = 1e-12


def test_zero_halo_denominator_stays_finite(rng):
    """``1/m`` with m = 0 in the halo: gathered terms never evaluate it there."""
    grid = make_grid(2, 4)
    u, w = (Function(name=n, grid=grid, space_order=4) for n in 'uw')
    m = positive(Function(name='m', grid=grid, space_order=4), rng)
    assert np.all(m.data_with_halo[0] == 0)  # the halo really is zero
    # 1/m is evaluated at the primal point only (the primal never reads it in the
    # halo); the adjoint gathers from neighbours and must not read it there either.
    primal = [Eq(w, u.dx / m + (m * u).dy + u.laplace / m ** 2)]
    assert dot_test(primal, {u: adjoint_function(u), w: adjoint_function(w)},
                    {u: slice(None)}, rng=rng) < TOL


def test_unguarded_terms_would_read_the_halo(rng):
    """Without region guards the adjoint would be NaN: the guards do real work."""
    grid = make_grid(1, 2)
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    m = positive(Function(name='m', grid=grid, space_order=2), rng)
    ub, wb = adjoint_function(u), adjoint_function(w)
    eqs = adjoint([Eq(w, u.dx / m)], {u: ub, w: wb})
    bare = [e.func(e.lhs, e.rhs.replace(Select, lambda c, a, b: a)) for e in eqs]
    wb.data[:] = 1.0
    Operator(bare)()
    assert not np.all(np.isfinite(ub.data))
    ub.data[:] = 0
    Operator(eqs)()
    assert np.all(np.isfinite(ub.data))


def _edge_guards(eqs):
    return [c for e in eqs for select in e.rhs.find(Select)
            for c in sympy.And.make_args(select.cond) if domain_edge(c) is not None]


@pytest.mark.parametrize('space_order', [2, pytest.param(8, marks=pytest.mark.slow)])
def test_finite_partials_read_the_zero_halo(space_order, rng):
    """A partial that stays finite on finite values (sums, products, ``Max``) reads
    the halo unguarded: the adjoint's zero halo cancels the terms from outside the
    domain, and the update is one loop nest. One divided by a field keeps its guards.
    Both are exact."""
    grid = make_grid(1, space_order)
    u = TimeFunction(name='u', grid=grid, space_order=space_order, time_order=2)
    c = TimeFunction(name='c', grid=grid, space_order=space_order, save=9)
    c.data[:] = rng.standard_normal(c.data.shape)
    tm, tM = 1, 6
    for coefficient, guards in [(sympy.Max(c, 0) + c ** 2, False),
                                (1 / (2 + c ** 2), True)]:
        primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * coefficient * u.dx2)]
        ub = adjoint_function(u)
        assert bool(_edge_guards(adjoint(primal, {u: ub}))) == guards
        assert dot_test(primal, {u: ub}, {u: time_inputs(u, tm, tM)},
                        apply=dict(time_m=tm, time_M=tM, dt=1.0), rng=rng) < TOL


def test_finite():
    """What may read a zero halo: no division by a field, no root, exp or log."""
    grid = make_grid(1)
    m = Function(name='m', grid=grid)
    u = TimeFunction(name='u', grid=grid)
    dt = grid.time_dim.spacing
    assert finite(m ** 2 * sympy.Max(u, 0) * sympy.sin(u) / dt ** 2 + sympy.Abs(m))
    assert finite(Select(sympy.Gt(u, 0), m, 1 - m))
    for bad in [1 / m, sympy.sqrt(m), sympy.exp(u), sympy.log(m), u ** -2]:
        assert not finite(bad)


SUBDOMAINS = {
    'middle': (('middle', 2, 3), ('middle', 1, 4)),
    'left-right': (('left', 5), ('right', 6)),
    'strip': (None, ('middle', 3, 2)),
}


@pytest.mark.parametrize('spec', list(SUBDOMAINS))
def test_subdomain_spatial(spec, rng):
    grid0 = make_grid(2, 4, n=13)
    box = Box(SUBDOMAINS[spec], grid=grid0)
    grid = grid0
    u, w = (Function(name=n, grid=grid, space_order=4) for n in 'uw')
    primal = [Eq(w, u.laplace + 2 * u.dx, subdomain=box)]
    # w outside the box is not written: it passes through and is an input too.
    inside = np.zeros(w.shape, dtype=bool)
    Operator(Eq(w, 1, subdomain=box))()
    inside[:] = w.data == 1
    inputs = {u: slice(None), w: ~inside}
    adjoints = {u: adjoint_function(u), w: adjoint_function(w)}
    assert dot_test(primal, adjoints, inputs, rng=rng) < TOL


@pytest.mark.parametrize('save', [True, False], ids=['saved', 'buffered'])
def test_subdomain_time_stepping(save, rng):
    grid = make_grid(2, 4, n=13)
    box = Box((('middle', 2, 3), ('middle', 4, 1)), grid=grid)
    kw = {'save': 9} if save else {}
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, **kw)
    m = positive(Function(name='m', grid=grid, space_order=4), rng, lo=4.0)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m, subdomain=box)]
    tm, tM = 1, 6
    mask = Function(name='mask', grid=grid)
    Operator(Eq(mask, 1, subdomain=box))()
    written = time_inputs(u, tm, tM)
    # Outside the box nothing is written: every entry there is an input.
    inputs = np.broadcast_to(written[:, None, None], u.shape) | (mask.data == 0)
    assert dot_test(primal, {u: adjoint_function(u)}, {u: inputs},
                    apply=dict(time_m=tm, time_M=tM, dt=1.0), rng=rng) < TOL


def test_reach_past_halo_is_an_error():
    """Devito would shrink the loop bounds silently; we refuse before anything runs."""
    grid = make_grid(1, 2)
    x = grid.dimensions[0]
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    with pytest.raises(AdjointError, match=r"`u`.*halo"):
        adjoint([Eq(w, u.shift(x, 3 * x.spacing))],
                {u: adjoint_function(u), w: adjoint_function(w)})


def test_adjoint_reach_past_seed_halo_is_an_error():
    """The adjoint reads the seed at the reversed offset: its halo must hold it."""
    grid = make_grid(1, 8)
    u = Function(name='u', grid=grid, space_order=8)
    w = Function(name='w', grid=grid, space_order=1)
    with pytest.raises(AdjointError, match=r"`w_b`, the adjoint of `w`.*at least 4"):
        adjoint([Eq(w, u.laplace)], {u: adjoint_function(u), w: adjoint_function(w)})


def test_space_conditions_drop_what_always_holds():
    grid = make_grid(2, 2)
    x, y = grid.dimensions
    assert space_conditions(grid, None, (0, 0)) == []
    assert [str(c) for c in space_conditions(grid, None, (-2, 1))] == \
        ['x - 2 >= x_m', 'y + 1 <= y_M']


def test_time_conditions():
    grid = make_grid(1, 2)
    time = grid.time_dim
    assert time_conditions(time, 0) == []
    # the whole run's first counter: time_m, unless the run is applied in segments
    assert str(time_conditions(time, -1)[0]) == 'time - 1 >= Min(time_first, time_m)'
    assert str(time_conditions(time, 2)[0]) == 'time + 2 <= Max(time_last, time_M)'
    assert time_conditions(time, 1, guard='top') is None
    assert time_conditions(time, -1, guard='bottom') is None


def test_adjoint_operator_is_a_devito_operator():
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2)
    op = AdjointOperator([Eq(u.forward, u + u.dx2)], {u: adjoint_function(u)})
    assert isinstance(op, Operator) and op.name == 'Adjoint'
