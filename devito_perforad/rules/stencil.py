"""The rule for dense statements, ``Eq`` (update) and ``Inc`` (increment): offset
reversal.

The primal statement at point ``p`` reads ``g[p + o]``; reverse mode would scatter
``gb[p + o] += D(p) * yb[p]``. Substituting ``p = q - o`` turns the scatter into a
gather that writes only its own point ``q``:

    gb[q] += D(q - o) * yb[q - o]

In time the same substitution applies: a read ``g[t + s]`` by a statement writing
``y[t + s0]``, gathered into the adjoint level ``gb[t + r]``, comes from primal step
``t + r - s`` and reads the seed ``yb[t + r - s + s0]``. A contribution from a step
outside the run is cut by conditions on the counter.

An ``Eq`` and an ``Inc`` reverse alike; they differ in what they leave in the level
they write (an ``Eq`` overwrites it), which :class:`~devito_perforad.levels.Levels`
accounts for.

Examples
--------
>>> from devito import Eq, Grid, TimeFunction
>>> from devito_perforad.differentiate import partials
>>> from devito_perforad.ir.access import analyse, at_offsets
>>> from devito_perforad.levels import Levels
>>> u = TimeFunction(name='u', grid=Grid(shape=(8,)), space_order=2)
>>> ub = TimeFunction(name='ub', grid=u.grid, space_order=2)
>>> program = analyse([Eq(u.forward, u + u.dx)])
>>> derivs = [partials(s, {u}) for s in program]
>>> levels = Levels.of(program, program, derivs)
>>> contributions = transpose(program[0], derivs[0], at_offsets(ub, time=1), levels)
>>> for c in contributions:
...     print(c.level, c.edge, c.step, c.shift, c.conditions, c.reads[1])
0 None 0 (0,) () 1
0 None 0 (-1,) () 1
>>> contributions[1].gathered          # the read u[x + 1] gathers the seed at x - 1
ub(t + dt, x - h_x)/h_x
"""

from devito import Eq, Inc

from ..differentiate import linearised
from ..ir.access import at_offsets
from ..ir.contribution import Contribution
from ..region import time_conditions

__all__ = ['transpose', 'linearise', 'restate']


def transpose(statement, partials, seed, levels):
    """The gathered contributions of a dense statement, one per active read and
    adjoint update of the read field (:meth:`~devito_perforad.levels.Levels.slots`).

    Parameters
    ----------
    statement : Statement
    partials : list of (Access, sympy.Expr)
        ``dR/dg[t + s, p + o]`` at the primal point, per active read.
    seed : sympy.Expr
        The adjoint of the statement's left-hand side at the primal point.
    levels : Levels

    Returns
    -------
    list of Contribution
    """
    grid = statement.write.field.grid
    out = []
    for a, d in partials:
        back = dict(zip(a.field.space_dimensions, (-o for o in a.space), strict=True))
        shift = tuple(back.get(dim, 0) for dim in grid.dimensions)
        for level, edge in levels.slots(a.field):
            step, conditions, reads = None, [], None
            if statement.is_timed:
                step = (level if level is not None else a.level) - a.level
                conditions = time_conditions(levels.time, step, edge)
                if conditions is None:
                    continue  # the step that would contribute is outside the run
                reads = (statement.write.field, step + statement.write.time)
            out.append(Contribution(a.field, level, edge, statement, a, d * seed, step,
                                    shift, tuple(conditions), reads, partial=d))
    return out


def linearise(statement, partials, tangents):
    """The tangent of a dense statement: the same stencil shape, on the tangents."""
    dot = linearised(statement, partials, tangents)
    target = at_offsets(tangents[statement.write.field], time=statement.write.time,
                        space=statement.write.space)
    if statement.increment:
        return [Inc(target, dot, subdomain=statement.subdomain)] if dot != 0 else []
    return [Eq(target, dot, subdomain=statement.subdomain)]


def restate(statement):
    """A dense statement as Devito equations, as the derivation rewrote it."""
    target = at_offsets(statement.write.field, time=statement.write.time,
                        space=statement.write.space)
    kind = Inc if statement.increment else Eq
    return [kind(target, statement.rhs, subdomain=statement.subdomain)]
