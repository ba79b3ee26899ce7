"""Tangent (forward) mode: the linearisation ``J`` of a primal program.

The tangent needs no reversal: the linearised statement ``yd = sum_a dR/da * ad``
reads each tangent at the offset the primal reads its field, so it is a gather with
the primal's own stencil. Sparse operations keep their kind: the tangent of an
injection is an injection, of an interpolation an interpolation. By default the
primal statements run alongside their tangents, so the nonlinear coefficients use the
primal values of the same step and the forward wavefield need not be saved.

See :func:`tangent` for an example.
"""

import sympy
from devito import Eq, Inc, Operator

from .access import at_offsets
from .assemble import static_schedule
from .checks import check_inputs, check_operator_kwargs
from .differentiate import partials

__all__ = ['tangent', 'TangentOperator']


def _tangent_of(stmt, tangents):
    """The tangent equations of one analysed statement."""
    dot = sum((d * at_offsets(tangents[a.field], time=a.time, space=a.space)
               for a, d in partials(stmt, tangents)), sympy.S.Zero)
    target = at_offsets(tangents[stmt.write.field], time=stmt.write.time,
                        space=stmt.write.space)
    if stmt.kind == 'inject':
        return [stmt.sparse.inject(field=target, expr=dot)] if dot != 0 else []
    if stmt.kind == 'interpolate':
        return [tangents[stmt.write.field].interpolate(expr=dot,
                                                       increment=stmt.increment)]
    if stmt.increment:
        return [Inc(target, dot, subdomain=stmt.subdomain)] if dot != 0 else []
    return [Eq(target, dot, subdomain=stmt.subdomain)]


def tangent(expressions, tangents, subs=None, primal=True):
    """Derive the tangent-linear equations of ``expressions``.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, or nested lists of them
        The primal, exactly as passed to ``devito.Operator``.
    tangents : dict
        Maps each field to linearise to its tangent field, of the same kind, grid and
        dtype (:func:`devito_perforad.adjoint_function` makes one). Every field the
        program writes must be in the map; map one you do not linearise to ``None``.
        Fields only read and not in the map are constants.
    subs : dict, optional
        The ``subs`` the primal Operator is built with.
    primal : bool, optional
        Interleave the primal statements (default), so that nonlinear coefficients
        use the primal values of the same step.

    Returns
    -------
    list
        Devito equations and sparse operations computing ``yd = J xd``.

    Raises
    ------
    TypeError, AdjointError
        As :func:`devito_perforad.adjoint`, before anything is built.

    Examples
    --------
    >>> from devito import Eq, Function, Grid
    >>> from devito_perforad import adjoint_function, tangent
    >>> grid = Grid(shape=(8,))
    >>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    >>> ud, wd = adjoint_function(u, 'ud'), adjoint_function(w, 'wd')
    >>> tangent([Eq(w, u * u.dx)], {u: ud, w: wd}, primal=False)
    [Eq(wd(x), (-2*u(x)/h_x + u(x + h_x)/h_x)*ud(x) + u(x)*ud(x + h_x)/h_x)]
    """
    program, tangents = check_inputs(expressions, tangents, subs, what='tangents')
    out = []
    for stmt in program:
        if primal:
            out.append(stmt.eq)
        if stmt.write.field in tangents:
            out += _tangent_of(stmt, tangents)
    return out


def TangentOperator(expressions, tangents, primal=True, **kwargs):  # noqa: N802
    """A ``devito.Operator`` computing the tangent ``yd = J xd`` (Born modelling).

    Applied with the same arguments as the primal.

    Parameters
    ----------
    expressions, tangents, primal
        As for :func:`tangent`.
    **kwargs
        Passed to ``devito.Operator``: ``subs`` (pass the primal's), ``opt``,
        ``name``, ``platform``, ``language``, ``compiler``, ``allocator``.

    Returns
    -------
    devito.Operator
        Runs the primal (unless ``primal=False``) and its tangent, step by step.

    Raises
    ------
    TypeError, AdjointError
        As :func:`tangent`, and a ``TypeError`` for a keyword ``devito.Operator`` does
        not take.

    Examples
    --------
    The tangent of ``w = u**2`` in the direction ``ud = 1`` is ``2 u``:

    >>> import numpy as np
    >>> from devito import Eq, Function, Grid
    >>> from devito_perforad import TangentOperator, adjoint_function
    >>> grid = Grid(shape=(4,), dtype=np.float64)
    >>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    >>> ud, wd = adjoint_function(u, 'ud'), adjoint_function(w, 'wd')
    >>> u.data[:], ud.data[:] = [1, 2, 3, 4], 1
    >>> _ = TangentOperator([Eq(w, u**2)], {u: ud, w: wd}).apply()
    >>> wd.data
    Data([2., 4., 6., 8.])
    """
    check_operator_kwargs(kwargs, 'TangentOperator')
    kwargs.setdefault('name', 'Tangent')
    return Operator(tangent(expressions, tangents, kwargs.get('subs'), primal),
                    **static_schedule(kwargs))
