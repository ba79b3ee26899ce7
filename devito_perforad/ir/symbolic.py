"""Symbolic helpers of the intermediate representation: a rebuildable ternary, a
differentiable safe inverse, moving
an expression to another iteration point, pinning it at one counter, and the test for
finite expressions.

Examples
--------
>>> from devito import Grid, Function
>>> grid = Grid(shape=(8,))
>>> x = grid.dimensions[0]
>>> f = Function(name='f', grid=grid)
>>> shift(2*f + x, space={x: -1})
x + 2*f(x - h_x) - 1
"""

from functools import partial

import sympy
from devito import TimeFunction
from devito.finite_differences.differentiable import SafeInv
from devito.symbolics import InlineIf, retrieve_functions
from devito.types.basic import AbstractFunction
from sympy.core.logic import fuzzy_and

from ..fields import buffer_size, is_saved
from .access import access_of
from .names import current

__all__ = ['Select', 'SafeInverse', 'shift', 'pin', 'finite', 'unrepresentable']


class Select(InlineIf):
    """C ternary ``cond ? true_expr : false_expr`` that Devito's passes can rebuild.

    Examples
    --------
    >>> import sympy
    >>> a = sympy.Symbol('a')
    >>> Select(sympy.Gt(a, 0), a, sympy.S.Zero)
    (a > 0) ? a : 0
    """

    def __new__(cls, cond, true_expr, false_expr, **kwargs):
        obj = sympy.Expr.__new__(cls, cond, true_expr, false_expr)
        obj._cond, obj._true_expr, obj._false_expr = cond, true_expr, false_expr
        return obj

    def _sympystr(self, printer):
        return (f"(({printer._print(self.cond)}) ? {printer._print(self.true_expr)} : "
                f"{printer._print(self.false_expr)})")

    def _eval_derivative(self, s):
        return Select(self.cond, sympy.diff(self.true_expr, s),
                      sympy.diff(self.false_expr, s))

    # Devito's InlineIf leaves it unknown; SymPy then treats products with it as
    # possibly non-real, and refuses to compare them (the partials of ``Max``)
    is_commutative = True

    def _eval_is_extended_real(self):
        return fuzzy_and(e.is_extended_real for e in (self.true_expr, self.false_expr))


class SafeInverse(SafeInv):
    """Devito's ``SafeInv(a, b)`` (``1/a``, or ``0`` where ``a`` or ``b`` is below a
    tiny threshold: the harmonic averages of staggered parameters), with its
    derivative. It prints as the primal's ``SAFEINV(a, b)``.

    Examples
    --------
    >>> import sympy
    >>> a, b = sympy.symbols('a b')
    >>> sympy.diff(SafeInverse(2*a, b), a)
    -2*SafeInverse(2*a, b)**2
    """

    def diff(self, *symbols, **kwargs):
        # Differentiable.diff is Devito's finite difference; this is SymPy's.
        return sympy.Expr.diff(self, *symbols, **kwargs)

    def _eval_derivative(self, s):
        # d(1/a) = -(1/a)**2 da where the inverse is taken; 0 where it is cut off.
        return sympy.Mul(-1, sympy.Pow(self, 2), sympy.diff(self.val, s))


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
    apps = {}
    for app in retrieve_functions(expr, mode='unique'):
        f = app.function
        steps = [d for d in f.dimensions if d.is_Time]
        if not steps:
            continue
        a = access_of(app)
        index = value + a.time
        if isinstance(f, TimeFunction) and not is_saved(f):
            index = sympy.Mod(index, buffer_size(f))
        new = f.subs(steps[0], index)
        for d, k in zip([d for d in f.dimensions if not d.is_Time], a.space, strict=True):
            if k:
                new = new.shift(d, k * d.spacing)
        apps[app] = new
    return expr.xreplace(apps).xreplace({time: value})


_FINITE_HEADS = (sympy.Add, sympy.Mul, sympy.Max, sympy.Min, sympy.Abs, sympy.sign,
                 sympy.Heaviside, sympy.sin, sympy.cos, sympy.Piecewise,
                 sympy.Tuple, sympy.logic.boolalg.Boolean, Select)


def finite(expr):
    """Whether ``expr`` is finite wherever the fields it reads hold finite values.

    The operations allowed on field values are those that cannot overflow or divide
    by zero: sums, products, non-negative integer powers, ``Max``, ``Min``, ``Abs``,
    steps, ``sin``, ``cos`` and selections. A subexpression that reads no field is
    made of the user's scalars (``dt``, a ``Constant``) and is taken as finite. So
    ``1/m`` is not finite (a zero halo gives ``inf``), ``m**2 * u`` is.

    Examples
    --------
    >>> from devito import Function, Grid
    >>> m = Function(name='m', grid=Grid(shape=(4,)))
    >>> finite(sympy.Max(m, 0) * m**2 + 3), finite(1 / m)
    (True, False)
    """
    if not retrieve_functions(expr) or isinstance(expr, AbstractFunction):
        return True
    if isinstance(expr, sympy.Pow):
        exponent = expr.exp
        return exponent.is_Integer and exponent >= 0 and finite(expr.base)
    if isinstance(expr, _FINITE_HEADS) or getattr(expr, 'is_Relational', False):
        return all(finite(a) for a in expr.args)
    return False


EXACT = 2 ** 53  # integers up to this magnitude are exact as doubles and as int64


def unrepresentable(expr):
    """The numbers of ``expr`` that C cannot take exactly as Devito prints them.

    Devito prints an integer as an integer literal and a rational ``p/q`` as
    ``p.0F/q.0F``: an integer beyond ``2**53`` in magnitude overflows ``int64`` or
    loses digits in floating-point arithmetic (gcc only warns, then truncates), and
    so does a rational whose numerator or denominator is not exact as a double. A
    float must be finite.

    Examples
    --------
    >>> import sympy
    >>> a = sympy.Symbol('a')
    >>> unrepresentable(sympy.Rational(1, 3) * a + 2**52 * a**2 + 0.1 * a**3)
    []
    >>> unrepresentable(16384000000000018432000000000005120 * a + a**2 / 3)
    [16384000000000018432000000000005120]
    """
    bad = []
    for n in sympy.preorder_traversal(expr):
        if isinstance(n, sympy.Integer):
            if abs(int(n)) > EXACT:
                bad.append(n)
        elif isinstance(n, sympy.Rational):
            if not all(_exact_double(k) for k in (n.p, n.q)):
                bad.append(n)
        elif isinstance(n, sympy.Number) and not n.is_finite:
            bad.append(n)  # inf, nan
    return sorted(set(bad), key=sympy.default_sort_key)


def _exact_double(k):
    """Whether the integer ``k`` is a double exactly."""
    try:
        return float(k) == k
    except OverflowError:
        return False
