"""Pass: guard an update's gathered terms, factoring shifted copies of one product.

A stencil ``y = K * sum_o w_o g(p + o)`` reverses into ``sum_o w_o (K yb)(q - o)``:
the same product ``K * yb`` read at every offset. Computing it once per step into a
temporary ``z`` and gathering ``sum_o w_o z(q - o)`` costs the primal's stencil plus
one pointwise pass, instead of a product per offset. ``z`` is computed only where
the primal ran (its halo and the rest stay zero), so its reads need no guards, and
the whole update is one loop nest.
"""

from collections import defaultdict

import sympy
from devito.symbolics import retrieve_functions
from devito.types.basic import AbstractFunction

from ..ir.access import at_offsets
from ..ir.symbolic import Select, shift
from ..region import covers_domain, needs_no_edge_guard, space_conditions
from .composition import composed_gathers, temporary

__all__ = ['factor']


def factor(contributions, target, edge, grid, adjoints):
    """The terms of one adjoint update, and the temporaries they read.

    Parameters
    ----------
    contributions : list of Contribution
        The gathered contributions to the update (``via`` is ``None``).
    target : devito.types.AbstractFunction
        The primal field whose adjoint the update writes.
    edge : {None, 'top', 'bottom'}
        Where the update runs; only an update at every counter gets temporaries.
    grid : devito.Grid
    adjoints : dict

    Returns
    -------
    (list of devito.Eq, list of (list, sympy.Expr))
        The temporaries' equations, made before the update, and its terms as
        ``(conditions, expr)`` pairs.
    """
    temps, terms = [], []
    groups = defaultdict(list)
    scaled = defaultdict(list)  # step factor -> its terms, multiplied once
    composed = []
    for c in contributions:
        if c.chain is not None and (c.finite_at_every_step or not c.conditions):
            composed.append(c)
            continue
        if not (c.finite_at_every_step and edge is None):
            groups[id(c)].append((*_coefficient(c.coefficient, grid), c))
            continue
        for part in sympy.Add.make_args(sympy.expand(c.coefficient)):
            coeff, rest = _coefficient(part, grid)
            groups[(id(c.statement), c.step, rest)].append((coeff, rest, c))
    stencils = defaultdict(list)  # groups applying one stencil share one temporary
    for group in groups.values():
        first = group[0][2]
        conditions, factor = list(first.conditions), sympy.S.One
        if conditions and first.finite_at_every_step:
            # A term from an out-of-range step only multiplies finite values
            # (time-invariant coefficients, adjoint seeds): a per-step 0/1 factor,
            # hoisted out of the space loops, cancels it exactly.
            factor = Select(sympy.And(*conditions), sympy.S.One, sympy.S.Zero)
            conditions = []
        if len(group) > 1:
            stencils[_stencil(group, first, conditions, factor)].append(group)
            continue
        _in_place(group, factor, conditions, grid, adjoints, scaled)
    for (step, subdomain, conditions, factor, stencil), parts in stencils.items():
        first = parts[0][0][2]
        if len(parts) == 1 and _bare_seed(parts[0][0][1], first.statement):
            # A bare seed needs no temporary.
            _in_place(parts[0], factor, list(conditions), grid, adjoints, scaled)
            continue
        reach = max(abs(k) for shift_, _ in stencil for k in shift_)
        value = factor * sympy.Add(*[_lead(g)[0] * shift(g[0][1], time=step)
                                     for g in parts])
        z, k, eq = temporary(value, target, grid, max(reach, 1), subdomain, edge)
        # z is computed only where the primal ran and its halo stays zero, so reading
        # it anywhere needs no guard: outside the primal's region it contributes 0.
        temps.append(eq)
        terms += [(list(conditions), k * w * at_offsets(z, space=offsets))
                  for offsets, w in sorted(stencil, key=str)]
    for factor, group in scaled.items():
        terms += _factored(factor, group)
    if composed:
        eqs, gathers = composed_gathers(composed, target, grid, adjoints, edge)
        temps += eqs
        terms += gathers
    return temps, terms


def _in_place(group, factor, conditions, grid, adjoints, scaled):
    """The terms of a group read in place (no temporary), under their step factor.
    Where the primal ran on the whole domain, a term that vanishes with its seed needs
    no guard: the adjoint's halo is zero (region.vanishes_outside)."""
    for coeff, rest, c in group:
        where = [] if needs_no_edge_guard(rest, c.statement, adjoints) else \
            space_conditions(grid, c.statement.subdomain, c.shift)
        scaled[factor].append((conditions + where,
                               coeff * shift(rest, time=c.step,
                                             space=_by_dim(c.shift, grid))))


def _lead(group):
    """The constant of a group's term at its first offset, and that offset."""
    coeff, _, c = min(group, key=lambda e: e[2].shift)
    return coeff, c.shift


def _stencil(group, first, conditions, factor):
    """What a group of shifted copies of one product applies, whatever the product:
    its step, region and guards, and its weights relative to its first one. Groups
    with equal stencils gather from one temporary, the sum of their products."""
    lead, _ = _lead(group)
    weights = frozenset((c.shift, coeff / lead) for coeff, _, c in group)
    return (first.step, first.statement.subdomain, tuple(conditions), factor, weights)


def _factored(factor, terms):
    """``factor * term`` for each term, the unconditional ones summed under one factor."""
    bare = [expr for conditions, expr in terms if not conditions]
    out = [(conditions, factor * expr) for conditions, expr in terms if conditions]
    return out + ([([], factor * sympy.Add(*bare))] if bare else [])


def _coefficient(expr, grid):
    """``(c, rest)`` with ``expr == c * rest`` and ``c`` a constant factor, free of
    fields and of the grid's dimensions (so that shifting ``rest`` shifts ``expr``)."""
    coeff, rest = expr.as_independent(*retrieve_functions(expr), as_Add=False)
    dims = set(grid.dimensions) | {grid.time_dim, grid.stepping_dim}
    if coeff.free_symbols & dims:
        return sympy.S.One, expr
    return coeff, rest


def _bare_seed(expr, stmt):
    """Whether ``expr`` is just the statement's seed, on a whole-domain statement."""
    return (covers_domain(stmt.write.field.grid, stmt.subdomain)
            and isinstance(expr, AbstractFunction)
            and retrieve_functions(expr) == [expr])


def _by_dim(offsets, grid):
    return dict(zip(grid.dimensions, offsets, strict=True))
