"""Is the derived Burgers adjoint as fast as a hand-written one?

Devito has no hand-written adjoint of the PerforAD paper's 1D Burgers stencil, so this
script writes one: the transpose of ``u[t+1] = u - 0.2 (max(u,0) (u - u[x-1]) +
min(u,0) (u[x+1] - u)) + 0.05 (u[x+1] + u[x-1] - 2u)`` as one Devito equation, the
partial derivatives of the upwinding written out by hand, on the interior only (no
edges, no seeds: the least work an adjoint step can do). It times the primal and the
hand-written adjoint with one contiguous block per thread (the schedule the derived
adjoint gets) and the derived adjoint, in interleaved rounds, in one process.

Run from the repository root::

    python benchmarks/burgers_floor.py     # 1e6 points, 100 steps, 2 threads
    python benchmarks/burgers_floor.py --n 4000 --nt 10 --rounds 1   # smoke test
"""

import argparse
import sys
import time

import numpy as np
import sympy
from devito import Eq, Grid, Operator, TimeFunction, configuration

from devito_perforad import AdjointOperator
from devito_perforad.devito_compat import openmp_chunks_of_one

__all__ = ['burgers_step', 'operators', 'main']


def burgers_step(u):
    """The PerforAD paper's 1D Burgers step on ``u`` (``benchmarks/run.py`` times it
    too), as a list of Devito equations."""
    x = u.grid.dimensions[0]
    up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)
    upwind = sympy.Max(u, 0) * (u - um) + sympy.Min(u, 0) * (up - u)
    return [Eq(u.forward, u - 0.2 * upwind + 0.05 * (up + um - 2 * u))]


def _hand_adjoint(u, ub):
    """``ub[t] = sum_o d f(x + o) / d u(x) * ub[t+1](x + o)`` for the step ``f``."""
    x = u.grid.dimensions[0]
    up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)

    def positive(e):
        return sympy.Piecewise((1, e > 0), (0, True))
    nxt = ub.forward
    centre = 0.9 - 0.2 * (positive(u) * (u - um) + sympy.Max(u, 0)
                          + positive(-u) * (up - u) - sympy.Min(u, 0))
    return Eq(ub, centre * nxt + (0.2 * sympy.Max(up, 0) + 0.05) * nxt.shift(x, x.spacing)
              + (0.05 - 0.2 * sympy.Min(um, 0)) * nxt.shift(x, -x.spacing))


def operators(n, nt):
    """The primal, the hand-written adjoint and the derived adjoint, compiled."""
    kw = dict(opt=('advanced', {'par-dynamic-work': np.inf}))
    grid = Grid(shape=(n,), dtype=np.float64)
    u = TimeFunction(name='u', grid=grid, space_order=2, save=nt + 2)
    ub = TimeFunction(name='ub', grid=grid, space_order=2, time_order=1)
    with openmp_chunks_of_one():
        ops = {'primal, contiguous chunks': Operator(burgers_step(u), **kw),
               'hand-written adjoint (interior)': Operator([_hand_adjoint(u, ub)], **kw)}
    ops['derived adjoint'] = AdjointOperator(burgers_step(u), {u: ub}, **kw)
    u.data[:] = 0.1 * np.random.default_rng(0).standard_normal(u.data.shape)
    for op in ops.values():
        _ = op.cfunction
    return ops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=1_000_000)
    parser.add_argument('--nt', type=int, default=100)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--rounds', type=int, default=7)
    args = parser.parse_args(argv)
    configuration['language'] = 'openmp'  # as in run.py
    configuration['log-level'] = 'WARNING'
    ops = operators(args.n, args.nt)
    for op in ops.values():  # warm-up
        op.apply(time_m=1, time_M=args.nt, nthreads=args.threads)
    times = {name: [] for name in ops}
    for _ in range(args.rounds):
        for name, op in ops.items():
            t0 = time.perf_counter()
            op.apply(time_m=1, time_M=args.nt, nthreads=args.threads)
            times[name].append(time.perf_counter() - t0)
    base = np.median(times['primal, contiguous chunks'])
    for name, ts in times.items():
        print(f'{name}: {np.median(ts):.4f} s, {np.median(ts) / base:.2f}x the primal '
              f'({" ".join(f"{t:.4f}" for t in ts)})')


if __name__ == '__main__':
    sys.exit(main())
