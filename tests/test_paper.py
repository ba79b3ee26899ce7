"""The PerforAD paper's test cases as Devito equations, checked against an independent
textbook reverse mode written in NumPy (scatter form, one step at a time)."""

import numpy as np
import sympy
from devito import Eq, Grid, Operator, TimeFunction

from devito_perforad import AdjointOperator, adjoint_function

NT = 8


def _shift(a, k, axis):
    """a[i + k] along ``axis`` with zeros outside (the halo)."""
    out = np.zeros_like(a)
    n = a.shape[axis]
    src = [slice(None)] * a.ndim
    dst = [slice(None)] * a.ndim
    if k >= 0:
        src[axis], dst[axis] = slice(k, n), slice(0, n - k)
    else:
        src[axis], dst[axis] = slice(0, n + k), slice(-k, n)
    out[tuple(dst)] = a[tuple(src)]
    return out


def _wave(ndim, c):
    n = 24 if ndim == 1 else 10
    grid = Grid(shape=(n,) * ndim, extent=(n - 1.0,) * ndim, dtype=np.float64)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2, save=NT + 2)
    lap = sum(u.shift(d, d.spacing) + u.shift(d, -d.spacing) - 2 * u
              for d in grid.dimensions)
    primal = [Eq(u.forward, 2 * u - u.backward + c * lap)]

    def step(xt, xtm1):
        return 2 * xt - xtm1 + c * sum(_shift(xt, 1, a) + _shift(xt, -1, a) - 2 * xt
                                       for a in range(ndim))

    def vjp(xt, xtm1, bar):  # scatter: each point sends to its neighbours
        b = 2 * bar - 2 * ndim * c * bar
        for a in range(ndim):
            b = b + c * (_shift(bar, -1, a) + _shift(bar, 1, a))
        return b, -bar  # x[t-1] enters as -x[t-1]

    return u, primal, step, vjp


def _burgers(courant=0.2, diffusion=0.05):
    C, D = courant, diffusion  # noqa: N806 - the paper's names
    n = 40
    grid = Grid(shape=(n,), extent=(n - 1.0,), dtype=np.float64)
    x = grid.dimensions[0]
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=1, save=NT + 1)
    up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)
    upwind = sympy.Max(u, 0) * (u - um) + sympy.Min(u, 0) * (up - u)
    primal = [Eq(u.forward, u - C * upwind + D * (up + um - 2 * u))]

    def step(xt, xtm1):
        xp, xm = _shift(xt, 1, 0), _shift(xt, -1, 0)
        return (xt - C * (np.maximum(xt, 0) * (xt - xm) + np.minimum(xt, 0) * (xp - xt))
                + D * (xp + xm - 2 * xt))

    def vjp(xt, xtm1, bar):
        xp, xm = _shift(xt, 1, 0), _shift(xt, -1, 0)
        pos, neg = (xt > 0).astype(float), (xt < 0).astype(float)  # H(0) = 0
        d_self = 1 - C * (pos * (xt - xm) + np.maximum(xt, 0) + neg * (xp - xt)
                          - np.minimum(xt, 0)) - 2 * D
        d_minus = C * np.maximum(xt, 0) + D   # d out[i] / d x[i-1]
        d_plus = -C * np.minimum(xt, 0) + D   # d out[i] / d x[i+1]
        b = d_self * bar
        b = b + _shift(d_minus * bar, 1, 0)   # out[i+1] read x[i] as its x[i-1]
        b = b + _shift(d_plus * bar, -1, 0)   # out[i-1] read x[i] as its x[i+1]
        return b, None

    return u, primal, step, vjp


def reference(step, vjp, x, ybar, order):
    """Textbook reverse mode in NumPy: run the steps forward keeping every state, then
    walk them backwards, each step scattering its cotangent to the states it read."""
    states = list(x)
    while len(states) < len(ybar):
        states.append(step(states[-1], states[-2] if order == 2 else None))
    bars = [b.copy() for b in ybar]
    for t in range(len(states) - 2, order - 2, -1):  # the step that wrote states[t+1]
        b_t, b_tm1 = vjp(states[t], states[t - 1] if order == 2 else None, bars[t + 1])
        bars[t] += b_t
        if order == 2:
            bars[t - 1] += b_tm1
    return np.array(states), np.array(bars)


def check(u, primal, step, vjp, rng):
    """The Devito primal equals the NumPy one, and the derived adjoint equals the
    textbook reverse mode on every time level (seeds on every level)."""
    order = u.time_order
    x = [rng.standard_normal(u.shape[1:]) for _ in range(order)]
    ybar = list(rng.standard_normal(u.shape))
    states, bars = reference(step, vjp, x, ybar, order)
    u.data[:] = 0
    u.data[:order] = np.array(x)
    apply = dict(time_m=order - 1, time_M=u.shape[0] - 2)
    Operator(primal).apply(**apply)
    assert np.abs(u.data - states).max() <= 1e-12 * np.abs(states).max()
    ub = adjoint_function(u)
    ub.data[:] = np.array(ybar)
    AdjointOperator(primal, {u: ub}).apply(**apply)
    assert np.abs(ub.data - bars).max() <= 1e-12 * np.abs(bars).max()


def test_wave_1d(rng):
    check(*_wave(1, 0.3), rng)


def test_wave_3d(rng):
    check(*_wave(3, 0.1), rng)


def test_burgers_1d(rng):
    """Max/Min upwinding; the reference uses the same subgradient, H(0) = 0."""
    check(*_burgers(), rng)
