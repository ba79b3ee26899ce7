"""Analyse accesses: the statements of the intermediate representation.

Every statement of the primal program is reduced to the access it writes and the
accesses it reads. An access is a field read or written at the iteration point
shifted by whole grid steps: ``u(t - dt, x + 2*h_x)`` is field ``u`` at time offset
``-1`` and space offsets ``(2,)``.

Examples
--------
>>> from devito import Grid, TimeFunction, Eq
>>> grid = Grid(shape=(5,))
>>> u = TimeFunction(name='u', grid=grid, space_order=2)
>>> (stmt,) = analyse([Eq(u.forward, u + u.dx)])
>>> stmt.write.field.name, stmt.write.time, stmt.write.space
('u', 1, (0,))
>>> sorted((a.time, a.space) for a in stmt.reads)
[(0, (0,)), (0, (1,))]
"""

from dataclasses import dataclass

import sympy
from devito import Eq, Inc
from devito.operations.interpolators import Injection, Interpolation
from devito.symbolics import retrieve_functions, retrieve_indexed
from devito.tools import as_tuple
from devito.types import Dimension, SparseFunction
from devito.types.basic import AbstractFunction

from ..errors import AdjointError, describe, located
from .composition import compositions
from .offsets import own_offset

__all__ = ['Access', 'Statement', 'analyse', 'access_of', 'space_offsets', 'at_offsets']


@dataclass(frozen=True)
class Access:
    """A field at the iteration point plus integer offsets.

    Attributes
    ----------
    expr : sympy.Expr
        The function application as written, e.g. ``u(t + dt, x - h_x)``.
    field : devito.Function or devito.TimeFunction
        The accessed field.
    time : int or None
        Offset along the field's time dimension, ``None`` for fields without one.
    space : tuple of int
        Offsets along the field's space dimensions, in grid spacings.
    """

    expr: sympy.Expr
    field: AbstractFunction
    time: int | None
    space: tuple

    @property
    def level(self):
        """Time level relative to the loop counter (``0`` for time-free fields)."""
        return 0 if self.time is None else self.time


@dataclass(frozen=True)
class Statement:
    """One primal equation, analysed.

    Attributes
    ----------
    eq : devito.Eq
        The equation as the user wrote it (used in error messages).
    write : Access
        The left-hand side.
    rhs : sympy.Expr
        The evaluated right-hand side: derivatives expanded into stencils.
    reads : tuple of Access
        Every distinct field access on the right-hand side.
    increment : bool
        ``True`` for ``Inc`` (``lhs += rhs``), ``False`` for ``Eq``.
    subdomain : devito.SubDomain or None
        The region the primal equation iterates over; ``None`` is the whole domain.
    kind : {'update', 'increment', 'inject', 'interpolate'}
        What the statement does, and so which transpose rule reverses it
        (:data:`devito_perforad.rules.RULES`): a dense ``Eq`` (update), a dense
        ``Inc`` (increment), ``S.inject(field, expr)`` (``field += w * expr`` around
        each point of ``S``) or ``S.interpolate(expr)`` (``S = sum w * expr``).
    sparse : devito.SparseFunction or None
        The sparse function whose points a sparse operation visits.
    lifted : sympy.Expr or None
        The right-hand side with each nested derivative replaced by the symbol of its
        :class:`~devito_perforad.ir.composition.Composition` (``rhs`` where there is
        none).
    compositions : tuple of Composition
        The nested derivatives of a dense statement (:mod:`.composition`).
    """

    eq: Eq
    write: Access
    rhs: sympy.Expr
    reads: tuple
    increment: bool
    subdomain: object
    kind: str = 'update'
    sparse: object = None
    lifted: sympy.Expr = None
    compositions: tuple = ()

    @property
    def is_dense(self):
        """Whether the statement is a dense stencil equation (``Eq`` or ``Inc``)."""
        return self.kind in ('update', 'increment')

    @property
    def is_timed(self):
        """Whether the statement belongs to a time loop."""
        return self.write.time is not None or any(a.time is not None for a in self.reads)


def _offset(eq, expr, arg, dim):
    k = own_offset(expr, arg, dim)
    if k is None or not k.is_Integer:
        raise located(eq, expr.function,
                      f"index `{arg}` of dimension `{dim}` in `{expr}` is not "
                      f"`{dim}` plus a whole number of grid spacings. Only affine "
                      "accesses with integer offsets can be reversed (no indirect, "
                      "non-affine or sub-dimension indexing, no access between a "
                      "staggered field's points).")
    return int(k)


def access_of(expr, eq=None):
    """Analyse one function application into an :class:`Access`.

    Examples
    --------
    >>> from devito import Grid, Function
    >>> grid = Grid(shape=(5, 5))
    >>> x, y = grid.dimensions
    >>> f = Function(name='f', grid=grid)
    >>> a = access_of(f.shift(x, -x.spacing))
    >>> a.time, a.space
    (None, (-1, 0))
    """
    field = expr.function
    where = eq if eq is not None else expr
    time = None
    for arg, dim in zip(expr.args, field.dimensions, strict=True):
        if dim.is_Time:
            time = _offset(where, expr, arg, dim)
    return Access(expr, field, time, space_offsets(expr, eq))


def space_offsets(expr, eq=None):
    """Offsets of a function application along its field's space dimensions."""
    where = eq if eq is not None else expr
    return tuple(_offset(where, expr, arg, dim)
                 for arg, dim in zip(expr.args, expr.function.dimensions, strict=True)
                 if not dim.is_Time)


def at_offsets(field, time=None, space=None):
    """The application of ``field`` at the given offsets from the iteration point.

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> u = TimeFunction(name='u', grid=Grid(shape=(5,)))
    >>> at_offsets(u, time=-1, space=(2,))
    u(t - dt, x + 2*h_x)
    """
    expr = field  # a devito field is its own application at the iteration point
    space = iter(space or ())
    for dim in field.dimensions:
        k = (time or 0) if dim.is_Time else next(space, 0)
        if k:
            expr = expr.shift(dim, k * dim.spacing)
    return expr


def _flatten(expressions):
    if isinstance(expressions, (list, tuple)):
        for e in expressions:
            yield from _flatten(e)
    else:
        yield expressions


def _evaluated(expr, at=None):
    """``expr`` as Devito evaluates it, at the point of ``at`` where given (a sparse
    operation's field or sparse function: a staggered field is averaged there)."""
    expr = sympy.sympify(expr)
    if at is not None and hasattr(expr, '_eval_at'):
        expr = expr._eval_at(at)
    return expr.evaluate if hasattr(expr, 'evaluate') else expr


def _reads(eq, rhs):
    apps = [e for e in retrieve_functions(rhs, mode='unique')
            if not isinstance(e, Dimension)]
    reads = [access_of(e, eq) for e in apps]
    return tuple(sorted(reads, key=lambda a: (a.field.name, a.level, a.space)))


def substitute(expr, subs):
    """Apply ``Operator(subs=...)`` substitutions outside field accesses, as Devito's
    lowering does, so that numbers fold exactly as in the compiled primal."""
    if not subs:
        return expr
    apps = {a: sympy.Dummy() for a in retrieve_functions(expr, mode='unique')}
    expr = sympy.sympify(expr).xreplace(apps).xreplace(dict(subs))
    return expr.xreplace({d: a for a, d in apps.items()})


def _sparse_statements(op, subs):
    """``S.inject(field, expr)`` or ``S.interpolate(expr)``, analysed. An injection into
    several fields, ``S.inject(field=(u.forward, v.forward), expr=E)`` (one expression
    for all, or one per field), is one injection statement per field, in order."""
    sparse = op.interpolator.sfunction
    if isinstance(op, Injection):
        fields = tuple(op.field) if isinstance(op.field, sympy.MatrixBase) \
            else as_tuple(op.field)
        exprs = as_tuple(op.expr)
        if len(exprs) == 1:
            exprs = exprs * len(fields)
        if len(exprs) != len(fields):
            raise AdjointError(f"`{describe(op)}`: {len(exprs)} expressions for "
                               f"{len(fields)} fields; give one expression, or one per "
                               "field.")
        out = []
        for field, expr in zip(fields, exprs, strict=True):
            rhs = substitute(_evaluated(expr, field), subs)
            out.append(Statement(op, access_of(field, op), rhs, _reads(op, rhs), True,
                                 None, 'inject', sparse))
        return out
    if op.self_subs:
        raise AdjointError(f"`{describe(op)}`: interpolation with self_subs is not "
                           "supported.")
    rhs = substitute(_evaluated(op.expr, sparse), subs)
    return [Statement(op, access_of(sparse, op), rhs, _reads(op, rhs), op.increment,
                      None, 'interpolate', sparse)]


def _statements(eq, subs):
    if isinstance(eq, (Injection, Interpolation)):
        return _sparse_statements(eq, subs)
    if not isinstance(eq, Eq):
        if isinstance(eq, sympy.Expr):
            raise AdjointError(f"`{describe(eq, 60)}` is an expression, not an "
                               "equation: wrap it in `Eq(field, ...)` (or `Inc`), "
                               "naming the field it computes.")
        raise AdjointError(f"`{describe(eq, 60)}` is a {type(eq).__name__}, not a devito "
                           "Eq, Inc, injection or interpolation.")
    evaluated = eq.evaluate
    lhs, rhs = evaluated.lhs, substitute(evaluated.rhs, subs)
    if retrieve_indexed(lhs) or retrieve_indexed(rhs):
        raise AdjointError(f"In `{describe(eq)}`: indexed notation `u[...]` is not "
                           "supported; write accesses as function applications "
                           "(`u.forward`, `u.shift(...)`).")
    if not (isinstance(lhs, AbstractFunction)
            or isinstance(getattr(lhs, 'function', None), AbstractFunction)
            and lhs.is_Function):
        raise AdjointError(f"In `{describe(eq)}`: the left-hand side `{lhs}` is not a "
                           "field.")
    reads = _reads(eq, rhs)
    for f in [lhs.function] + [a.field for a in reads]:
        if isinstance(f, SparseFunction):
            raise located(eq, f, "a sparse function inside a dense equation; use "
                                 "S.inject(...) or S.interpolate(...).")
    increment = isinstance(eq, Inc)
    lifted, composed = compositions(eq.rhs, rhs, lhs.function.grid, _evaluated,
                                    lambda e: substitute(e, subs), at=eq.lhs)
    return [Statement(eq, access_of(lhs, eq), rhs, reads, increment,
                      getattr(evaluated, 'subdomain', None),
                      'increment' if increment else 'update', lifted=lifted,
                      compositions=composed)]


def analyse(expressions, subs=None):
    """Analyse the primal ``expressions`` (as passed to ``devito.Operator``).

    Parameters
    ----------
    expressions : Eq or Inc, or nested lists of them
    subs : dict, optional
        The ``subs`` the primal Operator is built with (e.g. ``model.spacing_map``).

    Returns
    -------
    list of Statement
        In program order; an injection into several fields gives one statement per
        field.
    """
    return [s for eq in _flatten(expressions) for c in _components(eq)
            for s in _statements(c, subs)]


def _components(eq):
    """A vector equation as its components' scalar equations (Devito's own split),
    any other expression as it is."""
    if isinstance(eq, Eq) and isinstance(eq.lhs, sympy.MatrixBase):
        return eq._flatten
    return [eq]
