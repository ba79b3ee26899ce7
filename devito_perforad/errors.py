"""Errors raised before anything runs, and how they name the user's equations."""

from devito import Function, SparseFunction
from devito.operations.interpolators import Injection, Interpolation
from devito.symbolics import retrieve_functions
from devito.types.basic import AbstractFunction

__all__ = ['AdjointError', 'BufferSizeError', 'InternalError']

WIDTH = 100  # an equation longer than this is named by what it writes


class AdjointError(ValueError):
    """A primal program or adjoint map that devito-perforad cannot differentiate.

    Raised while the adjoint is derived, before any Operator is built or run. The
    message is a few lines: it names the user's equation and field at fault and says
    what to do. It never shows generated code or derived expressions; to see the
    derived adjoint equations, set the logger ``'devito_perforad'`` to ``DEBUG``.

    Parameters
    ----------
    message : str
        What is wrong, where, and what to do.

    Examples
    --------
    >>> from devito import Eq, Function, Grid
    >>> from devito_perforad import AdjointError, adjoint, adjoint_function
    >>> grid = Grid(shape=(8,))
    >>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    >>> try:
    ...     adjoint([Eq(w, u[grid.dimensions[0] + 1])], {u: adjoint_function(u),
    ...                                                 w: adjoint_function(w)})
    ... except AdjointError as e:
    ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
    In `Eq(w(x), u[x + 1])`: indexed notation `u[...]` is not supported; write
    accesses as function applications (`u.forward`, `u.shift(...)`).
    """


class BufferSizeError(AdjointError):
    """A buffered adjoint TimeFunction with fewer slots than the adjoint touches in one
    step. ``sizes`` maps each such adjoint's primal field to the ``n`` of the
    ``Buffer(n)`` it needs."""

    def __init__(self, message, sizes):
        super().__init__(message)
        self.sizes = sizes


class InternalError(RuntimeError):
    """A bug in devito-perforad, caught before Devito compiles anything.

    A postcondition of the derivation failed: for example a pass produced a number
    that C cannot represent exactly, which gcc would truncate with only a warning,
    giving a silently wrong adjoint. The message names the pass; please report it
    with the program that raised it.

    Parameters
    ----------
    message : str
        The pass at fault and what it produced.

    Examples
    --------
    >>> import sympy
    >>> from devito_perforad import InternalError
    >>> from devito_perforad.checks import check_numbers
    >>> try:
    ...     check_numbers([2**64 * sympy.Symbol('a')], 'composition')
    ... except InternalError as e:
    ...     print(str(e).split(':')[0])
    Internal error in the composition pass
    """


def describe(eq, width=WIDTH):
    """A short name of the user's equation or sparse operation ``eq``.

    The equation as written when it is short; otherwise what it writes, so that a
    message never holds a long (e.g. solved) right-hand side.

    Examples
    --------
    >>> from devito import Eq, Grid, SparseTimeFunction, TimeFunction
    >>> grid = Grid(shape=(8,))
    >>> u = TimeFunction(name='u', grid=grid, space_order=2)
    >>> describe(Eq(u.forward, u + 1))
    'Eq(u(t + dt, x), u(t, x) + 1)'
    >>> describe(Eq(u.forward, sum(u.shift(grid.dimensions[0], k) for k in range(9))))
    'Eq(u(t + dt, x), ...)'
    >>> rec = SparseTimeFunction(name='rec', grid=grid, npoint=1, nt=4)
    >>> describe(rec.interpolate(expr=u))
    'rec.interpolate(expr=u(t, x))'
    """
    if isinstance(eq, Injection):
        name = eq.interpolator.sfunction.name
        text = f"{name}.inject(field={eq.field}, expr={eq.expr})"
        return text if len(text) <= width else f"{name}.inject(field={eq.field}, ...)"
    if isinstance(eq, Interpolation):
        name = eq.interpolator.sfunction.name
        text = f"{name}.interpolate(expr={eq.expr})"
        return text if len(text) <= width else f"{name}.interpolate(...)"
    text = str(eq)
    if len(text) <= width:
        return text
    lhs = getattr(eq, 'lhs', None)
    if lhs is not None:
        return f"{type(eq).__name__}({lhs}, ...)"
    return f"a {type(eq).__name__}"


def located(eq, field, problem):
    """An :class:`AdjointError` that names the user's equation ``eq`` (see
    :func:`describe`) and ``field``."""
    name = getattr(field, 'name', field)
    return AdjointError(f"In `{describe(eq)}`, field `{name}`: {problem}")


def check_field(f, role):
    """Raise unless ``f``, in the ``role`` the message names, is a field that can be
    differentiated.

    Raises
    ------
    AdjointError
        For an expression (``model.m``), a shifted access (``u.forward``), a Constant
        or any other object.

    Examples
    --------
    >>> from devito import Function, Grid
    >>> vp = Function(name='vp', grid=Grid(shape=(4,)))
    >>> check_field(vp, 'The key')
    >>> try:
    ...     check_field(1 / vp**2, 'The key')
    ... except AdjointError as e:
    ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
    The key is an expression, not a field: use the field it is made of, `vp` (for the
    seismic Model, `model.vp`, not `model.m`); the chain rule through the expression
    is derived for you.
    """
    if isinstance(f, AbstractFunction) and f.is_Function:
        if f.function is not f:
            name = f.function.name
            raise AdjointError(f"{role} is a shifted access of `{name}`; use the field "
                               f"itself, `{name}`.")
        if isinstance(f, (Function, SparseFunction)):
            return
    if not isinstance(f, AbstractFunction) and hasattr(f, 'free_symbols'):
        fields = sorted({a.function.name for a in retrieve_functions(f, mode='unique')
                         if isinstance(a.function, (Function, SparseFunction))})
        if fields:
            names = ', '.join(f'`{n}`' for n in fields)
            raise AdjointError(f"{role} is an expression, not a field: use the field it "
                               f"is made of, {names} (for the seismic Model, "
                               "`model.vp`, not `model.m`); the chain rule through the "
                               "expression is derived for you.")
    raise AdjointError(f"{role} is a {type(f).__name__}; only Function, TimeFunction "
                       "and sparse functions can be differentiated.")


def short(obj, width=60):
    """``str(obj)``, cut to ``width`` characters."""
    text = str(obj)
    return text if len(text) <= width else text[:width - 3] + '...'
