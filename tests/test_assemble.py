"""Dot and finite-difference tests of whole adjoints (float64)."""

import numpy as np
import pytest
import sympy
from conftest import dot_test, fd_test, make_grid, positive, time_inputs
from devito import Eq, Function, Inc, Operator, TimeFunction, left, right

from devito_perforad import AdjointError, AdjointOperator, adjoint, adjoint_function

TOL = 1e-12


def _fields(grid, so, *names, **kwargs):
    return [Function(name=n, grid=grid, space_order=so, **kwargs) for n in names]


# -- time-free programs ---------------------------------------------------------------

@pytest.mark.parametrize('so', [2, 4, 6, 8, 10, 12])
def test_laplacian_with_coefficient(ndim, so, rng):
    """Variable-coefficient Laplacian plus first derivatives, 1D-3D, orders 2-12."""
    grid = make_grid(ndim, so)
    u, w, c = _fields(grid, so, 'u', 'w', 'c')
    positive(c, rng)
    x = grid.dimensions[0]
    primal = [Eq(w, c * u.laplace + u.diff(x))]
    err = dot_test(primal, {u: adjoint_function(u), w: adjoint_function(w)},
                   {u: slice(None)}, rng=rng)
    assert err < TOL


DERIVATIVES = {
    'first': lambda u, c, x, y: u.dx,
    'second': lambda u, c, x, y: u.dx2 + u.dy2,
    'cross': lambda u, c, x, y: u.dxdy,
    'left': lambda u, c, x, y: u.dx(side=left),
    'right': lambda u, c, x, y: u.dy(side=right),
    'first-order-forward': lambda u, c, x, y: u.dx(fd_order=1),
    'coefficient-inside': lambda u, c, x, y: (c * u).dx + (c * u.dy).dy,
    'coefficient-outside': lambda u, c, x, y: c * u.dx + c ** 2 * u.dy2,
    'nested': lambda u, c, x, y: (c * u.dx).dx,
}


@pytest.mark.parametrize('so', [2, 4, 8])
@pytest.mark.parametrize('kind', list(DERIVATIVES))
def test_derivatives(kind, so, rng):
    grid = make_grid(2, so)
    x, y = grid.dimensions
    u, w, c = _fields(grid, so, 'u', 'w', 'c')
    positive(c, rng)
    primal = [Eq(w, DERIVATIVES[kind](u, c, x, y))]
    err = dot_test(primal, {u: adjoint_function(u), w: adjoint_function(w)},
                   {u: slice(None)}, rng=rng)
    assert err < TOL


def test_statements_in_sequence(ndim, rng):
    """A later statement reads an earlier one's output at offsets."""
    grid = make_grid(ndim, 4)
    u, w, q, c = _fields(grid, 4, 'u', 'w', 'q', 'c')
    positive(c, rng)
    x = grid.dimensions[0]
    primal = [Eq(w, u.diff(x) * c), Eq(q, w.laplace + 2 * w.diff(x) - u)]
    adjoints = {f: adjoint_function(f) for f in (u, w, q)}
    assert dot_test(primal, adjoints, {u: slice(None)}, rng=rng) < TOL


def test_several_active_inputs(rng):
    grid = make_grid(2, 4)
    a, b, w, c = _fields(grid, 4, 'a', 'b', 'w', 'c')
    positive(c, rng)
    primal = [Eq(w, a.dx + 3 * b.dy / c + a * c), Inc(w, b.laplace)]
    adjoints = {f: adjoint_function(f) for f in (a, b, w)}
    # Inc: w's old value passes through, so w is an input too.
    inputs = {a: slice(None), b: slice(None)}
    assert dot_test(primal, adjoints, inputs, rng=rng) < TOL


def test_increment_only(rng):
    grid = make_grid(2, 4)
    u, w = _fields(grid, 4, 'u', 'w')
    primal = [Inc(w, u.laplace)]
    adjoints = {u: adjoint_function(u), w: adjoint_function(w)}
    assert dot_test(primal, adjoints, {u: slice(None), w: slice(None)}, rng=rng) < TOL


def test_nonlinear_products(rng):
    """Products of fields, checked against central differences."""
    grid = make_grid(2, 4)
    u, v, w = _fields(grid, 4, 'u', 'v', 'w')
    x, y = grid.dimensions
    primal = [Eq(w, u * v.dx + u.dy ** 2 - v * u.shift(x, x.spacing) * u)]
    adjoints = {f: adjoint_function(f) for f in (u, v, w)}
    assert fd_test(primal, adjoints, {u: slice(None), v: slice(None)}, rng=rng) < 1e-7


# -- time loops -----------------------------------------------------------------------

def _wave(grid, so, time_order, save, rng):
    kw = {'save': 12} if save else {}
    u = TimeFunction(name='u', grid=grid, space_order=so, time_order=time_order, **kw)
    m = positive(Function(name='m', grid=grid, space_order=so), rng, lo=4.0)
    if time_order == 2:
        eq = Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m)
    else:
        eq = Eq(u.forward, u + 0.1 * u.laplace / m)
    return u, m, eq


@pytest.mark.parametrize('save', [True, False], ids=['saved', 'buffered'])
@pytest.mark.parametrize('time_order', [1, 2])
def test_time_stepping(ndim, time_order, save, rng):
    grid = make_grid(ndim, 4)
    u, m, eq = _wave(grid, 4, time_order, save, rng)
    tm, tM = 1, 9
    err = dot_test([eq], {u: adjoint_function(u)}, {u: time_inputs(u, tm, tM)},
                   apply=dict(time_m=tm, time_M=tM, dt=1.0), rng=rng)
    assert err < TOL


@pytest.mark.parametrize('steps', [1, 2, 3])
def test_time_stepping_few_steps(steps, rng):
    """The first and last steps are the time analogue of the edge remainders."""
    grid = make_grid(1, 4)
    u, m, eq = _wave(grid, 4, 2, False, rng)
    tm, tM = 2, 1 + steps
    err = dot_test([eq], {u: adjoint_function(u)}, {u: time_inputs(u, tm, tM)},
                   apply=dict(time_m=tm, time_M=tM, dt=1.0), rng=rng)
    assert err < TOL


def test_coupled_first_order_system(rng):
    """Velocity-pressure system: p reads v at the level written in the same step."""
    grid = make_grid(2, 4)
    v = TimeFunction(name='v', grid=grid, space_order=4)
    p = TimeFunction(name='p', grid=grid, space_order=4)
    rho = positive(Function(name='rho', grid=grid, space_order=4), rng, lo=4.0)
    primal = [Eq(v.forward, v + 0.2 * p.dx / rho),
              Eq(p.forward, p + 0.2 * v.forward.dx + 0.1 * p.dy2)]
    adjoints = {v: adjoint_function(v), p: adjoint_function(p)}
    tm, tM = 0, 7
    inputs = {f: time_inputs(f, tm, tM) for f in (v, p)}
    err = dot_test(primal, adjoints, inputs, apply=dict(time_m=tm, time_M=tM), rng=rng)
    assert err < TOL


@pytest.mark.parametrize('later', [False, True], ids=['alone', 'later-increment'])
def test_parameter_gradient(later, rng):
    """Gradient w.r.t. a time-invariant parameter inside a nonlinear denominator.

    The partial is rewritten through the saved level ``u[t+1]``; a later increment of
    that level (which the saved value then includes) keeps the original partial.
    """
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=10)
    m = Function(name='m', grid=grid, space_order=4)
    eq = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m)]
    if later:
        eq.append(Inc(u.forward, 0.01 * m * u.backward))
    adjoints = {u: adjoint_function(u), m: adjoint_function(m)}
    tm, tM = 1, 8
    op = Operator(eq)
    aop = AdjointOperator(eq, adjoints)
    inputs = time_inputs(u, tm, tM)[:, None, None]
    x_u = np.where(inputs, rng.standard_normal(u.shape), 0)
    x_m = 4.0 + rng.random(m.shape)  # m stays away from zero
    du, dm = rng.standard_normal(u.shape) * inputs, rng.random(m.shape)
    yu = rng.standard_normal(u.shape)

    def objective(h):
        u.data[:] = x_u + h * du
        m.data[:] = x_m + h * dm
        op.apply(time_m=tm, time_M=tM, dt=1.0)
        return np.vdot(u.data, yu)

    h = 1e-6
    fd = (objective(h) - objective(-h)) / (2 * h)
    objective(0.0)
    ub, mb = adjoints[u], adjoints[m]
    ub.data[:] = yu
    mb.data[:] = 0
    aop.apply(time_m=tm, time_M=tM, dt=1.0)
    ad = np.vdot(du, ub.data) + np.vdot(dm, mb.data)
    assert abs(fd - ad) / abs(ad) < 1e-7


def test_parameter_gradient_buffered_adjoint(rng):
    """Saved forward wavefield, buffered adjoint wavefield: the FWI set-up."""
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=10)
    m = Function(name='m', grid=grid, space_order=4)
    eq = Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m)
    tm, tM = 1, 8
    op = Operator([eq])
    u.data[:] = np.where(time_inputs(u, tm, tM)[:, None, None],
                         rng.standard_normal(u.shape), 0)
    m.data[:] = 4.0 + rng.random(m.shape)
    op.apply(time_m=tm, time_M=tM, dt=1.0)
    seed = np.zeros(u.shape)
    seed[-3:] = rng.standard_normal(seed[-3:].shape)  # seeds on the final buffer's levels
    grads = []
    for ub in (adjoint_function(u, name='us'),
               TimeFunction(name='ubuf', grid=grid, space_order=4, time_order=2)):
        mb = adjoint_function(m)
        if ub.save:
            ub.data[:] = seed
        else:
            for level in (7, 8, 9):
                ub.data[level % 3] = seed[level]
        AdjointOperator([eq], {u: ub, m: mb}).apply(time_m=tm, time_M=tM, dt=1.0)
        grads.append(mb.data.copy())
    assert np.abs(grads[0] - grads[1]).max() <= 1e-12 * np.abs(grads[0]).max()


def test_burgers_upwind(rng):
    """1D Burgers sweep with Max/Min upwinding, against central differences."""
    grid = make_grid(1, 2, n=41)
    x = grid.dimensions[0]
    h = x.spacing
    u = TimeFunction(name='u', grid=grid, space_order=2, save=8)
    C, D = 0.2, 0.1
    ux = u.shift(x, h)
    uw = u.shift(x, -h)
    rhs = (u - C * (sympy.Max(u, 0) * (u - uw) + sympy.Min(u, 0) * (ux - u))
           + D * (ux + uw - 2 * u))
    primal = [Eq(u.forward, rhs)]
    tm, tM = 0, 6
    err = fd_test(primal, {u: adjoint_function(u)}, {u: time_inputs(u, tm, tM)},
                  apply=dict(time_m=tm, time_M=tM), rng=rng)
    assert err < 1e-7


def test_adjoint_writes_own_point_only():
    """Gather form: every adjoint equation writes at the iteration point."""
    grid = make_grid(2, 8)
    u, m, eq = _wave(grid, 8, 2, True, np.random.default_rng(0))
    for e in adjoint([eq], {u: adjoint_function(u), m: adjoint_function(m)}):
        assert all(arg == d for arg, d in zip(e.lhs.args, e.lhs.function.dimensions,
                                              strict=True) if not d.is_Time)


# -- bad input: clear errors before anything runs --------------------------------------

def test_buffered_primal_value_needed():
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2)  # buffered
    primal = [Eq(u.forward, u - 0.1 * u * u.dx)]
    with pytest.raises(AdjointError, match=r"field `u`.*buffered.*save=nt"):
        adjoint(primal, {u: adjoint_function(u)})


def test_inactive_intermediate_that_carries_the_derivative():
    """``w`` lies between the active ``u`` and ``q``: it cannot be marked inactive."""
    grid = make_grid(1, 2)
    u, w, q = (Function(name=n, grid=grid, space_order=2) for n in 'uwq')
    primal = [Eq(w, u.dx), Eq(q, w.dx)]
    with pytest.raises(AdjointError, match=r"In `Eq\(q.*field `w`.*marked inactive"):
        adjoint(primal, {u: adjoint_function(u), w: None, q: adjoint_function(q)})


def test_in_place_update_is_refused():
    grid = make_grid(1, 2)
    u = Function(name='u', grid=grid, space_order=2)
    with pytest.raises(AdjointError, match=r"field `u`.*in place"):
        adjoint([Eq(u, 2 * u)], {u: adjoint_function(u)})


def test_read_before_write_in_step_is_refused():
    grid = make_grid(1, 2)
    v = TimeFunction(name='v', grid=grid, space_order=2)
    p = TimeFunction(name='p', grid=grid, space_order=2)
    primal = [Eq(p.forward, p + v.forward.dx), Eq(v.forward, v + p.dx)]
    with pytest.raises(AdjointError, match=r"field `v`.*read before the step writes"):
        adjoint(primal, {v: adjoint_function(v), p: adjoint_function(p)})


