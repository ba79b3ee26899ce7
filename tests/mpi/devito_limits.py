"""Devito 4.8.23 alone: two halo-exchange limitations the adjoint code runs into.

Run under ``mpirun -n 2`` with ``DEVITO_MPI`` set (see ``docs/mpi.md``)::

    DEVITO_MPI=diag2 mpirun -n 2 python tests/mpi/devito_limits.py pinned-level
    DEVITO_MPI=overlap mpirun -n 2 python tests/mpi/devito_limits.py split

``pinned-level``
    Before the time loop, level ``time_M`` of a saved TimeFunction is updated from
    level ``time_M + 1`` read at neighbouring points (the shape of an adjoint update
    pinned at the top of the run). Devito exchanges the halo over the whole time
    extent: ``basic`` runs it, ``diag`` and ``overlap`` emit C that does not compile
    (``too few arguments to function 'sendrecv0'``, resp. ``'gather0'``), ``diag2``,
    ``overlap2`` and ``full`` fail while building it (``IndexError: pop from empty
    list`` in ``mpi/routines.py: _make_haloupdate``).
``split``
    One level of a TimeFunction assigned on two complementary SubDomains (the shape
    of the adjoint's core/shell split). ``basic``, ``diag`` and ``diag2`` run it;
    ``overlap``, ``overlap2`` and ``full`` fail while building it (``AssertionError``
    in ``passes/iet/engine.py: create_call_graph``).

Each case prints ``ok`` and a checksum that must equal the serial run's.
"""

import sys

import numpy as np


def pinned_level():
    from devito import Eq, Grid, Operator, TimeFunction
    grid = Grid(shape=(16, 16), dtype=np.float64)
    x = grid.dimensions[0]
    time = grid.time_dim
    top = time.symbolic_max
    u = TimeFunction(name='u', grid=grid, space_order=2, save=6)
    v = TimeFunction(name='v', grid=grid, space_order=2)
    above = u.subs(time, top + 1)
    pinned = Eq(u.subs(time, top), u.subs(time, top) + above.shift(x, x.spacing)
                + above.shift(x, -x.spacing))
    op = Operator([pinned, Eq(v.forward, v + u)])
    u.data[:] = 1.0
    op.apply(time_M=3)
    return grid, u.data_gather(), 3


def split():
    from devito import Eq, Grid, Operator, SubDomain, TimeFunction

    class Box(SubDomain):
        def __init__(self, name, spec, grid):
            self.name, self.spec = name, spec
            super().__init__(grid=grid)

        def define(self, dimensions):
            return dict(zip(dimensions, self.spec, strict=True))

    grid = Grid(shape=(24, 20), dtype=np.float64)
    y = grid.dimensions[1]
    core = Box('core', [('middle', 1, 0), y], grid)
    left = Box('left', [('left', 1), y], grid)
    u = TimeFunction(name='u', grid=grid, space_order=2)
    op = Operator([Eq(u.forward, u + 0.1 * u.laplace, subdomain=core),
                   Eq(u.forward, u + 0.1 * u.laplace, subdomain=left)])
    u.data[:] = 1.0
    op.apply(time_M=3)
    return grid, u.data_gather(), None


CASES = {'pinned-level': pinned_level, 'split': split}


def main(argv=None):
    from devito import configuration
    configuration['log-level'] = 'ERROR'
    case = (argv or sys.argv[1:] or ['pinned-level'])[0]
    grid, data, level = CASES[case]()
    if grid.distributor.myrank == 0:
        data = np.asarray(data if level is None else data[level])
        print(case, configuration['mpi'], 'ok', float(data.sum()))


if __name__ == '__main__':
    main()
