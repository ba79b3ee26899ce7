"""Contributions: what a transpose rule returns.

A rule (:mod:`devito_perforad.rules`) reverses one primal statement into
contributions, small immutable values, one per adjoint target it feeds. The driver
(:mod:`devito_perforad.derive`) sums them per target; the passes
(:mod:`devito_perforad.passes`) rewrite them; the emitters turn them into equations.

A contribution says: add ``coefficient``, moved from the primal point to the adjoint
point (``step`` counters in time, ``shift`` grid points in space), to the adjoint of
``target`` at ``level``, where the primal step ran (``conditions``). A sparse
operation's contribution (``via``) is an injection or interpolation instead.

Examples
--------
>>> from devito import Eq, Function, Grid
>>> from devito_perforad.differentiate import partials
>>> from devito_perforad.ir.access import analyse
>>> from devito_perforad.levels import Levels
>>> from devito_perforad.rules import RULES
>>> grid = Grid(shape=(8,))
>>> u, w, wb = [Function(name=n, grid=grid) for n in ('u', 'w', 'w_b')]
>>> (stmt,) = analyse([Eq(w, u.dx)])
>>> rule = RULES[stmt.kind]
>>> for c in rule(stmt, partials(stmt, {u}), wb, Levels.of([stmt])):
...     print(c.target.name, c.shift, c.gathered)
u (0,) -w_b(x)/h_x
u (-1,) w_b(x - h_x)/h_x
"""

from dataclasses import dataclass

import sympy
from devito import TimeFunction
from devito.symbolics import retrieve_functions

from .symbolic import shift as moved

__all__ = ['Contribution', 'Chain']


@dataclass(frozen=True)
class Chain:
    """How a contribution reverses a nested derivative ``N = sum_k w_k E(x + o_k)``
    (:class:`~devito_perforad.ir.composition.Composition`) of its statement: the
    inner partial ``dE/dg``, times the outer derivative's transpose gathered from
    ``pointwise``, the seed times ``dR/dN``.

    Attributes
    ----------
    key : tuple
        The composition's outer weights and offsets, and its inner expression:
        contributions with equal keys gather from one sum of their seeds.
    source : tuple
        The statement and composition it comes from.
    pointwise : sympy.Expr
        ``dR/dN * yb``, at the primal point.
    partial : sympy.Expr
        ``dE/dg``, at the point the inner expression is evaluated.
    transposed : callable or None
        ``transposed(z)``: the outer derivative's transpose applied to the field
        ``z``, unevaluated (a Devito derivative), where Devito's own transpose
        reproduces ``outer`` and the inner expression splits into terms; ``None``
        otherwise.
    index : int
        The inner expression's term the read belongs to.
    term : Term or None
        That term (:class:`~devito_perforad.ir.composition.Term`).
    """

    key: tuple
    source: tuple
    pointwise: sympy.Expr
    partial: sympy.Expr
    transposed: object = None
    index: int = 0
    term: object = None

    @property
    def outer(self):
        """The outer derivative's ``(weight, offsets)`` pairs."""
        return self.key[0]


@dataclass(frozen=True)
class Contribution:
    """One statement's contribution to one adjoint target.

    Attributes
    ----------
    target : devito.types.AbstractFunction
        The primal field whose adjoint receives it.
    level : int or None
        The adjoint level written, relative to the counter (``None``: a time-free
        target, or a sparse operation's own target).
    edge : {None, 'top', 'bottom'}
        ``None``: the update runs at every counter; ``'top'``/``'bottom'``: once, at
        that edge of the run (levels only the last or first primal steps touch).
    statement : Statement
        The primal statement it reverses.
    access : Access or None
        The read it differentiates.
    coefficient : sympy.Expr
        ``dR/dg * yb`` at the primal point: the partial times the seed. For a sparse
        operation, the expression it injects or interpolates, as it runs.
    step : int or None
        The primal step it comes from, relative to the counter.
    shift : tuple of int
        The primal point it comes from, relative to the adjoint point (``-o``).
    conditions : tuple of sympy.Relational
        Conditions on the counter under which the primal step ran.
    reads : tuple or None
        ``(field, level)``: the seed level it reads, which must be complete first.
    via : {None, 'inject', 'interpolate'}
        ``None``: a gathered stencil term. Otherwise a sparse operation: inject
        ``coefficient`` into ``target`` through the points of ``sparse``, or
        interpolate it into ``sparse`` (the adjoint of a sparse function).
    sparse : devito.SparseFunction or None
        The sparse function that operation runs over.
    partial : sympy.Expr or None
        ``dR/dg`` alone (the coefficient without its seed).
    chain : Chain or None
        Set where the contribution reverses a nested derivative
        (:mod:`devito_perforad.passes.composition`): ``coefficient`` is then the
        inner partial times the gathered outer derivative of the seed.
    """

    target: object
    level: int | None
    edge: str | None
    statement: object
    access: object
    coefficient: sympy.Expr
    step: int | None = None
    shift: tuple = ()
    conditions: tuple = ()
    reads: tuple | None = None
    via: str | None = None
    sparse: object = None
    partial: sympy.Expr | None = None
    chain: object = None

    @property
    def gathered(self):
        """The coefficient at the adjoint point: ``D(q - o) * yb(q - o)``."""
        grid = self.statement.write.field.grid
        return moved(self.coefficient, time=self.step or 0,
                     space=dict(zip(grid.dimensions, self.shift, strict=True)))

    @property
    def finite_at_every_step(self):
        """Whether the partial reads no time-varying primal field: then the
        contribution is finite at every step, and a 0/1 factor on the counter can
        cut it instead of a branch."""
        return not any(isinstance(app.function, TimeFunction)
                       for app in retrieve_functions(self.partial, mode='unique'))

    @property
    def key(self):
        """The adjoint update it belongs to: target, level and edge."""
        return (self.target, self.level, self.edge)
