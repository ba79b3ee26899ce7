"""devito_compat.py: the workarounds for Devito, applied only while an adjoint is
derived or built, and gone afterwards."""

import numpy as np
import sympy
from conftest import Box, make_grid
from devito import Eq, Operator, TimeFunction

from devito_perforad import AdjointOperator, adjoint_function


def test_lone_loop_gets_contiguous_chunks():
    """A 1D adjoint's OpenMP loops hand each thread one contiguous block (Devito's
    chunks of one point would interleave the threads and stop vectorisation), while a
    2D adjoint's outer loops keep Devito's row-by-row chunks; Devito is left as it was."""
    import re

    def schedules(op):
        return set(re.findall(r'omp for (schedule\([^)]*\))', str(op)))

    openmp = dict(opt=('advanced', {'openmp': True}))
    for ndim, expected in [(1, {'schedule(static)'}), (2, {'schedule(static,1)'})]:
        grid = make_grid(ndim)
        u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
        lap = sum(u.shift(d, d.spacing) + u.shift(d, -d.spacing) - 2 * u
                  for d in grid.dimensions)
        primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * lap)]
        adjoint_op = AdjointOperator(primal, {u: adjoint_function(u)}, **openmp)
        assert schedules(adjoint_op) == expected
    static = ('advanced', {'openmp': True, 'par-dynamic-work': np.inf})
    assert schedules(Operator(primal[0], opt=static)) == {'schedule(static,1)'}

    # Burgers: the adjoint is one loop, over the whole domain, in one block per thread
    # (its partials are finite in the zero halo: no edge strips)
    grid = make_grid(1)
    x = grid.dimensions[0]
    u = TimeFunction(name='u', grid=grid, space_order=2, save=5)
    up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)
    loop = r'omp for (schedule\([^)]*\))\s*for \(int x = ([^;]*);'
    for flux, expected in [
            (sympy.Max(u, 0) * (u - um) + sympy.Min(u, 0) * (up - u),
             [('schedule(static)', 'x_m')]),
            # a partial divided by a field needs a guard at the right edge (the
            # primal reads u[x - 1]): the loop over the points there keeps Devito's
            # chunks
            (sympy.Max(u, 0) * (u - um) / (1 + u**2),
             [('schedule(static)', 'x_m + x_ltkn0'),
              ('schedule(static,1)', 'x_M - x_rtkn1 + 1')])]:
        code = str(AdjointOperator(Eq(u.forward, u - 0.2 * flux),
                                   {u: adjoint_function(u)}, **openmp))
        assert re.findall(loop, code) == expected


def test_core_and_shell_boxes_decompose_like_devito():
    """``core_shell.Box`` builds its SubDomain with integer bounds (Devito's own compares
    every grid index with sympy numbers): the decomposition is Devito's, the patch is
    gone after the build, and a large grid's boxes cost no per-index sympy work."""
    import sys

    import sympy
    from devito import Grid
    from devito.mpi import distributed

    from devito_perforad import devito_compat
    from devito_perforad.passes import core_shell

    original = distributed._interval_bounds
    grid = Grid(shape=(40, 30))
    spec = (('middle', 2, 3), ('right', 4))
    ours = core_shell.Box('core_test', spec, grid)
    devitos = Box(spec, grid=grid)  # this module's SubDomain: Devito's own path
    assert distributed._interval_bounds is original
    for a, b in zip(ours.distributor._decomposition, devitos.distributor._decomposition,
                    strict=True):
        assert [list(p) for p in a] == [list(p) for p in b]
    with devito_compat.sympy_subdomain_bounds():
        interval = ours.dimensions[0]._interval.subs(
            {t: t.value for t in ours.dimensions[0].thickness})
        interval = interval.subs({grid.dimensions[0].symbolic_min: 0,
                                  grid.dimensions[0].symbolic_max: 39})
        bounds = distributed._interval_bounds(interval)
    assert bounds == (2, 36) and all(type(b) is int for b in bounds)
    assert isinstance(original(interval)[0], sympy.Integer)  # what Devito compares

    # sympify calls while building a box on a 20000-point grid: Devito's path makes
    # four per grid index (81654 here with Devito 4.8.23), ours a few hundred
    module, calls = sys.modules['sympy.core.sympify'], []
    sympify = module.sympify
    try:
        module.sympify = lambda *a, **k: calls.append(1) or sympify(*a, **k)
        core_shell.Box('core_big', (('middle', 1, 1),), Grid(shape=(20_000,)))
    finally:
        module.sympify = sympify
    assert len(calls) < 2000, len(calls)
