"""The public entry points: adjoint and tangent, as equations or as Operators.

Each checks the user's input first (:mod:`~devito_perforad.checks`), before anything
is derived or built; then the driver (:mod:`~devito_perforad.derive`) derives the
equations and :func:`devito_perforad.devito_compat.build` builds the Operator.

The tangent (forward) mode needs no reversal: the linearised statement
``yd = sum_a dR/da * ad`` reads each tangent at the offset the primal reads its field,
so it is a gather with the primal's own stencil
(:data:`devito_perforad.rules.TANGENTS`). Sparse operations keep their kind: the
tangent of an injection is an injection, of an interpolation an interpolation. By
default the primal statements run alongside their tangents, so the nonlinear
coefficients use the primal values of the same step and the forward wavefield need
not be saved. A level's values between two writes of it are held in fields of their
own (:mod:`~devito_perforad.ir.versions`), so that Devito runs the tangent in program
order.
"""


from .checkpoint import CheckpointedAdjoint
from .checks import (
    check_inputs,
    check_numbers,
    check_operator_kwargs,
    check_options,
    check_primal,
    check_tangent_values,
)
from .derive import derive
from .devito_compat import (
    accesses_as_written,
    as_devito_runs,
    build,
    dynamic_schedule_above_work,
    hoisted_halo_exchanges,
    no_shrunk_loops,
    reads_in_devito_order,
)
from .differentiate import partials
from .fields import adjoint_function
from .ir.names import current, naming
from .ir.versions import recomputed, values, versioned
from .rules import RESTATED, TANGENTS

__all__ = ['adjoint', 'AdjointOperator', 'tangent', 'TangentOperator']


def adjoint(expressions, adjoints, subs=None, mode='gather', checkpointed=False):
    """Derive the exact discrete adjoint of ``expressions`` in gather form.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, nested lists of them, or devito.Operator
        The primal, exactly as passed to ``devito.Operator``; or the primal Operator
        itself, built after ``devito_perforad`` was imported (its own ``subs`` are
        used; see ``docs/how-it-works.md``).
    adjoints : dict
        Maps each field to differentiate, or its name, to its adjoint field, of the
        same kind, grid and dtype (:func:`devito_perforad.adjoint_function` makes one).
        Every field the program writes, receivers included, must be in the map: map
        one you do not differentiate to ``None`` (inactive). Fields only read and not
        in the map are constants.
    subs : dict, optional
        The ``subs`` the primal Operator is built with (e.g. ``model.spacing_map``).
        Devito folds numbers after substituting; passing the same ``subs`` makes the
        adjoint use exactly the primal's compiled coefficients.
    mode : {'gather', 'scatter'}, optional
        ``'gather'`` (default): offset reversal, every update writes only its own point.
        ``'scatter'``: textbook reverse mode (increments at offsets, see
        :mod:`devito_perforad.scatter`), for comparison.
    checkpointed : bool, optional
        The primal's buffered TimeFunctions are recomputed step by step while the
        adjoint runs one counter at a time (see
        :class:`devito_perforad.CheckpointedAdjoint`): the adjoint may read them at
        the levels the buffer holds right after the primal step of the same counter.

    Returns
    -------
    list of devito.Eq
        The adjoint equations. Every equation writes only its own point.

    Raises
    ------
    TypeError
        If ``adjoints`` is not a dict, ``subs`` not a dict (or other than an
        Operator's own), or ``expressions`` something else than Devito equations or
        an Operator.
    AdjointError
        If the map does not fit the program (a written field missing, a key that is
        not a field or not used, an adjoint of another kind, grid, dtype or storage),
        or the program has a form the transform cannot reverse; see
        ``docs/troubleshooting.md``. Raised before anything is built.

    Examples
    --------
    >>> import numpy as np
    >>> from devito import Grid, Function, Eq
    >>> from devito_perforad import adjoint, adjoint_function
    >>> grid = Grid(shape=(8,))
    >>> x = grid.dimensions[0]
    >>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    >>> ub, wb = adjoint_function(u), adjoint_function(w)
    >>> for eq in adjoint([Eq(w, u.dx)], {u: ub, w: wb}):
    ...     print(eq)
    Eq(u_b(x), u_b(x) - w_b(x)/h_x + w_b(x - h_x)/h_x)

    The term from ``x - 1`` reads ``w_b`` in its zero halo at the left edge: no guard.
    A coefficient that could be infinite there (``1/m``, zero in the halo) is guarded
    instead, on a thin shell at the edge, and the update runs bare on the core:

    >>> m = Function(name='m', grid=grid)
    >>> for eq in adjoint([Eq(w, u.dx / m)], {u: ub, w: wb}):
    ...     print(eq.subdomain.define(grid.dimensions)[x], eq.rhs)
    ... # doctest: +NORMALIZE_WHITESPACE
    ('middle', 1, 0) u_b(x) + w_b(x - h_x)/(h_x*m(x - h_x)) - w_b(x)/(h_x*m(x))
    ('left', 1) u_b(x) + (((x - 1 >= x_m) ? w_b(x - h_x)/(h_x*m(x - h_x)) : 0))
      - w_b(x)/(h_x*m(x))
    """
    check_options(mode)
    expressions, subs, _ = check_primal(expressions, subs)
    program, adjoints = check_inputs(expressions, adjoints, subs)
    program = as_devito_runs(program, expressions, subs)
    return derive(program, adjoints, mode, checkpointed)


def AdjointOperator(expressions, adjoints, mode='gather', checkpointing=False,  # noqa: N802
                    n_checkpoints=None, **kwargs):
    """A ``devito.Operator`` running the adjoint of ``expressions``.

    Applied with the same arguments as the primal operator (``time_m``, ``time_M``,
    ``dt``, ...), it performs ``x_b += (dF/dx)^T y_b`` for every active field, using
    the values the primal fields hold for nonlinear terms.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, nested lists of them, or devito.Operator
        The primal, or its Operator (see :func:`adjoint`); an Operator's ``subs`` and
        options are those of the derived Operator, unless given here.
    adjoints : dict
        Primal field -> adjoint field, ``None`` for a written field left inactive (see
        :func:`adjoint`).
    mode : {'gather', 'scatter'}, optional
        As for :func:`adjoint`.
    checkpointing : bool, optional
        Bounded memory: the primal keeps buffered TimeFunctions and is recomputed
        from Revolve snapshots while the adjoint runs.
    n_checkpoints : int, optional
        With ``checkpointing``, the number of snapshots (default: Revolve's choice).
    **kwargs
        Passed to ``devito.Operator``: ``subs`` (pass the primal's), ``opt``,
        ``name``, ``platform``, ``language``, ``compiler``, ``allocator``.

    Returns
    -------
    devito.Operator or CheckpointedAdjoint
        The adjoint Operator; with ``checkpointing``, a
        :class:`~devito_perforad.CheckpointedAdjoint`, whose ``apply`` runs the primal
        with snapshots and then the adjoint.

    Raises
    ------
    TypeError
        As :func:`adjoint`, and for a keyword ``devito.Operator`` does not take (an
        ``apply`` argument such as ``dt`` given here).
    AdjointError
        As :func:`adjoint`, and for invalid ``mode``, ``checkpointing`` or
        ``n_checkpoints``. Raised before anything is built.

    Examples
    --------
    The gradient of ``J = 1/2 ||u(t_end)||^2`` with respect to ``m`` in a 1D diffusion,
    against a finite difference:

    >>> import numpy as np
    >>> from devito import Eq, Function, Grid, Operator, TimeFunction
    >>> from devito_perforad import AdjointOperator, adjoint_function
    >>> grid = Grid(shape=(32,), extent=(31.,), dtype=np.float64)
    >>> u = TimeFunction(name='u', grid=grid, space_order=2, save=11)
    >>> m = Function(name='m', grid=grid)
    >>> primal = [Eq(u.forward, u + 0.2 * u.dx2 / m)]
    >>> forward = Operator(primal)
    >>> def J(m_values):
    ...     m.data[:] = m_values
    ...     u.data[:] = 0
    ...     u.data[0, 16] = 1
    ...     forward.apply()
    ...     return 0.5 * np.sum(u.data[-1]**2)
    >>> m0 = 1 + np.linspace(0, 1, 32)
    >>> J0 = J(m0)                                 # u now holds the trajectory at m0
    >>> ub, mb = adjoint_function(u), adjoint_function(m)
    >>> ub.data[-1] = u.data[-1]                   # the seed dJ/du(t_end)
    >>> _ = AdjointOperator(primal, {u: ub, m: mb}).apply()
    >>> dm, h = np.sin(np.arange(32)), 1e-6
    >>> fd = (J(m0 + h * dm) - J(m0 - h * dm)) / (2 * h)
    >>> bool(abs(fd - mb.data @ dm) < 1e-7 * abs(fd))
    True
    """
    check_options(mode, checkpointing, n_checkpoints)
    kwargs = check_operator_kwargs(kwargs, 'AdjointOperator')
    if checkpointing:
        return CheckpointedAdjoint(expressions, adjoints, n_checkpoints, **kwargs)
    expressions, _, kwargs = check_primal(expressions, kwargs.get('subs'), kwargs)
    kwargs.setdefault('name', 'Adjoint')
    kwargs = hoisted_halo_exchanges(kwargs)
    return build(adjoint(expressions, adjoints, kwargs.get('subs'), mode), **kwargs)


def tangent(expressions, tangents, subs=None, primal=True):
    """Derive the tangent-linear equations of ``expressions``.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, nested lists of them, or devito.Operator
        The primal, or its Operator (see :func:`adjoint`); an Operator's ``subs`` and
        options are those of the derived Operator, unless given here.
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
    expressions, subs, _ = check_primal(expressions, subs)
    program, tangents = check_inputs(expressions, tangents, subs, what='tangents')
    compiled = as_devito_runs(program, expressions, subs, in_devito_order=False)
    program = reads_in_devito_order(compiled, expressions, subs)
    as_written = {id(s) for s, c in zip(program, compiled, strict=True) if s is c}
    with naming():
        # each value a level holds between two writes in a field of its own: no read
        # falls between two writes, and Devito runs the statements in program order
        program, versions = versioned(program)
        tangents = {**tangents, **{v: adjoint_function(v, current().name(
            f'{v.name}_d', ('tangent', v.name))) for v, f in versions.items()
            if f in tangents}}
    derivatives = _tangent_partials(program, tangents, versions, primal)
    # the statements of a user's equation the derivation rewrote are restated
    restated = {id(s.eq) for s in program if id(s) not in as_written}
    out = []
    for stmt, derivs in zip(program, derivatives, strict=True):
        eqs = []
        if primal and id(stmt.eq) in restated:
            eqs = accesses_as_written(RESTATED[stmt.kind](stmt))
        elif primal and not any(e is stmt.eq for e in out):
            eqs = [stmt.eq]
        if stmt.write.field in tangents:
            dot = accesses_as_written(TANGENTS[stmt.kind](stmt, derivs, tangents))
            # a statement reading the level it writes: its partials need the values
            # from before it, so its tangent runs first
            in_place = any((a.field, a.time) == (stmt.write.field, stmt.write.time)
                           for a in stmt.reads)
            eqs = dot + eqs if in_place else eqs + dot
        out += eqs
    check_numbers(out, 'tangent')
    return out


def _tangent_partials(program, tangents, versions, primal):
    """The partials of each statement by the ``tangents``' fields. Without the primal,
    a value between two writes (a version's) is recomputed from the saved fields
    (:func:`~devito_perforad.ir.versions.recomputed`), and a partial needing a value
    the fields no longer hold is refused (:func:`check_tangent_values`)."""
    if primal:
        return [partials(s, tangents) if s.write.field in tangents else []
                for s in program]
    held = values(program, versions)
    derivs = [[(a, recomputed(d, held)) for a, d in partials(s, tangents)]
              if s.write.field in tangents else [] for s in program]
    check_tangent_values(program, derivs, versions)
    return derivs


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
    kwargs = check_operator_kwargs(kwargs, 'TangentOperator')
    expressions, _, kwargs = check_primal(expressions, kwargs.get('subs'), kwargs)
    kwargs.setdefault('name', 'Tangent')
    return no_shrunk_loops(tangent(expressions, tangents, kwargs.get('subs'), primal),
                           **dynamic_schedule_above_work(kwargs))
