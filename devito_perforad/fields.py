"""Adjoint fields: create them, and check the map from primal to adjoint fields."""

import numpy as np
from devito import Buffer, Function, SparseFunction, SparseTimeFunction, TimeFunction
from devito.types.tensor import TensorFunction, TensorTimeFunction, VectorFunction

from .errors import check_field, short

__all__ = ['adjoint_function', 'adjoint_functions', 'is_saved', 'buffer_size',
           'buffered', 'several_ranks']


def is_saved(f):
    """Whether the TimeFunction ``f`` stores every time level (``save=nt``, not a
    ``Buffer``)."""
    save = getattr(f, 'save', None)
    return save is not None and not isinstance(save, Buffer)


def buffer_size(f):
    """The time slots of the buffered TimeFunction ``f``: ``time_order + 1``, or
    ``n`` for ``save=Buffer(n)``."""
    return f._time_size


def adjoint_function(f, name=None):
    """A zero-initialised adjoint field matching the primal field ``f``.

    Same kind, grid, space order, time order, saved levels, staggering and dtype.

    Parameters
    ----------
    f : Function, TimeFunction, SparseFunction, SparseTimeFunction, or vector or tensor
        The primal field (``model.vp``, not the expression ``model.m``). A
        ``VectorTimeFunction`` or ``TensorTimeFunction`` gets one of its kind, its
        components the adjoints of ``f``'s.
    name : str, optional
        The adjoint's name; default ``f.name + '_b'``.

    Returns
    -------
    Function, TimeFunction, SparseFunction or SparseTimeFunction
        A new field of ``f``'s kind, all zeros. A sparse function gets ``f``'s
        coordinates and interpolation. For a buffered adjoint of a saved primal,
        create a ``TimeFunction`` without ``save`` instead.

    Raises
    ------
    AdjointError
        If ``f`` is not a field (an expression, a Constant, a shifted access).

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> u = TimeFunction(name='u', grid=Grid(shape=(4, 4)), space_order=4)
    >>> ub = adjoint_function(u)
    >>> ub.name, ub.space_order, ub.time_order, ub.shape == u.shape
    ('u_b', 4, 1, True)
    """
    if isinstance(f, TensorFunction):  # vectors too: the components' adjoints
        kwargs = dict(name=name or f'{f.name}_b', grid=f.grid, space_order=f.space_order,
                      dtype=f.dtype)
        if isinstance(f, TensorTimeFunction):
            kwargs.update(time_order=f.time_order, save=f.values()[0].save)
        if not isinstance(f, VectorFunction):
            symmetric = all(f[i, j] == f[j, i] for i in range(f.rows)
                            for j in range(f.cols))
            kwargs.update(symmetric=symmetric, diagonal=f.is_diagonal)
        return type(f)(**kwargs)
    check_field(f, f"adjoint_function's argument `{short(f)}`")
    if isinstance(f, SparseFunction):
        kwargs = dict(name=name or f'{f.name}_b', grid=f.grid, npoint=f.npoint_global,
                      coordinates=_global_coordinates(f), dtype=f.dtype,
                      interpolation=f.interpolation, r=f.r)
        if isinstance(f, SparseTimeFunction):
            return SparseTimeFunction(nt=f.nt, **kwargs)
        return SparseFunction(**kwargs)
    kwargs = dict(name=name or f'{f.name}_b', grid=f.grid, space_order=f.space_order,
                  dtype=f.dtype, staggered=f.staggered)
    if isinstance(f, TimeFunction):
        return TimeFunction(time_order=f.time_order, save=f.save, **kwargs)
    return Function(**kwargs)


def adjoint_functions(expressions):
    """An adjoint field for every field the primal writes (each component of a vector
    or tensor) and every sparse function it injects or interpolates: the adjoint map
    of a forward model, in program order. Parameters are left out: add those whose
    gradients are wanted.

    Parameters
    ----------
    expressions : list of Eq, Inc, injections and interpolations, or an Operator
        The primal, as for :func:`~devito_perforad.adjoint`.

    Returns
    -------
    dict
        Primal field -> :func:`adjoint_function` of it. A buffered adjoint that must
        hold more time levels at once than the primal's buffer gets
        ``save=Buffer(n)`` with the ``n`` it needs; its first slots hold the seeds
        and the results, laid out as the primal's buffer.

    Raises
    ------
    AdjointError
        For an Operator built before ``devito_perforad`` was imported.

    Examples
    --------
    >>> from devito import Eq, Grid, SparseTimeFunction, TimeFunction, VectorTimeFunction
    >>> from devito_perforad import adjoint_functions
    >>> grid = Grid(shape=(6, 6))
    >>> p = TimeFunction(name='p', grid=grid, space_order=2)
    >>> v = VectorTimeFunction(name='v', grid=grid, space_order=2)
    >>> rec = SparseTimeFunction(name='rec', grid=grid, npoint=1, nt=4)
    >>> eqs = [Eq(v.forward, v + p.dx), Eq(p.forward, p + v.forward[0].dx),
    ...        rec.interpolate(expr=p)]
    >>> [(f.name, fb.name) for f, fb in adjoint_functions(eqs).items()]
    [('v_x', 'v_x_b'), ('v_y', 'v_y_b'), ('p', 'p_b'), ('rec', 'rec_b')]
    """
    import sympy
    from devito import Operator
    from devito.tools import flatten

    if isinstance(expressions, Operator):
        from .devito_compat import operator_inputs
        expressions = operator_inputs(expressions)[0]
    written = {}
    for e in flatten(expressions):
        if hasattr(e, 'interpolator'):  # an injection or interpolation
            written.setdefault(e.interpolator.sfunction.name, e.interpolator.sfunction)
        elif isinstance(getattr(e, 'lhs', None), sympy.MatrixBase):
            written.update({c.function.name: c.function for c in e.lhs.values()})
        elif hasattr(e, 'lhs'):
            written.setdefault(e.lhs.function.name, e.lhs.function)
    adjoints = {f: adjoint_function(f) for f in written.values()}
    if any(isinstance(f, TimeFunction) and not is_saved(f) for f in adjoints):
        adjoints = _sized(expressions, adjoints)
    return adjoints


def _sized(expressions, adjoints):
    """``adjoints`` with each buffered adjoint as wide as the derivation needs."""
    from .api import adjoint
    from .errors import AdjointError, BufferSizeError
    for _ in range(len(adjoints)):
        try:
            adjoint(expressions, adjoints)
        except BufferSizeError as e:
            adjoints = {f: buffered(fb, e.sizes[f]) if f in e.sizes else fb
                        for f, fb in adjoints.items()}
            continue
        except AdjointError:   # said again, in context, when the adjoint is derived
            pass
        break
    return adjoints


def buffered(fb, n):
    """The adjoint ``fb`` again (same name and kind), with ``n`` time slots
    (``save=Buffer(n)``)."""
    return TimeFunction(name=fb.name, grid=fb.grid, space_order=fb.space_order,
                        time_order=fb.time_order, staggered=fb.staggered,
                        dtype=fb.dtype, save=Buffer(n))


def several_ranks(grid):
    """Whether ``grid`` is split over more than one MPI rank."""
    distributor = grid.distributor
    return distributor is not None and distributor.nprocs > 1


def _global_coordinates(f):
    """The coordinates of all of ``f``'s points, on every rank.

    Under MPI ``f.npoint`` and ``f.coordinates.data`` hold only this rank's chunk of the
    points (Devito splits them into contiguous chunks, in rank order); a new sparse
    function takes the global count and coordinates and splits them the same way.
    """
    local = np.array(f.coordinates.data._local)
    if not several_ranks(f.grid):
        return local
    return np.concatenate(f.grid.distributor.comm.allgather(local), axis=0)
