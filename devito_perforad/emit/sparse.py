"""Emit sparse operations: the injections and interpolations of the sparse rules.

Injections scatter to the few grid points around each sparse point and use atomics
there; the dense adjoint stencils stay gathers.
"""

import sympy
from devito import Inc, SparseFunction

from ..devito_compat import (
    injection_positioned,
    interpolation_positioned,
    staggering_shifts,
)
from ..ir.access import at_offsets
from ..ir.symbolic import Select
from ..region import domain_bounds

__all__ = ['operation']


def operation(contribution, adjoints):
    """A sparse contribution as ``(build, target, expr)``: ``build(target, expr)``
    returns its equations, so that the driver can pin ``target`` and ``expr`` at an
    edge of the run first (:func:`devito_perforad.schedule.pin_sparse`).

    Each runs at the positions of the primal operation it reverses: an injection's
    are shifted by its field's staggering, an interpolation's are the nodes
    (:func:`~devito_perforad.devito_compat.interpolation_positioned`). An injection
    writes the adjoint at the offset the interpolation read its field."""
    c = contribution
    stmt = c.statement
    shifts = staggering_shifts(stmt.write.field) if stmt.kind == 'inject' else ()
    if c.via == 'interpolate':
        return _interpolation(adjoints[c.sparse], shifts), None, c.coefficient
    space = c.access.space if stmt.kind == 'interpolate' else None
    return _injection(c.sparse, shifts), \
        at_offsets(adjoints[c.target], time=c.level, space=space), c.coefficient


def _interpolation(sb, shifts):
    def build(target, expr):
        return interpolation_positioned(sb, expr, shifts)
    return build


def _injection(sparse, shifts):
    def build(target, expr):
        return inject_inside(sparse, target, expr, shifts)
    return build


def inject_inside(sparse, target, expr, shifts=()):
    """``sparse.inject(field=target, expr=expr)`` as equations that write the domain
    only, at the positions of a field staggered by ``shifts``
    (:func:`~devito_perforad.devito_compat.injection_positioned`).

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
    for eq in injection_positioned(sparse, target, expr, shifts):
        f = getattr(eq.lhs, 'function', None)
        if isinstance(eq, Inc) and not isinstance(f, SparseFunction):
            inside = []
            for d, i, ref in zip(f.dimensions, eq.lhs.indices, f.indices_ref,
                                 strict=True):
                if d.is_Space:
                    # the index in grid steps: a staggered field's own point is i = 0
                    i = sympy.expand(i - (ref - d)).subs(d.spacing, 1)
                    first, last = domain_bounds(f.grid, d.root)
                    inside += [sympy.Ge(i, first), sympy.Le(i, last)]
            eq = eq.func(eq.lhs, Select(sympy.And(*inside), eq.rhs, sympy.S.Zero),
                         implicit_dims=eq.implicit_dims)
        eqs.append(eq)
    return eqs
