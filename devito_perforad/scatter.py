"""Scatter form: textbook reverse mode, for comparison with the gather form.

A primal statement ``y[p] = R(..., g[p + o], ...)`` is reversed by scattering from the
primal point ``p`` into every point it read:

    gb[p + o] += dR/dg[p + o] * yb[p]

This is what conventional automatic differentiation produces. Many points ``p`` write
the same ``gb[p + o]``: the increments race unless they are made atomic, split into one
sweep per offset, or run sequentially, so the code no longer runs like the primal. It
is offered as ``mode='scatter'`` so that the comparison with the gather form
(``mode='gather'``, the default) is reproducible; both compute the same adjoint.

In time loops the scatter form keeps the gather form's schedule of time levels (each
adjoint level is completed at one counter, see :mod:`devito_perforad.assemble`) and
only the spatial access pattern changes: the level is first set to its seed, then
every contribution is scattered into it. Scattering in time as well, one primal step
at a time, makes two counters increment the same level; Devito 4.8's scheduler then
sees both flow and anti dependences along time and splits the backward loop into
several loops, which computes something else.

Examples
--------
>>> from devito import Grid, Function, Eq
>>> from devito_perforad import adjoint, adjoint_function
>>> grid = Grid(shape=(8,))
>>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
>>> ub, wb = adjoint_function(u), adjoint_function(w)
>>> for eq in adjoint([Eq(w, u.dx)], {u: ub, w: wb}, mode='scatter'):
...     print(eq)
Inc(u_b(x), -w_b(x)/h_x)
Inc(u_b(x + h_x), w_b(x)/h_x)
"""

import sympy
from devito import Eq, Inc

from .access import at_offsets
from .region import Select
from .reverse import shift

__all__ = ["scatter", "scatter_level"]


def scatter(stmt, access, contribution, gb, level=None):
    """``gb[p + o] += contribution``: the increment of one read, from the primal point.

    Parameters
    ----------
    stmt : Statement
        The primal statement; the increment runs where it ran.
    access : Access
        The read ``g[t + s, p + o]``.
    contribution : sympy.Expr
        ``dR/dg[p + o] * yb[p]`` at the primal point.
    gb : devito.Function
        The adjoint of ``g``.
    level : int, optional
        The adjoint level written, relative to the counter; default ``access.time``.
    """
    target = at_offsets(gb, access.time if level is None else level, access.space)
    return Inc(target, contribution, subdomain=stmt.subdomain)


def scatter_level(own, keep, raw):
    """One adjoint level in scatter form: set it to its seed, then scatter into it.

    Parameters
    ----------
    own : sympy.Expr
        The adjoint level written, ``gb[t + r]``.
    keep : sympy.Expr
        What it holds before the contributions (its seed, or zero).
    raw : list of (Statement, Access, Term, sympy.Expr, list, bool)
        The gathered form's contributions: statement, read, reversed term, the
        contribution ``D * yb`` at the primal point, the conditions on the counter
        under which the primal step ran, and whether the contribution is finite at
        every step (then a 0/1 factor, hoisted out of the space loops, applies them).
    """
    gb, level = own.function, _level(own)
    eqs = [] if keep is own else [Eq(own, keep)]
    raw = sorted(raw, key=lambda entry: any(entry[1].space))  # own point first
    for stmt, access, term, contribution, conditions, finite in raw:
        value = shift(contribution, time=term.step or 0)
        if conditions and finite:
            value *= Select(sympy.And(*conditions), sympy.S.One, sympy.S.Zero)
        elif conditions:
            value = Select(sympy.And(*conditions), value, sympy.S.Zero)
        increment = scatter(stmt, access, value, gb, level)
        if not eqs and not any(access.space):
            # The level keeps its seed in place (a saved adjoint) and this is the
            # first contribution, at the primal point itself: an assignment. With
            # increments only, Devito 4.8.23 sees no dependence along time and runs
            # the time loop as a parallel array reduction.
            increment = Eq(increment.lhs, increment.lhs + value,
                           subdomain=stmt.subdomain)
        eqs.append(increment)
    return eqs


def _level(app):
    from .access import access_of
    return access_of(app).time
