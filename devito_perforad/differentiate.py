"""Differentiate locally.

For one statement ``y[p] = R(..., g[p + o], ...)`` compute the partial derivative
``dR/dg[p + o]`` for every access of an active field. The partial is an expression at
the primal point ``p``: it may read primal values (nonlinear right-hand sides) and
parameters.

``Max``/``Min`` differentiate to Heaviside steps. At a kink we take the one-sided
derivative of the branch that is not strictly selected, i.e. ``H(0) = 0``:
``d/du max(u, 0) = 1`` for ``u > 0`` and ``0`` for ``u <= 0``. ``Abs`` differentiates
to ``sign`` with ``sign(0) = 0``.

Examples
--------
>>> from devito import Grid, Function, Eq
>>> from devito_perforad.ir.access import analyse
>>> grid = Grid(shape=(5,))
>>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
>>> (stmt,) = analyse([Eq(w, u * u.shift(grid.dimensions[0],
...                                      grid.dimensions[0].spacing))])
>>> sorted(str(d) for _, d in partials(stmt, {u}))
['u(x + h_x)', 'u(x)']
"""

import sympy
from devito import TimeFunction
from devito.finite_differences.differentiable import SafeInv
from devito.symbolics import retrieve_functions
from devito.types import SparseFunction
from devito.types.basic import AbstractFunction

from .ir.access import access_of, at_offsets
from .ir.symbolic import SafeInverse, Select, unrepresentable

__all__ = ['partials', 'partials_of', 'linearised', 'plain', 'through_write',
           'pointwise_factor', 'cancelled']


def plain(expr):
    """Rebuild a devito expression tree with plain SymPy operators.

    Devito's ``Differentiable`` operators give ``diff`` a finite-difference meaning;
    symbolic differentiation needs SymPy's. Field applications are kept as they are.
    Floats are re-read from the decimal text Devito prints into the primal's C code,
    so that the adjoint multiplies by exactly the weights the primal uses.
    """
    if isinstance(expr, sympy.Float):
        return sympy.Float(str(expr), 17)
    if isinstance(expr, AbstractFunction) or not expr.args or expr.is_Atom:
        return expr
    args = [plain(a) for a in expr.args]
    for kind in (sympy.Add, sympy.Mul, sympy.Pow):
        if isinstance(expr, kind):
            return kind(*args)
    if isinstance(expr, SafeInv):
        return SafeInverse(*args)
    func = getattr(type(expr), '__sympy_class__', None) or expr.func
    return func(*args)


def _subgradients(expr):
    """Replace the distributions SymPy produces by C-printable subgradients."""
    def heaviside(arg, *_):
        return Select(sympy.Gt(arg, 0), sympy.S.One, sympy.S.Zero)

    def sign(arg):
        return (Select(sympy.Gt(arg, 0), sympy.S.One, sympy.S.Zero)
                - Select(sympy.Lt(arg, 0), sympy.S.One, sympy.S.Zero))

    return expr.replace(sympy.DiracDelta, lambda *a: sympy.S.Zero) \
               .replace(sympy.Heaviside, heaviside) \
               .replace(sympy.sign, sign)


def partials(statement, active):
    """Partial derivatives of ``statement``'s right-hand side w.r.t. its active reads.

    Parameters
    ----------
    statement : Statement
    active : container of fields
        Fields whose accesses are differentiated; all others are constants.

    Returns
    -------
    list of (Access, sympy.Expr)
        One entry per active access with a non-zero partial, evaluated at the primal
        point.
    """
    return partials_of(statement.rhs, statement.reads, active)


def partials_of(expr, reads, active, symbols=()):
    """Partial derivatives of ``expr`` w.r.t. its active ``reads`` (and ``symbols``).

    Parameters
    ----------
    expr : sympy.Expr
    reads : list of Access
        Every field access of ``expr``.
    active : container of fields
    symbols : tuple of sympy.Symbol, optional
        Plain symbols of ``expr`` to differentiate by as well.

    Returns
    -------
    list of (Access, sympy.Expr), or with ``symbols``, that and a list of the
    partials by each symbol.
    """
    targets = [a for a in reads if a.field in active]
    if not targets and not symbols:
        return []
    # Every field access becomes a plain symbol: devito fields define their own
    # (finite-difference) derivatives, which symbolic differentiation must not call.
    dummies = {a.expr: sympy.Dummy(f'{a.field.name}', real=True) for a in reads}
    back = {s: e for e, s in dummies.items()}
    rhs = plain(expr).xreplace(dummies)
    out = []
    for a in targets:
        d = sympy.diff(rhs, dummies[a.expr])
        d = _subgradients(d).xreplace(back)
        if d != 0:
            out.append((a, d))
    if not symbols:
        return out
    return out, [_subgradients(sympy.diff(rhs, s)).xreplace(back) for s in symbols]


def linearised(statement, partials, tangents):
    """``sum_a dR/da * ad``: the linearised right-hand side of ``statement``, each
    tangent ``ad`` read at the offset the primal reads its field (``partials`` from
    :func:`partials`, ``tangents`` the map from field to tangent). A sparse function's
    tangent is read at the primal's point (its own point dimension is another)."""
    return sum((d * _tangent_read(a, tangents[a.field]) for a, d in partials),
               sympy.S.Zero)


def _tangent_read(a, tangent):
    if isinstance(a.field, SparseFunction):
        return tangent.subs(dict(zip(tangent.indices, a.expr.indices, strict=True)))
    return at_offsets(tangent, time=a.time, space=a.space)


def through_write(statement, access, written):
    """Rewrite a parameter's partial through the value the statement wrote.

    A time-stepping stencil often has the form ``y = b + a(h) * L``: ``L`` is the
    stencil's off-centre sum and ``a`` a pointwise coefficient of the parameter ``h``
    (e.g. ``dt**2 / m`` in the wave equation). Then ``dR/dh = db/dh + (a'/a) a L`` and,
    when the written level ``y`` is saved, ``a L = y - b``: the partial no longer reads
    the whole stencil of the primal field, only its centre values. This is the
    discrete form of the hand-written gradient's ``u * v.dt2``.

    ``a`` is found as written in the primal: the factors of ``h`` that multiply the
    off-centre values, standing in the right-hand side as factors of one product.
    Replaced there by a symbol ``A``, ``b = B0 + A B1`` (``B1`` the centre of the
    stencil), and ``dR/dh = B0' + A B1' + (a'/a) (y - B0)``: the stencil's centre
    cancels symbolically, with the primal's own floating-point weights, and
    ``a'/a`` is the logarithmic derivative of the primal's factors. No rational
    arithmetic reaches the result.

    Parameters
    ----------
    statement : Statement
        A stencil statement writing a saved level.
    access : Access
        The read of the time-invariant parameter ``h``, at the iteration point.
    written : sympy.Expr
        The value the level holds when the adjoint runs: the write itself, minus what
        later statements incremented into it.

    Returns
    -------
    (sympy.Expr, sympy.Expr) or None
        The rewritten partial and ``a'/a``, or ``None`` where ``R`` has no such form.

    Examples
    --------
    >>> from devito import Grid, Function, TimeFunction, Eq
    >>> from devito_perforad.ir.access import analyse
    >>> grid = Grid(shape=(5,))
    >>> u = TimeFunction(name="u", grid=grid, space_order=2, save=4)
    >>> m = Function(name='m', grid=grid)
    >>> x = grid.dimensions[0]
    >>> neighbours = u.shift(x, x.spacing) + u.shift(x, -x.spacing)
    >>> (stmt,) = analyse([Eq(u.forward, 2*u - u.backward + neighbours/m)])
    >>> [(a, d)] = partials(stmt, {m})
    >>> d
    -(u(time, x - h_x) + u(time, x + h_x))/m(x)**2
    >>> new, ratio = through_write(stmt, a, stmt.write.expr)
    >>> new, ratio
    (-(-2*u(time, x) + u(time - dt, x) + u(time + dt, x))/m(x), -1/m(x))
    """
    offcentre = [a for a in statement.reads
                 if any(a.space) and a.time is not None]
    if not offcentre or any(access.space) or access.time is not None:
        return None
    symbols = {a.expr: sympy.Dummy(a.field.name, real=True) for a in statement.reads}
    back = {s: e for e, s in symbols.items()}
    rhs = plain(statement.rhs).xreplace(symbols)
    h, off = symbols[access.expr], [symbols[a.expr] for a in offcentre]
    a = sympy.diff(rhs, off[0]).as_independent(h, as_Add=False)[1]
    if not a.has(h):
        return None  # the parameter does not multiply the stencil
    A = sympy.Dummy('a')
    lifted = _lifted(rhs, a, A)
    for r in off:
        c = sympy.diff(lifted, r)
        g = c / A
        if c != 0 and (not c.has(A) or g.has(A) or g.has(h) or g.has(*off)):
            return None  # not a(h) * g: g free of h and of the stencil's values
    base = lifted.xreplace({r: 0 for r in off})
    centre = sympy.diff(base, A)
    if centre.has(A):
        return None
    rest = base.xreplace({A: 0})
    ratio = _log_derivative(a, h)
    y = sympy.Dummy('y')
    rewritten = (sympy.diff(rest, h) + a * sympy.diff(centre, h)
                 + ratio * (y - rest))
    back[y] = written
    return (_subgradients(rewritten.xreplace({A: a})).xreplace(back),
            ratio.xreplace(back))


def _lifted(expr, a, symbol):
    """``expr`` with ``a``'s factors, where they stand together in one product, as
    ``symbol``."""
    factors = sympy.Mul.make_args(a)

    def visit(e):
        if not e.args or isinstance(e, AbstractFunction):
            return e
        args = [visit(x) for x in e.args]
        e = e.func(*args) if args != list(e.args) else e
        if isinstance(e, sympy.Mul):
            rest = list(e.args)
            for f in factors:
                if f not in rest:
                    return e
                rest.remove(f)
            return symbol * sympy.Mul(*rest)
        return e
    return visit(expr)


def _log_derivative(a, h):
    """``a'/a`` by ``h``, factor by factor: ``sum_i e_i f_i'/f_i`` for
    ``a = prod_i f_i**e_i``, in the factors' own form."""
    out = sympy.S.Zero
    for f in sympy.Mul.make_args(a):
        if not f.has(h):
            continue
        base, e = f.as_base_exp()
        if e.has(h):
            base, e = f, sympy.S.One
        out += e * sympy.diff(base, h) / base
    return out


def pointwise_factor(statement):
    """The factor ``K = 1/D`` of a right-hand side ``K * R``, or ``None``.

    ``D`` reads time-invariant fields at the iteration point only, so ``K`` is a
    pointwise coefficient; as a reciprocal it is non-zero wherever the primal is
    finite. Built from the same expression tree as :func:`partials`, so the factor
    cancels symbolically against the partials' own.

    Examples
    --------
    >>> from devito import Grid, Function, TimeFunction, Eq
    >>> from devito_perforad.ir.access import analyse
    >>> grid = Grid(shape=(5,))
    >>> u = TimeFunction(name='u', grid=grid, space_order=2)
    >>> m = Function(name='m', grid=grid)
    >>> (stmt,) = analyse([Eq(u.forward, (2*u - u.backward + u.dx2) / (m + 1))])
    >>> pointwise_factor(stmt)
    1/(m(x) + 1)
    """
    factors = [f for f in sympy.Mul.make_args(plain(statement.rhs))
               if f.is_Pow and f.exp.is_negative and _pointwise(f.base)]
    if not factors:
        return None
    return sympy.Mul(*factors)


def _pointwise(expr):
    apps = [a for a in expr.atoms(AbstractFunction)]
    return bool(apps) and all(not isinstance(a.function, TimeFunction)
                              and not any(access_of(a).space) for a in apps)


def cancelled(expr, limit=400):
    """``expr`` as one cancelled rational function, where it reads only the iteration
    point and that is cheaper.

    A parameter's partial through a saved write, times the scaled adjoint seed
    ``yb_s / K``, is a rational function of values at the iteration point in which
    most terms cancel: for the damped wave equation the ``vp`` gradient's
    ``K (2 u[t] - u[t-1] - u[t+1]) / dt**2 * (-2 / vp**3) * yb_s / K`` becomes
    ``2 (u[t+1] - 2 u[t] + u[t-1]) yb_s / (dt**2 vp**3)``, the hand-written
    gradient's ``u * v.dt2`` with the chain rule to ``vp``. Field values are
    treated as symbols; ``sympy.cancel`` then ``sympy.factor`` do the algebra, which
    is exact (the generated code rounds differently). Expressions with branches
    (``Select``, ``Max``, ``Min``), reads off the iteration point, more than ``limit``
    operations, or that do not get shorter are returned unchanged.

    Examples
    --------
    >>> from devito import Grid, Function
    >>> grid = Grid(shape=(5,))
    >>> f, g = Function(name='f', grid=grid), Function(name='g', grid=grid)
    >>> cancelled((f / (g + 1) + f * g / (g + 1)) * g)
    f(x)*g(x)
    """
    if expr.has(Select, sympy.Piecewise, sympy.Max, sympy.Min, sympy.Abs,
                sympy.Heaviside, sympy.sign):
        return expr
    apps = retrieve_functions(expr, mode='unique')
    if not apps or any(any(access_of(a).space) for a in apps):
        return expr
    before = sympy.count_ops(expr)
    if before > limit:
        return expr
    # plain symbols named in a fixed order: sympy orders a polynomial's generators by
    # name, so the result does not depend on the process (hash seeds, Dummy counters)
    symbols = {a: sympy.Symbol(f'_v{i:04d}') for i, a in
               enumerate(sorted(apps, key=lambda a: (a.function.name, str(a))))}
    back = {s: a for a, s in symbols.items()}
    new = sympy.factor(sympy.cancel(expr.xreplace(symbols))).xreplace(back)
    if unrepresentable(new):
        return expr  # a common denominator past what C takes exactly
    return new if sympy.count_ops(new) < before else expr
