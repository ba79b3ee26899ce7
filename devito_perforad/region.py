"""Restrict to valid regions: guards.

A gathered term ``D(q - o) * yb(q - o)`` stands for a contribution the primal made
from point ``p = q - o``. It is valid only if the primal actually ran at ``p``: inside
the domain (not in the halo), inside the SubDomain the primal equation ran on, and,
in time, at a step inside ``[time_m, time_M]``.

The mechanism is a *guard per term*: a term whose source point can fall outside the
primal's iteration space is wrapped in a C ternary ``valid ? term : 0``. Terms whose
source point always lies inside are left bare, so a stencil away from the boundary is
exactly the primal's stencil. The ternary never evaluates the term where it is
invalid, so a coefficient such as ``1/m`` is never computed from a zero halo
(``inf*0 = NaN`` cannot happen). Conditions on the time counter are loop invariant in
space and the C compiler hoists them.

Examples
--------
>>> from devito import Grid
>>> grid = Grid(shape=(8,))
>>> x = grid.dimensions[0]
>>> conditions = space_conditions(grid, None, (1,))
>>> conditions
[x + 1 <= x_M]
"""

import numpy as np
import sympy
from devito import Constant
from devito.types.basic import AbstractFunction

from .fields import several_ranks
from .ir.access import access_of
from .ir.names import current
from .ir.symbolic import Select, finite

__all__ = ['space_conditions', 'time_conditions', 'guarded', 'domain_bounds',
           'covers_domain', 'run_range', 'run_edge', 'needs_no_edge_guard']


def domain_bounds(grid, d):
    """The indices of the domain's first and last points along ``d`` in generated code.

    Serially these are the loop bounds ``x_m`` and ``x_M``. Under MPI (more than one
    rank) ``x_m`` and ``x_M`` bound the rank's own part of the domain, in local indices,
    so a guard such as ``x - 1 >= x_m`` would also cut every boundary between ranks.
    The domain's edges are then two integer ``Constant``s whose values are the local
    indices of the global first and last points: the same code on every rank,
    different values.
    """
    if not several_ranks(grid) or not grid.is_distributed(d):
        return d.symbolic_min, d.symbolic_max
    names = current()

    def edges():
        decomposition = grid.distributor.decomposition[d]
        start = decomposition.loc_abs_min - decomposition.glb_min  # global index of 0
        last = decomposition.glb_max - decomposition.glb_min
        n = names.number('edge')
        lo = Constant(name=f'{d.name}_first{n}', dtype=np.int32, value=-start)
        hi = Constant(name=f'{d.name}_last{n}', dtype=np.int32, value=last - start)
        names.memo(('edge role', lo), lambda: (d, 'left'))
        names.memo(('edge role', hi), lambda: (d, 'right'))
        return lo, hi

    return names.memo(('edges', grid, d), edges)


def subdomain_bounds(grid, subdomain):
    """Per space dimension, the ``(lo, hi)`` index bounds of a primal's region.

    ``None`` for a bound that coincides with the domain's own bound.
    """
    dims = grid.dimensions
    if subdomain is None or getattr(subdomain, 'name', None) == 'domain':
        return {d: (None, None) for d in dims}
    spec = subdomain.define(dims)
    bounds = {}
    for d in dims:
        v = spec.get(d, d)
        first, last = domain_bounds(grid, d)
        if v is d:
            bounds[d] = (None, None)
        elif v[0] == 'middle':
            bounds[d] = (first + v[1] if v[1] else None,
                         last - v[2] if v[2] else None)
        elif v[0] == 'left':
            bounds[d] = (None, first + v[1] - 1)
        elif v[0] == 'right':
            bounds[d] = (last - v[1] + 1, None)
        else:  # pragma: no cover - devito validates SubDomain.define itself
            raise ValueError(f"Unknown SubDomain spec {v} for {d}")
    return bounds


def covers_domain(grid, subdomain):
    """Whether the region is the whole domain (e.g. ``physdomain`` without a free
    surface)."""
    return all(b == (None, None) for b in subdomain_bounds(grid, subdomain).values())


def space_conditions(grid, subdomain, shift):
    """Conditions for the primal point ``q + shift`` to lie in the primal's region.

    Conditions that always hold for ``q`` inside the domain are dropped.
    """
    conditions = []
    bounds = subdomain_bounds(grid, subdomain)
    for d, k in zip(grid.dimensions, shift, strict=True):
        lo, hi = bounds[d]
        first, last = domain_bounds(grid, d)
        p = d + k
        if lo is not None:
            conditions.append(sympy.Ge(p, lo))
        elif k < 0:
            conditions.append(sympy.Ge(p, first))
        if hi is not None:
            conditions.append(sympy.Le(p, hi))
        elif k > 0:
            conditions.append(sympy.Le(p, last))
    return conditions


def run_range(time):
    """The first and last counter of the whole adjoint run.

    ``[time_m, time_M]``, unless the run is applied in segments (checkpointing: one
    counter at a time, from the top down): then the scalar arguments
    ``<time>_first`` and ``<time>_last`` give the whole run's range. Their defaults
    leave ``time_m`` and ``time_M`` in charge.
    """
    first, last = current().memo(('run', time.name), lambda: _run_constants(time.name))
    return sympy.Min(time.symbolic_min, first), sympy.Max(time.symbolic_max, last)


def _run_constants(name):
    big = 2 ** 30  # exact in float too, where Devito hoists a bound into a float
    return (Constant(name=f'{name}_first', dtype=np.int32, value=big),
            Constant(name=f'{name}_last', dtype=np.int32, value=-big))


def run_edge(time, guard):
    """Where an update that runs once, at an edge of the run, is pinned.

    Returns the counter it is pinned at (``time_M`` for ``'top'``, ``time_m`` for
    ``'bottom'``) and the condition that this application holds that edge of the whole
    run (always true unless the run is applied in segments).
    """
    first, last = run_range(time)
    if guard == 'top':
        return time.symbolic_max, sympy.Ge(time.symbolic_max, last)
    return time.symbolic_min, sympy.Le(time.symbolic_min, first)


def time_conditions(time, step, guard=None):
    """Conditions for the primal step ``time + step`` to lie in the run's range
    (see :func:`run_range`).

    Parameters
    ----------
    time : devito.TimeDimension
        The loop counter.
    step : int
        Primal step relative to the counter.
    guard : {None, 'top', 'bottom'}
        ``'top'``: the statement runs only at ``time == time_M``; ``'bottom'``: only
        at ``time == time_m``; ``None``: at every counter in ``[time_m, time_M]``.

    Returns
    -------
    list of sympy.Relational, or None if the step is never valid.
    """
    conditions = []
    first, last = run_range(time)
    if step > 0:
        if guard == 'top':
            return None
        conditions.append(sympy.Le(time + step, last))
    if step < 0:
        if guard == 'bottom':
            return None
        conditions.append(sympy.Ge(time + step, first))
    return conditions


def guarded(terms):
    """Sum ``(conditions, expr)`` pairs, wrapping each group in one ternary.

    Terms sharing the same conditions share one ``Select``.
    """
    groups = {}
    for conditions, expr in terms:
        key = tuple(sorted(set(conditions), key=str))
        groups[key] = groups.get(key, sympy.S.Zero) + expr
    total = sympy.S.Zero
    for key, expr in groups.items():
        if key:
            total += Select(sympy.And(*key), expr, sympy.S.Zero)
        else:
            total += expr
    return total


def vanishes_outside(expr, seed):
    """Whether the gathered term ``expr`` is exactly zero wherever it is read from a
    point outside the domain, so that it needs no domain-edge guard.

    A term from the primal point ``p`` is ``seed(p) * C(p)``: the adjoint of the
    field the primal wrote, times the partial derivative. Outside the domain ``p``
    lies in the halo, where an adjoint field holds zero: the adjoint updates write the
    domain only. The term is then ``0 * C(p)``, which is zero if ``C`` is
    :func:`finite` there (the primal's halos hold finite values). Padding by the zero
    halo, instead of a guard, lets the update run as one loop nest over the whole
    domain, with no edge strips.

    Parameters
    ----------
    expr : sympy.Expr
        The term, before it is shifted to the gather point.
    seed : devito.types.AbstractFunction
        The adjoint field the term's seed is read from (at the term's own point).

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> grid = Grid(shape=(4,))
    >>> u = TimeFunction(name='u', grid=grid)
    >>> ub = TimeFunction(name='ub', grid=grid)
    >>> vanishes_outside(sympy.Max(u, 0) * ub, ub), vanishes_outside(ub / u, ub)
    (True, False)
    """
    factors = sympy.Mul.make_args(expr)
    seeds = [f for f in factors if isinstance(f, AbstractFunction) and f.function is seed
             and not any(access_of(f).space)]
    return len(seeds) == 1 and all(finite(f) for f in factors if f is not seeds[0])


def needs_no_edge_guard(expr, statement, adjoints):
    """Whether the term ``expr`` of ``statement`` needs no domain-edge guard: the
    statement runs on the whole domain and the term vanishes outside it
    (:func:`vanishes_outside`, with the seed of the statement's adjoint)."""
    return (covers_domain(statement.write.field.grid, statement.subdomain)
            and vanishes_outside(expr, adjoints[statement.write.field]))
