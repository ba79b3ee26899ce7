"""Nested derivatives: the compositions a statement applies, kept apart from its flat
stencil.

``(b*u.dx).dx``, ``div(b*grad(u))`` and the rotated TTI derivatives are compositions:
an inner expression ``E`` (a derivative, times pointwise coefficients) evaluated at
the neighbours of the point, then an outer derivative. Devito evaluates a nested
derivative ``D(E)`` exactly so, as ``sum_k w_k E(x + o_k)``; flattened, it is one wide
stencil whose coefficients (``b``) are read at every neighbour. Its adjoint is the
reversed composition ``E^T(D^T(seed))``: two gathers as wide as the primal's
derivatives, with the pointwise product between them
(:mod:`devito_perforad.passes.composition`).

The analysis finds the outermost nested derivatives of a statement, replaces each by
a symbol in the statement's right-hand side (``Statement.lifted``) and records its
outer weights and offsets and its inner expression. The split is checked against the
flat right-hand side Devito evaluates: where they differ (a derivative that does not
evaluate as a weighted sum of shifted copies of its expression), the statement keeps
no compositions and is reversed flat.

Examples
--------
>>> from devito import Eq, Function, Grid, TimeFunction
>>> from devito_perforad.ir.access import analyse
>>> grid = Grid(shape=(9, 9))
>>> x, y = grid.dimensions
>>> u = TimeFunction(name='u', grid=grid, space_order=2)
>>> b = Function(name='b', grid=grid, space_order=2)
>>> (stmt,) = analyse([Eq(u.forward, u + (b * u.dx).dx)])
>>> (c,) = stmt.compositions
>>> c.inner                                  # E = b * u.dx, at the iteration point
(-u(t, x, y)/h_x + u(t, x + h_x, y)/h_x)*b(x, y)
>>> [(w, o) for w, o in c.outer]             # (b u.dx).dx = sum w E(x + o)
[(-1/h_x, (0, 0)), (1/h_x, (1, 0))]
>>> stmt.lifted == u + c.symbol
True
"""

import operator
from dataclasses import dataclass
from functools import reduce

import numpy as np
import sympy
from devito import Function
from devito.finite_differences.derivative import Derivative
from devito.symbolics import retrieve_functions
from devito.types.basic import AbstractFunction

from .offsets import own_offset

__all__ = ['Composition', 'Term', 'agree', 'compositions', 'partials_agree']


@dataclass(frozen=True)
class Term:
    """One term ``B * D(g)`` of a composition's inner expression: a space derivative
    ``D`` of a field access, times a pointwise coefficient ``B``.

    Attributes
    ----------
    derivative : devito Derivative
        ``D(g)``, as the user wrote it.
    coefficient : sympy.Expr
        ``B``, free of derivatives.
    expr : sympy.Expr
        ``B * D(g)``, evaluated (a flat stencil).
    """

    derivative: sympy.Expr
    coefficient: sympy.Expr
    expr: sympy.Expr

    def transposed(self, y):
        """``D^T(B * y)``, unevaluated: Devito's transposed derivative of the
        coefficient times ``y`` (the transpose of ``y -> B * D(y)``)."""
        return self.derivative._rebuild(expr=self.coefficient * y).T


@dataclass(frozen=True)
class Composition:
    """One nested derivative of a statement: ``node == sum_k w_k inner(x + o_k)``.

    Attributes
    ----------
    node : sympy.Expr
        The nested derivative as the user wrote it, e.g. ``Derivative(b*u.dx, x)``.
    symbol : sympy.Symbol
        Stands for the node in ``Statement.lifted``.
    outer : tuple of (sympy.Expr, tuple of int)
        The outer derivative: its weights ``w_k`` and grid offsets ``o_k`` (one per
        grid dimension).
    inner : sympy.Expr
        ``E``, evaluated at the iteration point: a flat stencil with its pointwise
        coefficients.
    terms : tuple of Term
        ``E`` as a sum of terms ``B * D(g)`` whose transposes Devito evaluates as
        the reversal of their flat stencils; empty where ``E`` has another form.
    transposable : bool
        Whether Devito's transpose of the outer derivative reproduces ``outer``
        reversed (see :meth:`transposed`).
    """

    node: sympy.Expr
    symbol: sympy.Symbol
    outer: tuple
    inner: sympy.Expr
    terms: tuple = ()
    transposable: bool = False

    def transposed(self, z):
        """The outer derivative's transpose applied to the field ``z``, unevaluated:
        ``sum_k w_k z(x - o_k)`` as Devito's transposed derivative."""
        return self.node._rebuild(expr=z).T

    def flat(self):
        """The node as Devito evaluates it: ``sum_k w_k inner(x + o_k)``."""
        return sympy.Add(*[w * _moved(self.inner, o) for w, o in self.outer])


def _moved(expr, offsets):
    """``expr`` at the iteration point moved by ``offsets`` (one per grid dimension)."""
    apps = {}
    for app in retrieve_functions(expr, mode='unique'):
        by_dim = dict(zip(app.function.grid.dimensions, offsets, strict=True))
        new = app
        for dim in app.function.dimensions:
            if by_dim.get(dim):
                new = new.shift(dim, by_dim[dim] * dim.spacing)
        apps[app] = new
    return expr.xreplace(apps)


def _is_space_derivative(expr):
    return isinstance(expr, Derivative) and all(not d.is_Time for d in expr.dims)


def _nested(expr):
    """The outermost space derivatives of ``expr`` whose expression holds another
    space derivative."""
    if _is_space_derivative(expr) and any(
            _is_space_derivative(n) for n in sympy.preorder_traversal(expr.expr)):
        return [expr]
    return [n for a in expr.args for n in _nested(a)]


def _outer(node, grid, substitute):
    """The weights and offsets of ``node``'s outer derivative: ``node`` rebuilt on a
    placeholder field and evaluated."""
    w = _placeholder(grid, _order(node))
    outer = sympy.expand(substitute(node._rebuild(expr=w).evaluate))
    terms = []
    for term in sympy.Add.make_args(outer):
        apps = [a for a in retrieve_functions(term) if a.function is w]
        if len(apps) != 1:
            return None
        weight = term.xreplace({apps[0]: sympy.S.One})
        if retrieve_functions(weight):
            return None
        terms.append((weight, _offsets(apps[0], grid)))
    return tuple(terms)


def _offsets(app, grid):
    out = []
    for arg, dim in zip(app.args, app.function.dimensions, strict=True):
        k = own_offset(app, arg, dim) if arg.has(dim) else sympy.S.Zero
        if not k.is_Integer:
            raise ValueError(k)
        out.append(int(k))
    return tuple(out)


def compositions(rhs, flat, grid, evaluated, substitute, at=None):
    """The compositions of a right-hand side, and the right-hand side with each one
    replaced by its symbol.

    Parameters
    ----------
    rhs : sympy.Expr
        The right-hand side as written (derivatives unevaluated).
    flat : sympy.Expr
        The right-hand side as Devito evaluates it (``Statement.rhs``).
    grid : devito.Grid
    evaluated : callable
        Evaluates derivatives (``expr.evaluate``).
    substitute : callable
        Applies the Operator's ``subs``
        (see :func:`~devito_perforad.ir.access.substitute`).
    at : sympy.Expr, optional
        The left-hand side: Devito evaluates a right-hand side at its point (where
        staggered fields are read, at the point of the field written).

    Returns
    -------
    (sympy.Expr, tuple of Composition)
        ``(flat, ())`` where the right-hand side has no nested derivative, or where
        the split does not reproduce ``flat``.
    """
    nodes = list(dict.fromkeys(_nested(sympy.sympify(rhs))))
    if not nodes or grid is None:
        return flat, ()
    found = []
    for i, node in enumerate(nodes):
        try:
            outer = _outer(node, grid, substitute)
        except (ValueError, TypeError, AttributeError):
            outer = None
        if not outer:
            return flat, ()
        inner = substitute(evaluated(node.expr))
        found.append(Composition(node, sympy.Symbol(f'composed{i}'), outer, inner,
                                 _terms(node.expr, inner, grid, evaluated, substitute),
                                 _transposable(node, outer, grid, substitute)))
    lifted = substitute(evaluated(sympy.sympify(rhs).xreplace(
        {c.node: c.symbol for c in found}), at))
    if not agree(flat, lifted.xreplace({c.symbol: c.flat() for c in found})):
        return flat, ()
    return lifted, tuple(found)


def _placeholder(grid, order):
    return Function(name='composed', grid=grid, space_order=order)


def _transposable(node, outer, grid, substitute):
    """Whether Devito's transpose of ``node``'s outer derivative gathers
    ``sum_k w_k z(x - o_k)``."""
    z = _placeholder(grid, _order(node))
    expected = sympy.Add(*[w * _moved(z, tuple(-k for k in o)) for w, o in outer])
    try:
        return agree(substitute(node._rebuild(expr=z).T.evaluate), expected)
    except (ValueError, TypeError, AttributeError):
        return False


def _terms(expr, inner, grid, evaluated, substitute):
    """``expr`` (a composition's inner expression) as terms ``B * D(g)`` whose
    transposes Devito evaluates exactly as reversed stencils; ``()`` otherwise. A
    space derivative of a time derivative is one term per time level."""
    try:
        return _split(expr, inner, grid, evaluated, substitute)
    except _NotTermsError:
        return ()


def _distributed(expr):
    """The terms of ``expr`` with products distributed over sums, derivatives left
    whole: ``(s*D1(u) + c*D2(u))*c`` is ``[s*c*D1(u), c*c*D2(u)]``."""
    if isinstance(expr, sympy.Add):
        return [t for a in expr.args for t in _distributed(a)]
    if isinstance(expr, sympy.Mul):
        terms = [sympy.S.One]
        for factor in expr.args:
            terms = [t * f for t in terms for f in _distributed(factor)]
        return terms
    return [expr]


def _split(expr, inner, grid, evaluated, substitute):
    terms = []
    for term in _distributed(expr):
        factors = sympy.Mul.make_args(term)
        derivs = [f for f in factors if isinstance(f, Derivative)]
        if len(derivs) != 1 or not _is_space_derivative(derivs[0]):
            return ()
        coefficient = sympy.Mul(*[f for f in factors if f is not derivs[0]])
        if coefficient.has(Derivative):
            return ()
        for weight, g in _levels(derivs[0].expr, substitute):
            derivative = derivs[0]._rebuild(expr=g)
            terms.append(Term(derivative, weight * coefficient,
                              substitute(evaluated(weight * coefficient * derivative))))
    if not agree(inner, sympy.Add(*[t.expr for t in terms])):
        return ()
    y = _placeholder(grid, max(_order(t.derivative) for t in terms))
    for t in terms:  # D^T(B y) is the reversal of the flat B * D(g)
        g = t.derivative.expr
        expected = sympy.S.Zero
        for part in sympy.Add.make_args(sympy.expand(t.expr)):
            apps = [a for a in retrieve_functions(part) if a.function is g.function]
            if len(apps) != 1:
                return ()
            offsets = _offsets_from(apps[0], g)
            expected += _moved(part.xreplace({apps[0]: y}), tuple(-k for k in offsets))
        try:
            if not agree(substitute(t.transposed(y).evaluate), expected):
                return ()
        except (ValueError, TypeError, AttributeError):
            return ()
    return tuple(terms)


def _levels(expr, substitute):
    """``expr``, a field access or a time derivative of one, as ``(weight, access)``
    pairs: ``p.dt`` is ``(1/dt, p(t + dt)), (-1/dt, p(t))``."""
    if isinstance(expr, AbstractFunction):
        return [(sympy.S.One, expr)]
    if not (isinstance(expr, Derivative) and all(d.is_Time for d in expr.dims)
            and isinstance(expr.expr, AbstractFunction)):
        raise _NotTermsError
    pairs = []
    for part in sympy.Add.make_args(sympy.expand(substitute(expr.evaluate))):
        apps = retrieve_functions(part)
        if len(apps) != 1 or apps[0].function is not expr.expr.function:
            raise _NotTermsError
        pairs.append((part.xreplace({apps[0]: sympy.S.One}), apps[0]))
    return pairs


class _NotTermsError(Exception):
    """An inner expression that is not a sum of terms ``B * D(g)``."""


def _order(derivative):
    order = derivative.fd_order
    return max(order) if isinstance(order, tuple) else order


def _offsets_from(app, base):
    """Grid offsets of ``app`` relative to the access ``base`` of the same field."""
    grid = app.function.grid
    by_dim = {}
    for arg, ref, dim in zip(app.args, base.args, app.function.dimensions, strict=True):
        if not dim.is_Time:
            k = sympy.nsimplify(sympy.expand((arg - ref) / dim.spacing))
            if not k.is_Integer:
                raise ValueError(k)
            by_dim[dim] = int(k)
    return tuple(by_dim.get(d, 0) for d in grid.dimensions)


def agree(a, b, rtol=1e-12, tries=2):
    """Whether ``a`` and ``b`` agree at random values of every field access and symbol
    (to ``rtol`` relative; by default, an exact rewriting of Devito's flat stencil).

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols('x y')
    >>> agree((x + y)**2, x**2 + 2*x*y + y**2), agree(x, x * (1 + 1e-10))
    (True, False)
    >>> agree(x, x * (1 + 1e-10), rtol=1e-8)
    True
    """
    rng = np.random.default_rng(0)
    leaves = _leaves(a, b)
    for _ in range(tries):
        values = dict(zip(leaves, rng.uniform(0.5, 1.5, len(leaves)), strict=True))
        try:
            va, vb = _value(a, values), _value(b, values)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError):
            return False
        if not abs(va - vb) <= rtol * max(abs(va), abs(vb), 1e-300):
            return False
    return True


def partials_agree(a, b, rtol=1e-13):
    """Whether ``a`` and ``b`` have the same partial derivative by each of their field
    accesses and symbols (to ``rtol`` relative, each partial on its own), at random
    values: where :func:`agree` compares values, in which a small term that differs
    may hide under a large one.

    The partials are taken by complex step, all at once, with no symbolic
    differentiation. Each is compared to the size of the terms it sums (the partial
    with every number's absolute value), so that one that cancels to rounding noise
    in both agrees.

    Examples
    --------
    >>> import sympy
    >>> x, y = sympy.symbols('x y')
    >>> small = 1e-6 * y
    >>> agree(x + small, x + small * (1 + 1e-9), rtol=1e-13)
    True
    >>> partials_agree(x + small, x + small * (1 + 1e-9))
    False
    >>> partials_agree(x * (x + y), x**2 + x*y)
    True
    """
    leaves = _leaves(a, b)
    step = 1e-30
    values = dict(zip(leaves, np.random.default_rng(0).uniform(0.5, 1.5, len(leaves))
                      + 1j * step * np.eye(len(leaves)), strict=True))
    try:
        da, db, sa, sb = (np.imag(_value(e, values, absolute)) / step
                          for absolute in (False, True) for e in (a, b))
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return False
    return bool(np.all(np.abs(da - db) <= rtol * np.maximum(np.abs(sa), np.abs(sb))))


def _leaves(a, b):
    return sorted(set(retrieve_functions(a)) | set(retrieve_functions(b))
                  | {s for s in a.free_symbols | b.free_symbols}, key=str)


# numpy's own functions, which take the arrays of partials_agree
_NUMPY = {sympy.cos: np.cos, sympy.sin: np.sin, sympy.tan: np.tan, sympy.exp: np.exp,
          sympy.log: np.log}


def _value(expr, values, absolute=False):
    """``expr`` in floating point, with ``values`` (complex numbers, or arrays of
    them) for its leaves; ``absolute``: with each number's absolute value."""
    if expr in values:
        return values[expr]
    if expr.is_Number:
        return abs(complex(expr)) if absolute else complex(expr)
    args = [_value(e, values, absolute) for e in expr.args]
    if isinstance(expr, sympy.Add):
        return sum(args)
    if isinstance(expr, sympy.Mul):
        return reduce(operator.mul, args)
    if isinstance(expr, sympy.Pow):
        return args[0] ** args[1]
    if expr.func in _NUMPY:
        return _NUMPY[expr.func](*args)
    if isinstance(expr, sympy.Function) and not any(np.ndim(v) for v in args):
        # sqrt, Max, ...: field accesses are leaves
        return complex(expr.func(*[sympy.Float(v.real) for v in args]))
    raise TypeError(type(expr))
