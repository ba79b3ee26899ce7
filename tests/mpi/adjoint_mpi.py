"""Dot tests and gradients of derived adjoints, serial or under MPI.

Run it serially, or under ``mpirun`` with ``DEVITO_MPI`` set (``1``/``basic``,
``diag2``, ``overlap``, ``full``); every rank builds the same float64 problems, derives
their ``AdjointOperator``s with devito-perforad and runs them. Everything is gathered
to rank 0 and written to the ``.npz`` named on the command line, so that a serial run
and an MPI run can be compared entry by entry::

    python tests/mpi/adjoint_mpi.py serial.npz
    DEVITO_MPI=1 mpirun -n 2 python tests/mpi/adjoint_mpi.py mpi.npz

(as root, OpenMPI also wants ``OMPI_ALLOW_RUN_AS_ROOT=1
OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1``; ``tests/test_mpi.py`` runs and compares both).

Cases (``--cases``, default both):

``acoustic``
    Devito's acoustic forward model as ``tests/test_seismic.py`` builds it
    (``tests/conftest.py: acoustic_problem``: damped ``iso_stencil``, Ricker
    injection ``src * dt**2 / m``, receiver interpolation), with a saved wavefield.

    1. observed data ``d_obs`` with the true model;
    2. the dot test ``<F x, y> = <x, F^T y>`` at a smooth model ``vp0``, linear in
       ``(u, src, rec)``: ``x`` random on the initial wavefield levels and the source
       data, ``y`` random on every wavefield level and receiver; ``F^T`` is the derived
       adjoint with a saved adjoint wavefield;
    3. the FWI gradient ``dJ/dvp`` of ``J = 1/2 ||F(vp0) - d_obs||^2``, buffered
       adjoint wavefield;
    4. the same gradient with ``checkpointing=True`` (buffered wavefield, 5 Revolve
       snapshots).

``stencils``
    A 2D program built to exercise what the acoustic adjoint does not: a whole-domain
    wave equation with a coefficient inside a derivative and a one-sided term divided
    by ``m`` (its adjoint runs on a guard-free core and guarded edge shells), coupled
    to a field
    updated on a ``SubDomain`` (guards on the SubDomain's bounds), and a
    time-invariant parameter ``m`` with nonlinear partials (ternaries reading the saved
    wavefield at neighbouring points). Dot test in ``(u, v)``, and ``dJ/dm``. Then the
    same constructs with buffered adjoint fields, ``q`` reading ``p`` at its own level,
    and the one-sided term multiplied by ``m``, whose adjoint reads the zero halo
    unguarded (the adjoint fields' final values and ``dJ/dm``).

``--ccode DIR`` also writes the generated C of every operator (one file per rank).
"""

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
ROOT = os.path.dirname(TESTS)


class Run:
    """The communicator (``None`` when serial) and how to gather and broadcast."""

    def __init__(self, grid):
        from devito import configuration
        self.comm = None
        if configuration['mpi'] and grid.distributor.nprocs > 1:
            from mpi4py import MPI  # Devito has initialised MPI with the Grid
            self.comm = MPI.COMM_WORLD
        self.rank = 0 if self.comm is None else self.comm.rank
        self.topology = tuple(grid.distributor.topology)

    def gather(self, f):
        """The global data of ``f`` on rank 0 (``None`` on the other ranks).

        Dense fields through ``data_gather``. Devito splits the points of a sparse
        function into contiguous chunks, one per rank in rank order
        (``SparseDistributor.decompose``), and ``f.data`` on a rank is its chunk.
        """
        if self.comm is None:
            return np.array(f.data)
        if not f.is_SparseFunction:
            return f.data_gather(rank=0)
        parts = self.comm.gather(np.array(f.data._local), root=0)
        if self.rank != 0:
            return None
        return np.concatenate(parts, axis=f._sparse_position)

    def bcast(self, value):
        return value if self.comm is None else self.comm.bcast(value, root=0)


def write_ccode(folder, run, **ops):
    if folder:
        os.makedirs(folder, exist_ok=True)
        for name, op in ops.items():
            with open(os.path.join(folder, f'{name}.{run.rank}.c'), 'w') as fh:
                fh.write(str(op.ccode))


def dot_quantities(out, prefix, fx, y, x, fty):
    """``<F x, y>``, ``<x, F^T y>`` and their relative difference, into ``out``."""
    forward = sum(np.vdot(fx[k], y[k]) for k in fx)
    backward = sum(np.vdot(x[k], fty[k]) for k in fx)
    out[f'{prefix}forward'] = forward
    out[f'{prefix}backward'] = backward
    out[f'{prefix}dot'] = abs(forward - backward) / max(abs(forward), abs(backward))
    for k in fx:
        out[f'{prefix}fx_{k}'] = fx[k]
        out[f'{prefix}fty_{k}'] = fty[k]


def acoustic(args, out):
    from conftest import acoustic_problem, time_inputs
    from devito import Operator, TimeFunction
    from scipy.ndimage import gaussian_filter

    from devito_perforad import AdjointOperator, adjoint_function

    p = acoustic_problem(so=args.so, shape=(args.n, args.n), nbl=args.nbl, tn=args.tn,
                         save=True, nrec=args.nrec)
    model, u, src, rec = p['model'], p['u'], p['src'], p['rec']
    run = Run(model.grid)
    op = Operator(p['primal'], subs=p['subs'])
    dot_adjoints = {u: adjoint_function(u), src: adjoint_function(src),
                    rec: adjoint_function(rec)}
    dot_op = AdjointOperator(p['primal'], dot_adjoints, subs=p['subs'])
    ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=args.so)
    vpb, recb = adjoint_function(model.vp), adjoint_function(rec, 'rec_g')
    grad_op = AdjointOperator(p['primal'], {u: ub, model.vp: vpb, rec: recb},
                              subs=p['subs'], name='Gradient')
    write_ccode(args.ccode, run, acoustic_forward=op, acoustic_dot=dot_op,
                acoustic_gradient=grad_op)

    ricker = run.bcast(run.gather(src))
    vp0 = gaussian_filter(run.bcast(run.gather(model.vp)), 3)
    arguments = op.arguments(**p['apply'])
    first, last = int(arguments['time_m']), int(arguments['time_M'])

    # 1. observed data, true model
    u.data[:] = 0
    op.apply(**p['apply'])
    d_obs = run.bcast(run.gather(rec))

    # 2. dot test at vp0
    model.vp.data[:] = vp0
    rng = np.random.default_rng(args.seed)
    shapes = {u: (u.save, *model.grid.shape), src: ricker.shape,
              rec: (ricker.shape[0], rec.npoint_global)}
    inputs = {u: time_inputs(u, first, last), src: slice(None)}
    x, y = {}, {}
    for f, shape in shapes.items():
        x[f] = np.zeros(shape)
        if f in inputs:
            x[f][inputs[f]] = rng.standard_normal(x[f][inputs[f]].shape)
        y[f] = rng.standard_normal(shape)
        f.data[:] = x[f]
    op.apply(**p['apply'])
    fx = {f.name: run.gather(f) for f in shapes}
    for f, fb in dot_adjoints.items():
        fb.data[:] = y[f]
    dot_op.apply(**p['apply'])
    fty = {f.name: run.gather(fb) for f, fb in dot_adjoints.items()}

    # 3. FWI gradient at vp0 with the Ricker source
    src.data[:] = ricker
    u.data[:] = 0
    op.apply(**p['apply'])
    residual = run.bcast(run.gather(rec)) - d_obs
    ub.data[:] = 0
    vpb.data[:] = 0
    recb.data[:] = residual
    grad_op.apply(**p['apply'])
    grad = run.gather(vpb)

    # 4. the same gradient with checkpointing: a buffered wavefield, Revolve snapshots
    q = acoustic_problem(so=args.so, shape=(args.n, args.n), nbl=args.nbl, tn=args.tn,
                         save=False, nrec=args.nrec)
    q['model'].vp.data[:] = vp0
    q['src'].data[:] = ricker
    qb = {q['u']: TimeFunction(name='ub', grid=q['model'].grid, time_order=2,
                               space_order=args.so),
          q['model'].vp: adjoint_function(q['model'].vp),
          q['rec']: adjoint_function(q['rec'], 'rec_g')}
    qb[q['rec']].data[:] = residual
    AdjointOperator(q['primal'], qb, subs=q['subs'], checkpointing=True,
                    n_checkpoints=5).apply(**q['apply'])
    grad_checkpointed = run.gather(qb[q['model'].vp])

    if run.rank == 0:
        dot_quantities(out, 'acoustic_', fx, {f.name: v for f, v in y.items()},
                       {f.name: v for f, v in x.items()}, fty)
        out.update(acoustic_grad=grad, acoustic_grad_checkpointed=grad_checkpointed,
                   acoustic_d_obs=d_obs,
                   acoustic_J=0.5 * np.sum(residual ** 2),
                   acoustic_time_m=first, acoustic_time_M=last)
    return run


def stencils(args, out):
    from devito import Eq, Function, Grid, Operator, SubDomain, TimeFunction

    from devito_perforad import AdjointOperator, adjoint_function

    class Box(SubDomain):
        name = 'box'

        def define(self, dimensions):
            x, y = dimensions
            return {x: ('middle', 3, 5), y: ('middle', 2, 4)}

    shape = (40, 36)
    grid = Grid(shape=shape, extent=tuple(float(n - 1) for n in shape),
                dtype=np.float64)
    run = Run(grid)
    box = Box(grid=grid)
    x = grid.dimensions[0]
    # time_M = save - 3: the adjoint of the coupled read ``u.forward.dy`` reads
    # ``u_b[time + 2]`` under a 0/1 step factor, one level past what the primal writes
    nt, first, last = 14, 1, 11
    so = 2  # enough for every construct; higher orders only make the build slower
    u = TimeFunction(name='u', grid=grid, space_order=so, time_order=2, save=nt)
    v = TimeFunction(name='v', grid=grid, space_order=so, time_order=1, save=nt)
    m = Function(name='m', grid=grid, space_order=so)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m
                 + 0.02 * (m * u).dy + 0.01 * u.shift(x, x.spacing) / m),
              Eq(v.forward, v + 0.1 * v.dx2 / m + 0.05 * u.forward.dy, subdomain=box)]
    op = Operator(primal)
    adjoints = {u: adjoint_function(u), v: adjoint_function(v), m: adjoint_function(m)}
    aop = AdjointOperator(primal, adjoints)
    mask = Function(name='mask', grid=grid)
    Operator(Eq(mask, 1, subdomain=box))()
    write_ccode(args.ccode, run, stencils_forward=op, stencils_adjoint=aop)

    apply = dict(time_m=first, time_M=last)
    rng = np.random.default_rng(args.seed + 1)
    written = np.zeros(nt, dtype=bool)
    written[first + 1:last + 2] = True
    outside = run.bcast(run.gather(mask)) == 0
    inputs = {u: ~written[:, None, None] & np.ones(shape, dtype=bool),
              v: ~written[:, None, None] | outside}
    xs = {f: np.where(inputs[f], rng.standard_normal((nt, *shape)), 0) for f in (u, v)}
    ys = {f: rng.standard_normal((nt, *shape)) for f in (u, v)}
    m.data[:] = 4.0 + rng.random(shape)
    for f in (u, v):
        f.data[:] = xs[f]
    op.apply(**apply)
    fx = {f.name: run.gather(f) for f in (u, v)}
    for f in (u, v):
        adjoints[f].data[:] = ys[f]
    aop.apply(**apply)
    fty = {f.name: run.gather(adjoints[f]) for f in (u, v)}
    mb = run.gather(adjoints[m])

    # The same constructs with buffered adjoints (the FWI set-up): ``q`` reads ``p``
    # at its own level, so the adjoint levels fit the buffers.
    p = TimeFunction(name='p', grid=grid, space_order=so, time_order=2, save=nt)
    q = TimeFunction(name='q', grid=grid, space_order=so, time_order=1, save=nt)
    primal = [Eq(p.forward, 2 * p - p.backward + 0.1 * p.laplace / m
                 + 0.02 * (m * p).dy + 0.01 * m * p.shift(x, x.spacing)),
              Eq(q.forward, q + 0.1 * q.dx2 / m + 0.05 * p.dy, subdomain=box)]
    op2 = Operator(primal)
    buffered = {p: TimeFunction(name='pb', grid=grid, space_order=so, time_order=2),
                q: TimeFunction(name='qb', grid=grid, space_order=so, time_order=1),
                m: adjoint_function(m, 'm_b2')}
    aop2 = AdjointOperator(primal, buffered)
    write_ccode(args.ccode, run, stencils_forward2=op2, stencils_buffered=aop2)
    for f in (p, q):
        f.data[:] = xs[u if f is p else v]
    op2.apply(**apply)
    for f in (p, q):
        buffered[f].data[:] = rng.standard_normal(buffered[f].shape_global)
    aop2.apply(**apply)
    fty2 = {f.name: run.gather(buffered[f]) for f in (p, q, m)}

    if run.rank == 0:
        dot_quantities(out, 'stencils_', fx, {f.name: v for f, v in ys.items()},
                       {f.name: v for f, v in xs.items()}, fty)
        out['stencils_grad'] = mb
        out.update({f'stencils_buffered_{k}': v for k, v in fty2.items()})
    return run


def nested(args, out):
    """A variable-density stencil, ``(b*u.dx).dx + (b*u.dy).dy``, whose adjoint reverses
    the nested derivatives as compositions (Devito's temporaries over the halo): dot
    test and the gradient with respect to ``b``."""
    from devito import Eq, Function, Grid, Operator, TimeFunction

    from devito_perforad import AdjointOperator, adjoint_function

    shape = (40, 36)
    grid = Grid(shape=shape, extent=tuple(float(n - 1) for n in shape),
                dtype=np.float64)
    run = Run(grid)
    nt, first, last = 14, 1, 11
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=nt)
    b = Function(name='b', grid=grid, space_order=4)
    divergence = sum((b * u.diff(d)).diff(d) for d in grid.dimensions)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * divergence)]
    rng = np.random.default_rng(args.seed + 2)
    b.data[:] = 1.0 + rng.random(shape)
    op = Operator(primal)
    linear = {u: adjoint_function(u)}
    both = {u: adjoint_function(u, 'u_b2'), b: adjoint_function(b)}
    aop, gop = AdjointOperator(primal, linear), AdjointOperator(primal, both)
    write_ccode(args.ccode, run, nested_forward=op, nested_adjoint=aop,
                nested_gradient=gop)
    apply = dict(time_m=first, time_M=last)
    written = np.zeros(nt, dtype=bool)
    written[first + 1:last + 2] = True
    x = np.where(~written[:, None, None], rng.standard_normal((nt, *shape)), 0)
    y = rng.standard_normal((nt, *shape))
    u.data[:] = x
    op.apply(**apply)
    fx = run.gather(u)
    linear[u].data[:] = y
    aop.apply(**apply)
    fty = run.gather(linear[u])
    both[u].data[:] = y
    gop.apply(**apply)  # u holds the trajectory from x
    if run.rank == 0:
        dot_quantities(out, 'nested_', {'u': fx}, {'u': y}, {'u': x}, {'u': fty})
    grad = run.gather(both[b])
    if run.rank == 0:
        out['nested_grad'] = grad
    return run


CASES = {'acoustic': acoustic, 'stencils': stencils, 'nested': nested}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='.npz written by rank 0')
    parser.add_argument('--cases', nargs='+', choices=list(CASES), default=list(CASES))
    parser.add_argument('--so', type=int, default=8, help='acoustic: space order')
    parser.add_argument('--n', type=int, default=41,
                        help='acoustic: physical points per side')
    parser.add_argument('--nbl', type=int, default=10, help='acoustic: absorbing layer')
    parser.add_argument('--tn', type=float, default=200.0, help='acoustic: final time')
    parser.add_argument('--nrec', type=int, default=9, help='acoustic: receivers')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--ccode', help='folder for the generated C (one file per rank)')
    args = parser.parse_args(argv)

    sys.path[:0] = [ROOT, TESTS]  # this checkout's package and tests/conftest.py
    from devito import configuration

    import devito_perforad
    configuration['log-level'] = 'ERROR'
    clock = time.perf_counter()
    out = {}
    for case in args.cases:
        run = CASES[case](args, out)
    if run.rank == 0:
        np.savez(args.out, **out, mode=str(configuration['mpi']),
                 nprocs=1 if run.comm is None else run.comm.size,
                 topology=np.array(run.topology),
                 package=devito_perforad.__file__, seconds=time.perf_counter() - clock)


def abort_on_error():
    """Run :func:`main`; on an error in one rank, stop every rank (the others would
    wait forever in the next collective)."""
    try:
        main()
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        if 'mpi4py.MPI' in sys.modules:
            sys.modules['mpi4py.MPI'].COMM_WORLD.Abort(1)
        raise


if __name__ == '__main__':
    abort_on_error()
