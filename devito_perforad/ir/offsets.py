"""Offsets of field accesses, in whole grid steps from the field's own point.

A field on the nodes has its own point at the iteration point ``x``; a field
staggered along ``x`` at ``x + h_x/2`` (Devito's ``indices_ref``). Offset reversal is
stated in these steps, so that a staggered field's accesses reverse as a node field's.
"""

import sympy

__all__ = ['own_offset']


def own_offset(app, arg, dim):
    """The offset, in grid steps along ``dim``, of the index ``arg`` of the function
    application ``app`` from its field's own point (``x`` for a field on the nodes,
    ``x + h_x/2`` for one staggered along ``x``): whole for an access of the field's
    own grid, ``None`` where ``arg`` does not follow ``dim``.

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> grid = Grid(shape=(5,))
    >>> x = grid.dimensions[0]
    >>> v = TimeFunction(name='v', grid=grid, staggered=x)
    >>> app = v.shift(x, -x.spacing)
    >>> app, own_offset(app, app.args[1], x)
    (v(t, x - h_x/2), -1)
    """
    if not arg.has(dim):
        return None
    field = app.function
    # (a sparse function has no position per dimension: its own point is the index)
    own = dict(zip(field.dimensions, field.indices_ref, strict=False)).get(dim, dim)
    return sympy.nsimplify(sympy.expand((arg - own) / dim.spacing))
