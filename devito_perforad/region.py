"""Stage 4: restrict to valid regions.

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

from contextlib import contextmanager

import numpy as np
import sympy
from devito import ConditionalDimension, Constant, SubDomain
from devito.mpi import distributed
from devito.symbolics import InlineIf, retrieve_functions
from devito.types.basic import AbstractFunction

from .access import access_of, at_offsets
from .fields import is_saved, several_ranks
from .ir.names import current

__all__ = ['Select', 'space_conditions', 'time_conditions', 'guarded', 'subdomain_bounds',
           'domain_bounds', 'Box', 'integer_bounds', 'domain_edge', 'split',
           'unguarded', 'finite', 'vanishes_outside',
           'top_written_levels', 'seed_where', 'seed_mask', 'seed_counters',
           'on_counters', 'covers_domain', 'run_range', 'run_edge']


class Select(InlineIf):
    """C ternary ``cond ? true_expr : false_expr`` that Devito's passes can rebuild.

    Examples
    --------
    >>> import sympy
    >>> a = sympy.Symbol('a')
    >>> Select(sympy.Gt(a, 0), a, sympy.S.Zero)
    (a > 0) ? a : 0
    """

    def __new__(cls, cond, true_expr, false_expr, **kwargs):
        obj = sympy.Expr.__new__(cls, cond, true_expr, false_expr)
        obj._cond, obj._true_expr, obj._false_expr = cond, true_expr, false_expr
        return obj

    def _sympystr(self, printer):
        return (f"(({printer._print(self.cond)}) ? {printer._print(self.true_expr)} : "
                f"{printer._print(self.false_expr)})")

    def _eval_derivative(self, s):
        return Select(self.cond, sympy.diff(self.true_expr, s),
                      sympy.diff(self.false_expr, s))


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


# -- core and shell ---------------------------------------------------------------------

@contextmanager
def integer_bounds():
    """Within the block, Devito hands a SubDomain's bounds to its ``SubDistributor``
    as Python integers.

    Devito 4.8.23 builds a SubDomain's decomposition by comparing every global index
    of each dimension with the SubDomain's bounds, which are sympy numbers: an
    object-array comparison, two sympy calls per grid index (18 s for the three boxes
    of a 1e6-point 1D grid). The bounds are integers, and as Python integers the
    comparison is numpy's. Only the SubDomains built inside the block are affected.
    """
    original = distributed._interval_bounds

    def bounds(interval):
        return tuple(int(b) if isinstance(b, sympy.Integer) else b
                     for b in original(interval))

    distributed._interval_bounds = bounds
    try:
        yield
    finally:
        distributed._interval_bounds = original


class Box(SubDomain):
    """A box of the grid: one ``define`` spec per dimension (``d``, ``('left', n)``,
    ``('right', n)`` or ``('middle', l, r)``)."""

    def __init__(self, name, spec, grid):
        self.name = name
        self.spec = tuple(spec)
        with integer_bounds():
            super().__init__(grid=grid)

    def define(self, dimensions):
        return dict(zip(dimensions, self.spec, strict=True))


def domain_edge(condition):
    """``(dim, side, k)`` if ``condition`` only guards a domain edge, else ``None``.

    ``x - 2 >= x_m`` is ``(x, 'left', 2)``: the term reaches two points past the left
    edge of the domain. ``x + 1 <= x_M`` is ``(x, 'right', 1)``.
    """
    roles = current()
    for d in condition.free_symbols:
        if not getattr(d, 'is_Space', False):
            continue
        k = condition.lhs - d
        if not k.is_Integer:
            return None
        rhs = condition.rhs
        if isinstance(condition, sympy.GreaterThan) and (
                rhs == d.symbolic_min or roles.get(('edge role', rhs)) == (d, 'left')):
            return (d, 'left', -int(k))
        if isinstance(condition, sympy.LessThan) and (
                rhs == d.symbolic_max or roles.get(('edge role', rhs)) == (d, 'right')):
            return (d, 'right', int(k))
    return None


def split(grid, terms):
    """Split the domain so that the bulk runs without space guards.

    Returns ``None`` when the guards cannot be dropped anywhere (a guard on a SubDomain
    bound, or a domain too small), else ``(core, shells)``: the core is the box where
    every domain-edge guard of ``terms`` holds, the shells are disjoint slabs covering
    the rest (``2 * ndim`` at most, so the loop-nest count stays ``2 * ndim + 1``).
    """
    reach = {d: [0, 0] for d in grid.dimensions}
    for conditions, _ in terms:
        for c in conditions:
            if any(getattr(s, 'is_Time', False) for s in c.free_symbols):
                continue
            edge = domain_edge(c)
            if edge is None:
                return None
            d, side, k = edge
            reach[d][side == 'right'] = max(reach[d][side == 'right'], k)
    if not any(any(r) for r in reach.values()):
        return None
    if any(lo + hi >= n for (lo, hi), n in zip(reach.values(), grid.shape, strict=True)):
        return None
    names = current()

    def boxes():
        dims = grid.dimensions
        n = names.number('box')
        core = Box(f'core{n}', [('middle', *reach[d]) for d in dims], grid)
        shells = []
        for i, d in enumerate(dims):
            inner = [('middle', *reach[e]) for e in dims[:i]]
            outer = list(dims[i + 1:])
            for side, k in zip(('left', 'right'), reach[d], strict=True):
                if k:
                    shells.append(Box(f'shell{n}{d.name}{side}',
                                      inner + [(side, k)] + outer, grid))
        return core, shells

    return names.memo(('boxes', grid, tuple(tuple(r) for r in reach.values())), boxes)


def unguarded(terms):
    """``guarded(terms)`` with the domain-edge guards dropped (for the core)."""
    return guarded([([c for c in conditions if domain_edge(c) is None], expr)
                    for conditions, expr in terms])


_FINITE_HEADS = (sympy.Add, sympy.Mul, sympy.Max, sympy.Min, sympy.Abs, sympy.sign,
                 sympy.Heaviside, sympy.sin, sympy.cos, sympy.Piecewise,
                 sympy.Tuple, sympy.logic.boolalg.Boolean, Select)


def finite(expr):
    """Whether ``expr`` is finite wherever the fields it reads hold finite values.

    The operations allowed on field values are those that cannot overflow or divide
    by zero: sums, products, non-negative integer powers, ``Max``, ``Min``, ``Abs``,
    steps, ``sin``, ``cos`` and selections. A subexpression that reads no field is
    made of the user's scalars (``dt``, a ``Constant``) and is taken as finite. So
    ``1/m`` is not finite (a zero halo gives ``inf``), ``m**2 * u`` is.

    Examples
    --------
    >>> from devito import Function, Grid
    >>> m = Function(name='m', grid=Grid(shape=(4,)))
    >>> finite(sympy.Max(m, 0) * m**2 + 3), finite(1 / m)
    (True, False)
    """
    if not retrieve_functions(expr) or isinstance(expr, AbstractFunction):
        return True
    if isinstance(expr, sympy.Pow):
        exponent = expr.exp
        return exponent.is_Integer and exponent >= 0 and finite(expr.base)
    if isinstance(expr, _FINITE_HEADS) or getattr(expr, 'is_Relational', False):
        return all(finite(a) for a in expr.args)
    return False


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


def top_written_levels(program):
    """Per field, the highest level an Eq assigns, and the region it assigns it on."""
    top = {}
    for s in program:
        if s.write.time is not None and not s.increment:
            if s.write.field not in top or s.write.time > top[s.write.field][0]:
                top[s.write.field] = (s.write.time, s.subdomain)
    return top


def seed_where(field, gb, level, guard, time, top_levels):
    """Where the slot of the adjoint ``gb`` at ``level`` (relative to ``time``) still
    holds a seed of that level: ``sympy.true``, ``sympy.false`` or a condition.

    In a buffered field the slot of level ``L`` also holds ``L + nb``, ``L + 2nb``...
    If the primal wrote a later level into that slot, what sits there now is the
    adjoint of that later level, not a seed of ``L``: it must not be added. Outside
    the SubDomain the primal assigned on, the slot was never overwritten: every level
    aliasing it is the same value, so the seed is always kept there.
    """
    if level is None or is_saved(gb) or field not in top_levels:
        return sympy.true
    top, subdomain = top_levels[field]
    nb = gb.time_order + 1
    # seed valid iff  time + level + nb > time_M + top
    first = top - nb - level + 1      # valid iff time >= time_M + first
    if guard == 'top':
        valid = sympy.true if first <= 0 else sympy.false
    else:
        # time >= Max(time_M, time_last) + first, without Max: Devito 4.8.23 defines
        # its MAX macro only for expressions, not for the condition of an ``if``
        valid = sympy.And(*[sympy.Ge(time, b + first) for b in run_range(time)[1].args])
    inside = space_conditions(field.grid, subdomain, (0,) * field.grid.dim)
    if inside:
        valid = sympy.Or(valid, sympy.Not(sympy.And(*inside)))
    return valid


def seed_mask(field, gb, level, guard, time, top_levels):
    """The adjoint ``gb`` at ``level`` (relative to ``time``), where it is still a seed
    (see :func:`seed_where`), else 0."""
    own = at_offsets(gb, time=level)
    valid = seed_where(field, gb, level, guard, time, top_levels)
    if valid is sympy.true:
        return own
    if valid is sympy.false:
        return sympy.S.Zero
    # ``own`` is a finite adjoint value: a 0/1 factor is exact and keeps loops simple.
    # (A ternary on the counter alone, ``valid ? own : 0``, makes the C compiler
    # unswitch every loop nest on it: the 1D Burgers adjoint then took 4.6 s to compile
    # instead of 1.2 s.)
    return Select(valid, sympy.S.One, sympy.S.Zero) * own


def seed_counters(field, gb, level, time, top_levels):
    """The counters of the backward loop at which the slot the update writes still
    holds a seed, as a condition on the counter alone; ``None`` where the seed is kept
    at every counter, or only at some points (the primal ran on a SubDomain).

    A buffered adjoint's slot holds a seed only for the first counters of the run
    (``time >= time_M`` for the wave equation). The loop's update then need not read
    the slot it overwrites: the driver sets the seed aside and adds it back at those
    counters only (:func:`on_counters`; see ``assemble._Step``). Adding ``0/1 * seed``
    instead would read the slot at every counter: one more stream of memory than the
    primal's loop, 10% of the 2D acoustic adjoint's time.

    Examples
    --------
    >>> from devito import Eq, Grid, TimeFunction
    >>> u = TimeFunction(name='u', grid=Grid(shape=(8,)), time_order=2)
    >>> ub = TimeFunction(name='ub', grid=u.grid, time_order=2)
    >>> time = u.grid.time_dim
    >>> seed_counters(u, ub, -1, time, {u: (1, None)})
    (time >= time_last) & (time >= time_M)
    """
    valid = seed_where(field, gb, level, None, time, top_levels)
    if valid in (sympy.true, sympy.false) or any(
            getattr(d, 'is_Space', False) for d in valid.free_symbols):
        return None
    return valid


def on_counters(eqs, condition):
    """``eqs`` run only at the counters where ``condition`` (on the counter alone)
    holds: Devito wraps their loop nests in one ``if`` inside the time loop."""
    time = next(d for d in condition.free_symbols if getattr(d, 'is_Time', False))
    where = ConditionalDimension(current().name(f'{time.name}_c', 'counter'), parent=time,
                                 condition=condition)
    return [eq.func(eq.lhs, eq.rhs, subdomain=eq.subdomain,
                    implicit_dims=(*eq.implicit_dims, where)) for eq in eqs]
