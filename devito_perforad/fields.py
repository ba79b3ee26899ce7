"""Adjoint fields: create them, and check the map from primal to adjoint fields."""

import numpy as np
from devito import Function, SparseFunction, SparseTimeFunction, TimeFunction
from devito.symbolics import retrieve_functions

from .errors import AdjointError, located

__all__ = ['adjoint_function', 'check_adjoints', 'check_primal_values', 'check_window',
           'is_saved', 'several_ranks']


def is_saved(f):
    """Whether the TimeFunction ``f`` stores every time level (``save=nt``)."""
    return getattr(f, 'save', None) is not None


def adjoint_function(f, name=None):
    """A zero-initialised adjoint field matching the primal field ``f``.

    Same kind, grid, space order, time order, saved levels, staggering and dtype.

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> u = TimeFunction(name='u', grid=Grid(shape=(4, 4)), space_order=4)
    >>> ub = adjoint_function(u)
    >>> ub.name, ub.space_order, ub.time_order, ub.shape == u.shape
    ('u_b', 4, 1, True)
    """
    if not isinstance(f, (Function, SparseFunction)):
        raise AdjointError(f"`{f}` is a {type(f).__name__}; adjoint_function makes "
                           "adjoints of Function, TimeFunction and sparse functions.")
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


def _kind(f):
    if isinstance(f, SparseTimeFunction):
        return 'SparseTimeFunction'
    if isinstance(f, SparseFunction):
        return 'SparseFunction'
    if isinstance(f, TimeFunction):
        return 'TimeFunction'
    if isinstance(f, Function):
        return 'Function'
    return type(f).__name__


def check_adjoints(adjoints):
    """Check that each adjoint matches its primal field; return a plain dict.

    A saved primal TimeFunction (``save=nt``) may have a buffered adjoint: the usual
    set-up for gradients, where the forward wavefield is stored and the adjoint
    wavefield is not.

    Raises
    ------
    AdjointError
        If an adjoint is of another kind, grid, shape, time order or storage than its
        primal field.
    """
    out = {}
    for f, fb in dict(adjoints).items():
        where = f"adjoint `{getattr(fb, 'name', fb)}` of field `{getattr(f, 'name', f)}`"
        if _kind(f) not in ('Function', 'TimeFunction', 'SparseTimeFunction',
                            'SparseFunction'):
            raise AdjointError(f"{where}: `{f}` is a {_kind(f)}; only Function, "
                               "TimeFunction and sparse functions can be differentiated.")
        if _kind(fb) != _kind(f):
            raise AdjointError(f"{where}: the adjoint is a {_kind(fb)} but the primal is "
                               f"a {_kind(f)}; use devito_perforad.adjoint_function.")
        if fb is f or fb.name == f.name:
            raise AdjointError(f"{where}: the adjoint must be a distinct field.")
        if fb.grid is not f.grid:
            raise AdjointError(f"{where}: the adjoint lives on another grid.")
        if isinstance(f, SparseFunction):
            if fb.shape != f.shape:
                raise AdjointError(f"{where}: shape {fb.shape} differs from the "
                                   f"primal's {f.shape}.")
            if not np.array_equal(fb.coordinates.data, f.coordinates.data):
                raise AdjointError(f"{where}: the adjoint's coordinates differ from the "
                                   "primal's; use devito_perforad.adjoint_function.")
            out[f] = fb
            continue
        timed = isinstance(f, TimeFunction)
        if timed:
            if fb.time_order != f.time_order:
                raise AdjointError(f"{where}: time_order {fb.time_order} differs from "
                                   f"the primal's {f.time_order}.")
            if is_saved(fb) and not is_saved(f):
                raise AdjointError(f"{where}: the adjoint is saved (save=nt) but the "
                                   "primal is buffered; a buffered primal needs a "
                                   "buffered adjoint.")
        same_storage = not timed or is_saved(fb) == is_saved(f)
        shape, primal_shape = (fb.shape, f.shape) if same_storage else (fb.shape[1:],
                                                                         f.shape[1:])
        if shape != primal_shape:
            raise AdjointError(f"{where}: shape {fb.shape} differs from the primal's "
                               f"{f.shape}.")
        if [d.is_Time for d in fb.dimensions] != [d.is_Time for d in f.dimensions] or \
                fb.space_dimensions != f.space_dimensions:
            raise AdjointError(f"{where}: dimensions {fb.dimensions} differ from the "
                               f"primal's {f.dimensions}.")
        if fb.staggered != f.staggered:
            raise AdjointError(f"{where}: staggering differs from the primal's.")
        out[f] = fb
    return out


def check_primal_values(stmt, partial, written):
    """Raise if ``partial`` needs values of a buffered TimeFunction the program
    overwrites (``written``): they are gone by the time the adjoint runs."""
    for app in retrieve_functions(partial, mode='unique'):
        f = app.function
        if isinstance(f, TimeFunction) and not is_saved(f) and f in written:
            raise located(stmt.eq, f,
                          f"the adjoint needs primal values `{app}` at every time step, "
                          "but a buffered TimeFunction only keeps its last "
                          f"{f.time_order + 1} levels. Create it with save=nt (or "
                          "recompute it by checkpointing).")


def check_window(stmt, partial, step, program):
    """Raise if ``partial``, from the primal step ``step`` counters away, reads a level
    of a recomputed (buffered) TimeFunction that the buffer no longer holds right after
    the primal step of the current counter."""
    from .access import access_of
    top = {}
    for s in program:
        if s.write.time is not None:
            top[s.write.field] = max(top.get(s.write.field, s.write.time), s.write.time)
    for app in retrieve_functions(partial, mode='unique'):
        f = app.function
        if not isinstance(f, TimeFunction) or is_saved(f) or f not in top:
            continue
        level = access_of(app).time + (step or 0)
        if not top[f] - f.time_order <= level <= top[f]:
            raise located(stmt.eq, f,
                          f"with checkpointing, the adjoint at counter t needs "
                          f"`{f.name}` at level t{level:+d}, but after the primal step "
                          f"t the buffer "
                          f"holds levels t{top[f] - f.time_order:+d}..t{top[f]:+d}. "
                          "Save the field (save=nt) instead.")
