"""Scatter form (``mode='scatter'``): the textbook reverse mode computes the same
adjoint as the gather form."""

import numpy as np
import pytest
from conftest import acoustic_problem, make_grid, positive
from devito import Eq, Function, Operator, TimeFunction

from devito_perforad import AdjointError, AdjointOperator, adjoint, adjoint_function


def _both_modes(primal, adjoints, seeds, apply=None, **kwargs):
    """Run the adjoint in both modes from the same seeds; return their results."""
    out = {}
    for mode in ('gather', 'scatter'):
        for f, fb in adjoints.items():
            fb.data[:] = seeds[f]
        AdjointOperator(primal, adjoints, mode=mode, **kwargs).apply(**(apply or {}))
        out[mode] = {f: fb.data.copy() for f, fb in adjoints.items()}
    return out['gather'], out['scatter']


def _close(gather, scatter, index=None):
    for f in gather:
        g, s = gather[f], scatter[f]
        if index and f in index:
            g, s = g[index[f]], s[index[f]]
        assert np.abs(g - s).max() <= 1e-12 * np.abs(g).max(), f.name


@pytest.mark.parametrize('ndim', [1, 2])
def test_spatial_program(ndim, rng):
    grid = make_grid(ndim, 4)
    u, w, q = (Function(name=n, grid=grid, space_order=4) for n in 'uwq')
    m = positive(Function(name='m', grid=grid, space_order=4), rng)
    primal = [Eq(w, u.laplace / m + u.dx), Eq(q, w.dx2 * m)]
    adjoints = {f: adjoint_function(f) for f in (u, w, q, m)}
    for f in (u, w):
        f.data[:] = rng.standard_normal(f.data.shape)
    seeds = {f: rng.standard_normal(fb.data.shape) for f, fb in adjoints.items()}
    _close(*_both_modes(primal, adjoints, seeds))


@pytest.mark.parametrize('save', [pytest.param(True, marks=pytest.mark.slow), False],
                         ids=['saved', 'buffered'])
def test_time_stepping(save, rng):
    grid = make_grid(2, 4)
    nt = 7
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2,
                     save=nt + 2 if save else None)
    m = positive(Function(name='m', grid=grid, space_order=4), rng)
    primal = [Eq(u.forward, 2 * u - u.backward + u.laplace / (4 * m))]
    u.data[:2] = rng.standard_normal(u.data[:2].shape)
    Operator(primal).apply(time_m=1, time_M=nt)
    adjoints = {u: adjoint_function(u)}
    if save:
        adjoints[m] = adjoint_function(m)
    seeds = {f: rng.standard_normal(fb.data.shape) for f, fb in adjoints.items()}
    gather, scatter = _both_modes(primal, adjoints, seeds, dict(time_m=1, time_M=nt))
    _close(gather, scatter, {u: slice(0, 2)} if save else None)


def test_burgers_with_openmp(rng):
    """1D Burgers (Max/Min upwinding), saved, OpenMP: with increments only, Devito
    4.8.23 ran the time loop as a parallel array reduction listing ``u_b`` three
    times, which gcc rejects; the own-point contribution is now an assignment."""
    import sympy
    grid = make_grid(1, 2, n=40)
    x = grid.dimensions[0]
    nt = 8
    u = TimeFunction(name='u', grid=grid, space_order=2, save=nt + 2)
    up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)
    upwind = sympy.Max(u, 0) * (u - um) + sympy.Min(u, 0) * (up - u)
    primal = [Eq(u.forward, u - 0.2 * upwind + 0.05 * (up + um - 2 * u))]
    u.data[0] = rng.standard_normal(u.data[0].shape)
    Operator(primal).apply(time_m=0, time_M=nt)
    adjoints = {u: adjoint_function(u)}
    seeds = {u: rng.standard_normal(u.data.shape)}
    gather, scatter = _both_modes(primal, adjoints, seeds, dict(time_m=0, time_M=nt),
                                  opt=('advanced', {'openmp': True}))
    _close(gather, scatter)


@pytest.mark.slow   # its scatter Operators, guarded at the domain's edges, compile long
@pytest.mark.parametrize('save', [True, False], ids=['gradient', 'adjoint'])
def test_acoustic_model(save):
    """The whole forward model (damping, SubDomain, source, receivers); with a saved
    wavefield, the FWI gradient w.r.t. vp too."""
    p = acoustic_problem(save=save)
    u, src, rec, model = p['u'], p['src'], p['rec'], p['model']
    Operator(p['primal'], subs=p['subs']).apply(**p['apply'])
    adjoints = {u: adjoint_function(u), src: adjoint_function(src),
                rec: adjoint_function(rec)}
    if save:
        adjoints[model.vp] = adjoint_function(model.vp)
    rng = np.random.default_rng(0)
    seeds = {f: np.zeros(fb.data.shape) for f, fb in adjoints.items()}
    seeds[rec] = rng.standard_normal(seeds[rec].shape)
    gather, scatter = _both_modes(p['primal'], adjoints, seeds, p['apply'],
                                  subs=p['subs'])
    _close(gather, scatter, {u: slice(0, 2)} if save else None)


def test_unknown_mode():
    grid = make_grid(1)
    u, w = (Function(name=n, grid=grid) for n in 'uw')
    with pytest.raises(AdjointError, match="mode='tape'"):
        adjoint([Eq(w, u.dx)], {u: adjoint_function(u), w: adjoint_function(w)},
                mode='tape')
