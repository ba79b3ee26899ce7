"""Pass: reverse nested derivatives as compositions, not as one flat stencil.

A statement ``y = R(..., N, ...)`` with a nested derivative
``N = D(E) = sum_k w_k E(x + o_k)`` and ``E = sum_a d_a g(x + o_a)`` (e.g.
``(b*u.dx).dx``: ``E = b*u.dx``) reads ``g`` at ``x + o_k + o_a`` with the
coefficient ``dR/dN(x) * w_k * d_a(x + o_k)``. Offset reversal of that flat stencil
gathers

    gb(q) += sum_a d_a(q - o_a) * sum_k w_k * (dR/dN * yb)(q - o_a - o_k)

which is the reversed composition: the outer derivative's transpose applied to the
pointwise product ``dR/dN * yb``, multiplied by the inner partials, then the inner
derivative's transpose. The flat form reads the coefficients at every pair of offsets
(a product per offset, materialised or recomputed); this form computes the product
once per point (:mod:`~devito_perforad.passes.factoring` puts it in a temporary,
summed over every statement that applies the same composition), and the two gathers
are each as wide as one primal derivative. Devito's compiler then evaluates the inner
gather once per point, over the domain and the halo it reads, as it does the
primal's nested derivative.

The pass replaces a statement's flat contributions to a field or parameter read inside
a nested derivative by the composed ones, in the updates at every counter and in
those pinned at an edge of the run, where every partial is finite at every step or
the step is always in the run (a 0/1 factor on the counter cuts a step outside it);
elsewhere (time-free programs, the scatter form, a parameter whose partial went
through the saved write) the flat contributions stay.
:func:`composed_gathers` writes them (:mod:`~devito_perforad.passes.factoring` hands
them over).
"""

from collections import defaultdict
from dataclasses import replace

import sympy
from devito import Eq, Function, SparseFunction, TimeFunction
from devito.symbolics import retrieve_functions

from ..differentiate import partials_of
from ..ir.access import access_of
from ..ir.contribution import Chain
from ..ir.names import current
from ..ir.symbolic import Select, shift, unrepresentable
from ..region import covers_domain

__all__ = ['compose', 'composed_gathers']


def compose(statement, contributions, seed, levels, active, transpose):
    """``contributions`` of ``statement``, with those it makes through its nested
    derivatives composed.

    Parameters
    ----------
    statement : Statement
    contributions : list of Contribution
        The statement's flat contributions (its transpose rule's).
    seed : sympy.Expr
        The adjoint of the statement's left-hand side at the primal point.
    levels : Levels
    active : container of fields
    transpose : callable
        The stencil rule (:func:`devito_perforad.rules.stencil.transpose`).

    Returns
    -------
    list of Contribution
    """
    if not statement.compositions:
        return contributions
    targets = {a.field for c in statement.compositions for a in _reads(c.inner)
               if a.field in active and not isinstance(a.field, SparseFunction)}
    if not targets:
        return contributions
    symbols = tuple(c.symbol for c in statement.compositions)
    flat = {c.symbol: c.flat() for c in statement.compositions}
    outside, by_symbol = partials_of(statement.lifted, _reads(statement.lifted), targets,
                                     symbols)
    outside = [(a, d.xreplace(flat)) for a, d in outside]
    composed = []
    for c, dn in zip(statement.compositions, by_symbol, strict=True):
        dn = dn.xreplace(flat)
        if dn == 0:
            continue
        pointwise = dn * seed
        grid = statement.write.field.grid
        gathered = sympy.Add(*[w * shift(pointwise, space=_along([-k for k in o], grid))
                               for w, o in c.outer])
        transposed = c.transposed if c.transposable and c.terms else None
        for i, term in enumerate(c.terms or (None,)):
            expr = c.inner if term is None else term.expr
            for a, d in partials_of(expr, _reads(expr), targets):
                chain = Chain((c.outer, c.inner), (id(statement), c.symbol), pointwise,
                              d, transposed, i, term)
                composed += [replace(x, chain=chain, partial=d * dn)
                             for x in transpose(statement, [(a, d)], gathered, levels)]
    composed += transpose(statement, outside, seed, levels)

    keys = {x.key for x in composed}
    keys = {k for k in keys if all(x.finite_at_every_step or not x.conditions
                                   for x in composed if x.key == k)}
    return ([x for x in contributions if x.key not in keys]
            + [x for x in composed if x.key in keys])


def _reads(expr):
    apps = retrieve_functions(expr, mode='unique')
    return tuple(access_of(a) for a in apps if not getattr(a, 'is_Dimension', False))


def composed_gathers(contributions, target, grid, adjoints, edge=None):
    """The terms of one adjoint update's composed contributions, and the temporaries
    they read.

    Contributions through terms with the same outer derivative, the same inner
    derivative and the same coefficient up to a constant factor (from any statement,
    step or time level: the SLS model's two statements, the Kelvin-Voigt model's
    ``b*p.dx`` and ``b*p.dt.dx``) make one term ``D^T(B * Dout^T(z))``, written with
    Devito's derivatives, ``z`` the sum of their seeds' products with their constant
    factors and counter conditions; Devito's compiler evaluates its inner gather once
    per point (CIRE). The others (a parameter's, or where Devito's transposed
    derivatives do not reproduce the reversal) are written out: ``d(q - o) *
    sum_k w_k z(q - o - o_k)`` per read, one ``z`` per composition and step.

    Parameters
    ----------
    contributions : list of Contribution
        With ``chain`` set, and finite at every step or without counter conditions.
    target : devito.types.AbstractFunction
    grid : devito.Grid
    adjoints : dict
    edge : {None, 'top', 'bottom'}
        Where the update runs. Pinned at an edge of the run, every sum of seeds goes
        into a temporary (pinned with it): the seeds' time levels are fixed there, and
        a Devito derivative must not read them.

    Returns
    -------
    (list of devito.Eq, list of (list, sympy.Expr))
        The temporaries' equations, made in the loop before the update, and the
        terms as ``(conditions, expr)`` pairs. Time-invariant coefficient fields go
        into the derivation's registry (``current().get(('invariants',))``), made
        once before the loop.
    """
    nested, explicit = defaultdict(list), defaultdict(list)
    for c in contributions:
        term = c.chain.term
        if (c.chain.transposed is not None and term is not None
                and c.access.field is term.derivative.expr.function):
            constant, coefficient = _constant(shift(term.coefficient, time=c.step))
            nested[(c.chain.outer, _shape(term.derivative), coefficient,
                    c.statement.subdomain)].append((c, constant))
        else:
            explicit[(c.chain.key, c.step, c.conditions,
                      c.statement.subdomain)].append((c, sympy.S.One))
    eqs, terms = [], []
    for (_, _, coefficient, _), group in nested.items():
        # one part per term and step: the terms' constants differ
        z, factor = _seeds(group, target, grid, adjoints, eqs,
                           lambda c: (c.chain.source, c.chain.index, c.step), edge)
        first = group[0][0]
        term = replace(first.chain.term, coefficient=coefficient)
        terms.append(([], factor * term.transposed(first.chain.transposed(z))))
    for group in explicit.values():
        # one part per composition and step: the partials carry the terms
        z, factor = _seeds(group, target, grid, adjoints, eqs,
                           lambda c: (c.chain.source, c.step), edge)
        reads = {(c.chain.index, c.access.expr, c.shift): c for c, _ in group}
        for c in reads.values():
            gathered = sympy.Add(*[w * shift(z, space=_along(tuple(
                k - o for k, o in zip(c.shift, offsets, strict=True)), grid))
                for w, offsets in c.chain.outer])
            partial = shift(c.chain.partial, time=c.step, space=_along(c.shift, grid))
            terms.append(([], factor * partial * gathered))
    return eqs, terms


def _along(offsets, grid):
    return dict(zip(grid.dimensions, offsets, strict=True))


def _constant(expr):
    """``(k, rest)`` with ``expr == k * rest`` and ``k`` free of fields."""
    return expr.as_independent(*retrieve_functions(expr), as_Add=False)


def _shape(derivative):
    """What a derivative computes, whatever field it is applied to."""
    return (type(derivative), derivative.dims, derivative.deriv_order,
            derivative.fd_order, tuple(sorted(derivative.x0.items(), key=str)),
            derivative.side, derivative.transpose)


def _seeds(group, target, grid, adjoints, eqs, part, edge=None):
    """What the outer transpose gathers from, for contributions ``(c, constant)``
    whose distinct seed products are keyed by ``part(c)``: ``(z, factor)`` with the
    term multiplied by ``factor``.

    A single product of a time-invariant coefficient and a seed, from a statement on
    the whole domain, is read in place, the coefficient in a field computed once
    before the loop; any other sum goes into a temporary ``z``, computed where the
    primal ran (one per derivation and value: updates reading the same share it, and
    its equation is appended to ``eqs`` once per update).
    """
    parts = {}
    for c, constant in group:
        select = sympy.S.One
        if c.conditions:  # then the partials are finite at every step
            select = Select(sympy.And(*c.conditions), sympy.S.One, sympy.S.Zero)
        parts[part(c)] = (
            constant * select, shift(c.chain.pointwise, time=c.step))
    first = group[0][0]
    reach = max(abs(k - o) for c, _ in group for _, offsets in first.chain.outer
                for k, o in zip(c.shift, offsets, strict=True))
    order = max(reach, target.space_order, 1)
    if edge is None and len(parts) == 1 and covers_domain(grid,
                                                           first.statement.subdomain):
        ((factor, pointwise),) = parts.values()
        product = _invariant_product(pointwise, adjoints, grid, target, order)
        if product is not None:
            return product, factor
    value = sympy.Add(*[k * p for k, p in parts.values()])
    z, factor, eq = temporary(value, target, grid, order, first.statement.subdomain, edge)
    eqs.append(eq)
    return z, factor


def temporary(value, target, grid, order, subdomain, edge=None):
    """A temporary ``z`` holding a sum of seed products, shared by value: updates (and
    passes) gathering from the same sum up to a constant read one array.

    Returns
    -------
    (devito.Function, sympy.Number, devito.Eq)
        ``z``, the constant ``k`` with ``value == k * z``, and ``z``'s equation
        (computed where the primal ran: its halo stays zero).
    """
    k, normal = _normalised(value)
    names = current()
    order = max(order, target.space_order, 1)
    z, k0 = names.memo(('seed sums', normal, edge, subdomain, order), lambda: (Function(
        name=names.name(f'{target.name}_z', 'temporary'), grid=grid, space_order=order,
        dtype=target.dtype), k))
    return z, k / k0, Eq(z, k0 * normal, subdomain=subdomain)


def _normalised(value):
    """``(k, v)`` with ``value == k * v``, ``k`` a number chosen so that sums equal up
    to a constant factor have equal ``v`` (its floating-point ratios made exact
    binary fractions, so that ``1.0`` and ``1`` agree, where the fraction's terms are
    doubles C takes exactly; a ratio beyond, below about ``1e-292``, stays a float)."""
    terms = [t.as_coeff_Mul() for t in sympy.Add.make_args(sympy.expand(value))]
    k = min(terms, key=lambda t: sympy.default_sort_key(t[1]))[0]
    return k, sympy.Add(*[_binary(c / k) * m for c, m in terms])


def _binary(r):
    """The float ``r`` as the exact binary fraction it holds, where C takes that
    fraction's terms exactly."""
    if not r.is_Float:
        return r
    exact = sympy.Rational(float(r))
    return r if unrepresentable(exact) else exact


def _invariant_product(pointwise, adjoints, grid, target, order):
    """``pointwise``, the seed times a time-invariant coefficient, as a coefficient
    field times the seed, the field registered to be computed once before the loop
    (``None`` where the coefficient reads a time-varying field or off the point)."""
    seeds = {adjoints[f] for f in adjoints}
    apps = [a for a in retrieve_functions(pointwise) if a.function in seeds]
    if len(apps) != 1:
        return None
    coefficient = pointwise.xreplace({apps[0]: sympy.S.One})
    if coefficient.has(apps[0].function) or any(
            isinstance(a.function, TimeFunction) or any(access_of(a).space)
            for a in retrieve_functions(coefficient)):
        return None
    names = current()
    field = names.memo(('invariant', coefficient), lambda: Function(
        name=names.name(f'{target.name}_c', 'temporary'), grid=grid, space_order=order,
        dtype=target.dtype))
    names.memo(('invariants',), dict).setdefault(field, Eq(field, coefficient))
    return field * apps[0]
