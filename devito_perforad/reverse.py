"""Stage 3: reverse offsets.

The primal statement at point ``p`` reads ``g[p + o]``; reverse mode would scatter
``gb[p + o] += D(p) * yb[p]``. Substituting ``p = q - o`` turns the scatter into a
gather that writes only its own point ``q``:

    gb[q] += D(q - o) * yb[q - o]

In time the same substitution applies: a read ``g[t + s]`` by a statement writing
``y[t + s0]``, gathered into the adjoint level ``gb[t + r]``, comes from primal step
``t + r - s`` and reads the seed ``yb[t + r - s + s0]``.

Examples
--------
>>> from devito import Grid, Function
>>> grid = Grid(shape=(8,))
>>> x = grid.dimensions[0]
>>> f = Function(name='f', grid=grid)
>>> shift(2*f + x, space={x: -1})
x + 2*f(x - h_x) - 1
"""

from dataclasses import dataclass

import sympy
from devito.symbolics import retrieve_functions

__all__ = ['Term', 'shift', 'reverse']


def shift(expr, time=0, space=None):
    """Evaluate ``expr`` at the iteration point moved by ``time`` steps and by
    ``space`` (a mapping from space dimension to a whole number of grid points)."""
    space = {d: k for d, k in (space or {}).items() if k}
    if not time and not space:
        return expr

    def moved(dim):
        return time if dim.is_Time else space.get(dim, 0)

    apps = {}
    for app in retrieve_functions(expr, mode='unique'):
        new = app
        for dim in app.function.dimensions:
            if moved(dim):
                new = new.shift(dim, moved(dim) * dim.spacing)
        apps[app] = new
    placeholders = {app: sympy.Dummy() for app in apps}
    expr = expr.xreplace(placeholders)
    # Bare dimension symbols (e.g. ``x*h_x`` for a coordinate) move too.
    expr = expr.xreplace({d: d + moved(d) for d in expr.free_symbols
                          if getattr(d, 'is_Dimension', False) and moved(d)})
    return expr.xreplace({s: apps[app] for app, s in placeholders.items()})


@dataclass(frozen=True)
class Term:
    """One gathered contribution to an adjoint point.

    Attributes
    ----------
    expr : sympy.Expr
        ``D(q - o) * yb(q - o)``, evaluated at the adjoint's own point.
    step : int or None
        The primal step it comes from, relative to the loop counter.
    shift : tuple of int
        The primal point it comes from, relative to the adjoint point (``-o``).
    statement : Statement
        The primal statement it reverses.
    """

    expr: sympy.Expr
    step: int | None
    shift: tuple
    statement: object


def reverse(statement, access, partial, seed, level=None):
    """Gather the contribution of ``access`` in ``statement`` to the adjoint point.

    Parameters
    ----------
    statement : Statement
    access : Access
        The read being reversed, ``g[t + s, p + o]``.
    partial : sympy.Expr
        ``dR/dg[t + s, p + o]`` at the primal point.
    seed : sympy.Expr
        The adjoint of the statement's left-hand side at the primal point.
    level : int, optional
        The adjoint level ``r`` being written (``gb[t + r]``); ``None`` in time-free
        programs and for time-free targets.
    """
    step = None
    if statement.is_timed:
        step = (level if level is not None else access.level) - access.level
    back = {d: -o for d, o in zip(access.field.space_dimensions, access.space,
                                  strict=True)}
    expr = shift(partial * seed, time=step or 0, space=back)
    grid = statement.write.field.grid
    return Term(expr, step, tuple(back.get(d, 0) for d in grid.dimensions), statement)
