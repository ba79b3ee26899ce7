"""Sparse operators transpose in pairs (the rule for sparse accesses).

* ``S.inject(field=f, expr=E)``: ``Sb += interpolate(dE/dS * fb)`` and, for a parameter
  ``h`` in ``E``, ``hb += S.inject(dE/dh * fb)``;
* ``S.interpolate(expr=E)``: ``gb += Sb.inject(dE/dg * Sb)`` for each field ``g``
  in ``E``.

Injections scatter to the few grid points around each sparse point and use atomics
there; the dense adjoint stencils stay gathers. The operations are returned as
``(build, target, expr)`` so the assembler can place, and pin, them.
"""

import numpy as np
import sympy
from devito import Inc, SparseFunction, TimeFunction
from devito.mpi import MPI
from devito.types.basic import AbstractFunction

from .access import at_offsets
from .errors import located
from .fields import several_ranks
from .region import Select, domain_bounds, run_edge, run_range
from .reverse import pin, shift

__all__ = ['transpose_sparse', 'receivers', 'inject_inside', 'check_injections',
           'pin_sparse', 'edge_only', 'untimed']


def transpose_sparse(node, stmt, access, partial, seed, adjoints):
    """Transpose one read of a sparse operation: the pairs swap.

    * ``S.inject(field=f, expr=E)``: ``Sb += interpolate(dE/dS * fb)`` and, for a
      parameter ``h`` in ``E``, ``hb += S.inject(dE/dh * fb)``;
    * ``S.interpolate(expr=E)``: ``gb += Sb.inject(dE/dg * Sb)`` for each field ``g`` in
      ``E``, at the level the node writes.

    Injections scatter to the few grid points around each sparse point and use atomics
    there; the dense adjoint stencils stay gathers.
    """
    if any(access.space) and not isinstance(access.field, SparseFunction):
        raise located(stmt.eq, access.field, "a sparse operation reads this field at a "
                                             "shifted point; only unshifted reads of "
                                             "dense fields are supported.")
    if stmt.kind == 'inject':
        if isinstance(access.field, TimeFunction) or (access.time or 0) != 0:
            raise located(stmt.eq, access.field,
                          "the injected expression may depend on time-invariant fields "
                          "and on the sparse function at the current time only.")
        expr = partial * seed
        if isinstance(access.field, SparseFunction):
            sb = adjoints[access.field]
            node.sparse.append((lambda target, e, sb=sb: list(
                sb.interpolate(expr=e, increment=True).evaluate), None, expr))
        else:
            node.sparse.append((lambda target, e, s=stmt.sparse: inject_inside(s, target,
                                                                               e),
                                at_offsets(adjoints[access.field]), expr))
        node.reads.add((stmt.write.field, stmt.write.time))
        return
    # interpolate: the seed is the adjoint of the sparse function itself; the step is
    # the counter (see receivers for time-dependent fields)
    sb = adjoints[stmt.write.field]
    node.sparse.append((lambda target, e, sb=sb: inject_inside(sb, target, e),
                        at_offsets(adjoints[access.field]), partial * seed))


def receivers(program, derivs, adjoints, w, nodes, time, scales):
    """Adjoints of ``S.interpolate(expr)`` reading TimeFunctions: ``Sb.inject``.

    Step ``t - c`` read ``g[t - c + s]``; its adjoint injects into the level the loop
    gathers at counter ``t``, ``gb[t + w]``, right after that level is gathered
    (``c = s - w``). A scaled adjoint (``scales``, see assemble) receives ``K`` times
    the injected value. The levels above ``t + w`` that only the last steps read get
    their injections once, before the loop, pinned at ``time_M``.
    """
    main = {n.field: n for n in nodes if n.guard is None and n.level is not None}
    top = {(n.field, n.level): n for n in nodes if n.guard == 'top'}
    orphans = []
    for stmt, ds in zip(program, derivs, strict=True):
        if stmt.kind != 'interpolate':
            continue
        sb = adjoints[stmt.write.field]
        seed = at_offsets(sb, time=stmt.write.time)
        for a, d in ds:
            if not isinstance(a.field, TimeFunction):
                continue
            g = a.field
            if any(a.space) or a.time < w[g]:
                raise located(stmt.eq, g,
                              "an interpolation reads this field at a shifted point or "
                              "below the lowest level the stencils read; this is not "
                              "supported.")

            def build(target, e, sb=sb):
                return inject_inside(sb, target, e)

            for level in range(w[g], a.time + 1):
                step = level - a.time
                expr = shift(d * seed, time=step)
                if step:
                    expr = Select(sympy.Ge(time + step, run_range(time)[0]), expr,
                                  sympy.S.Zero)
                if g in scales:
                    expr = scales[g] * expr
                op = (build, at_offsets(adjoints[g], time=level), expr)
                if level == w[g]:
                    main[g].sparse.append(op)
                elif (g, level) in top:
                    top[(g, level)].sparse.append(op)
                else:
                    orphans.append(op)
    return orphans


def inject_inside(sparse, target, expr):
    """``sparse.inject(field=target, expr=expr)`` as equations that write the domain
    only.

    Near the domain's edge an interpolation also reads the halo (a sinc kernel reaches
    ``r`` points past the edge). The halo is not the primal's state: nothing computes
    a value there, so nothing in it has an adjoint, and the transposed injection drops
    what would land there. This keeps the adjoint fields' halos zero, which the
    gathered stencils rely on (:func:`~devito_perforad.region.vanishes_outside`):
    they read the halo instead of guarding terms from outside the domain. Under MPI
    the bounds are those of the global domain, so what lands in the halo between two
    ranks is kept.

    Returns
    -------
    list of devito.Eq

    Examples
    --------
    >>> from devito import Grid, SparseTimeFunction, TimeFunction
    >>> grid = Grid(shape=(8,))
    >>> u = TimeFunction(name='u', grid=grid)
    >>> rec = SparseTimeFunction(name='rec', grid=grid, npoint=1, nt=4)
    >>> increment = inject_inside(rec, u.forward, rec)[-1]
    >>> increment.lhs, increment.rhs.cond
    (u(t + dt, rp_recx + posx), (rp_recx + posx >= x_m) & (rp_recx + posx <= x_M))
    """
    eqs = []
    for eq in sparse.inject(field=target, expr=expr).evaluate:
        f = getattr(eq.lhs, 'function', None)
        if isinstance(eq, Inc) and not isinstance(f, SparseFunction):
            inside = []
            for d, i in zip(f.dimensions, eq.lhs.indices, strict=True):
                if d.is_Space:
                    first, last = domain_bounds(f.grid, d.root)
                    inside += [sympy.Ge(i, first), sympy.Le(i, last)]
            eq = eq.func(eq.lhs, Select(sympy.And(*inside), eq.rhs, sympy.S.Zero),
                         implicit_dims=eq.implicit_dims)
        eqs.append(eq)
    return eqs


def check_injections(program):
    """Refuse a primal injection whose points reach past the domain's edge.

    There the injection writes the field's halo, which the primal's stencils read at
    later steps and never overwrite: the halo carries state from step to step, and
    the adjoint, whose updates cover the domain, does not follow it (a sinc source 0.3
    points from the edge of a 1D wave gave a dot test off by 2e-2). A point reaches
    past the edge when its interpolation support (``r`` points on either side) does:
    for linear interpolation, only a point outside the domain. The check reads the
    coordinates the sparse function holds now; points moved after the adjoint is
    built are not checked again.
    """
    for stmt in program:
        if stmt.kind == 'inject' and _reaches_halo(stmt.sparse):
            r = stmt.sparse.r
            raise located(stmt.eq, stmt.write.field,
                          f"`{stmt.sparse.name}` has points whose interpolation (radius "
                          f"{r}) reaches past the edge of the domain, so the injection "
                          "writes this field's halo, which the primal then carries from "
                          "step to step and the adjoint does not follow. Keep every "
                          f"point at least {r - 1} grid spacings inside the domain.")


def _reaches_halo(sparse):
    grid = sparse.grid
    coordinates = np.asarray(sparse.coordinates.data, dtype=np.float64)
    position = ((coordinates.reshape(-1, grid.dim) - np.asarray(grid.origin, float))
                / np.asarray(grid.spacing, float))
    last = np.asarray(grid.shape) - 1
    if sparse.r == 1:
        # linear: the second point has weight 0 at a grid point (tolerance for the
        # rounding of float32 coordinates)
        tol = 1e-4
        out = (position < -tol) | (position > last + tol)
    else:
        p = np.floor(position)
        out = (p - sparse.r + 1 < 0) | (p + sparse.r > last)
    reaches = bool(out.any())
    if several_ranks(grid):
        reaches = bool(grid.distributor.comm.allreduce(reaches, op=MPI.LOR))
    return reaches


def pin_sparse(ops, time, guard):
    """Sparse operations run once, at the ``guard`` edge of the run (see
    :func:`devito_perforad.region.run_edge`)."""
    value, holds = run_edge(time, guard)
    eqs = [eq for build, target, expr in ops
           for eq in untimed(build(pin(target, time, value), pin(expr, time, value)),
                              time, value)]
    return [edge_only(eq, holds) for eq in eqs]


def edge_only(eq, holds):
    """``eq``, with no effect on fields unless ``holds``."""
    if not isinstance(getattr(eq.lhs, 'function', None), AbstractFunction) \
            or holds is sympy.true:
        return eq  # scalar temporaries of sparse operations
    keep = sympy.S.Zero if isinstance(eq, Inc) else eq.lhs
    return eq.func(eq.lhs, Select(holds, eq.rhs, keep), subdomain=eq.subdomain,
                   implicit_dims=eq.implicit_dims)


def untimed(operation, time, value):
    """A sparse operation's equations pinned at ``time == value``, without a time loop
    of their own."""
    eqs = []
    for eq in operation:
        dims = tuple(d for d in eq.implicit_dims if d is not time)
        eqs.append(eq.func(eq.lhs, eq.rhs, implicit_dims=dims))
    return eqs
