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
from functools import partial

import sympy
from devito import TimeFunction
from devito.symbolics import retrieve_functions

from .ir.names import current

__all__ = ['Term', 'shift', 'pin', 'reverse']


def shift(expr, time=0, space=None):
    """Evaluate ``expr`` at the iteration point moved by ``time`` steps and by
    ``space`` (a mapping from space dimension to a whole number of grid points)."""
    space = {d: k for d, k in (space or {}).items() if k}
    if not time and not space:
        return expr

    def moved(dim):
        return time if dim.is_Time else space.get(dim, 0)

    apps, names = {}, current()
    for app in retrieve_functions(expr, mode='unique'):
        key = tuple(moved(dim) for dim in app.function.dimensions)
        apps[app] = names.memo(('moved', app, key), partial(_moved, app, key)) \
            if any(key) else app
    placeholders = {app: sympy.Dummy() for app in apps}
    expr = expr.xreplace(placeholders)
    # Bare dimension symbols (e.g. ``x*h_x`` for a coordinate) move too.
    expr = expr.xreplace({d: d + moved(d) for d in expr.free_symbols
                          if getattr(d, 'is_Dimension', False) and moved(d)})
    return expr.xreplace({s: apps[app] for app, s in placeholders.items()})


def _moved(app, offsets):
    """``app`` shifted by whole grid steps along its own dimensions (memoised: Devito's
    ``shift`` is slow and the same accesses are shifted many times, within one
    derivation: see :mod:`~devito_perforad.ir.names`)."""
    for dim, k in zip(app.function.dimensions, offsets, strict=True):
        if k:
            app = app.shift(dim, k * dim.spacing)
    return app


def pin(expr, time, value):
    """Evaluate ``expr``, written relative to the loop counter ``time``, at the fixed
    counter ``value`` (``time_M`` or ``time_m``).

    Pinned equations have no time loop of their own: Devito runs them once, before or
    after the time loop, in program order. Buffered fields get an explicit modulo.

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> grid = Grid(shape=(4,))
    >>> time = grid.time_dim
    >>> u = TimeFunction(name='u', grid=grid, save=5)
    >>> v = TimeFunction(name='v', grid=grid)
    >>> pin(u.forward + v.backward + time, time, time.symbolic_max)
    time_M + u(time_M + 1, x) + v(Mod(time_M + 1, 2), x)
    """
    from .access import access_of
    apps = {}
    for app in retrieve_functions(expr, mode='unique'):
        f = app.function
        steps = [d for d in f.dimensions if d.is_Time]
        if not steps:
            continue
        a = access_of(app)
        index = value + a.time
        if isinstance(f, TimeFunction) and f.save is None:
            index = sympy.Mod(index, f.time_order + 1)
        new = f.subs(steps[0], index)
        for d, k in zip([d for d in f.dimensions if not d.is_Time], a.space, strict=True):
            if k:
                new = new.shift(d, k * d.spacing)
        apps[app] = new
    return expr.xreplace(apps).xreplace({time: value})


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
