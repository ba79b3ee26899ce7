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
adjoint level is completed at one counter, see :mod:`devito_perforad.derive`) and
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
Inc(u_b(x + h_x), (x + 1 <= x_M) ? w_b(x)/h_x : 0)

The increment at ``x + 1`` is kept in the domain: the primal's read of its zero halo
at the right edge has no adjoint.
"""


import sympy
from devito import Eq, Inc

from ..ir.access import access_of, at_offsets
from ..ir.symbolic import Select, shift
from ..region import space_conditions

__all__ = ['Scatter']


class Scatter:
    """The scatter form's choices, for :func:`devito_perforad.derive.derive`: none of
    the gather form's passes; the updates at the edges of the run stay gathers
    (Devito 4.8 emits an invalid OpenMP reduction clause for several increments of
    one array fused in a loop outside the time loop)."""

    name = 'scatter'

    def scales(self, levels, adjoints, grid):
        return {}

    def shift_time(self, updates, adjoints, levels, checkpointed):
        return updates, {}, [], []

    def compose(self, statement, contributions, seed, levels, active):
        """Nested derivatives stay flat."""
        return contributions

    def factors(self, edge):
        """Whether an update at ``edge`` is factored: only those at an edge."""
        return edge is not None

    def begin(self, step, nodes, adjoints):
        return []

    def loop_update(self, step, node, own, keep, scale):
        """The update of ``node`` at every counter: set the level to its seed, then
        scatter into it."""
        return step.flush() + scatter_level(own, keep, node.contributions)

    def time_free(self, contributions, adjoints, grid):
        """A time-free statement's contributions, one increment per read."""
        return [scatter(c.statement, c.access, c.coefficient, adjoints[c.target])
                for c in contributions]


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
    # only into the domain: a primal read of the zero halo has no adjoint, and one
    # kept there would be read by the gathered updates at the run's edges
    inside = space_conditions(gb.grid, None, access.space)
    if inside:
        contribution = Select(sympy.And(*inside), contribution, sympy.S.Zero)
    return Inc(target, contribution, subdomain=stmt.subdomain)


def scatter_level(own, keep, contributions):
    """One adjoint level in scatter form: set it to its seed, then scatter into it.

    Parameters
    ----------
    own : sympy.Expr
        The adjoint level written, ``gb[t + r]``.
    keep : sympy.Expr
        What it holds before the contributions (its seed, or zero).
    contributions : list of Contribution
        The gathered form's contributions to the level: the value ``D * yb`` at the
        primal point, the primal step, the read, and the conditions on the counter
        under which the primal step ran. Where the partial is finite at every step, a
        0/1 factor, hoisted out of the space loops, applies the conditions.
    """
    gb, level = own.function, access_of(own).time
    eqs = [] if keep is own else [Eq(own, keep)]
    ordered = sorted(contributions, key=lambda c: any(c.access.space))  # own point first
    for c in ordered:
        value = shift(c.coefficient, time=c.step or 0)
        if c.conditions and c.finite_at_every_step:
            value *= Select(sympy.And(*c.conditions), sympy.S.One, sympy.S.Zero)
        elif c.conditions:
            value = Select(sympy.And(*c.conditions), value, sympy.S.Zero)
        increment = scatter(c.statement, c.access, value, gb, level)
        if not eqs and not any(c.access.space):
            # The level keeps its seed in place (a saved adjoint) and this is the
            # first contribution, at the primal point itself: an assignment. With
            # increments only, Devito 4.8.23 sees no dependence along time and runs
            # the time loop as a parallel array reduction.
            increment = Eq(increment.lhs, increment.lhs + value,
                           subdomain=c.statement.subdomain)
        eqs.append(increment)
    return eqs
