"""Stage 2: local partial derivatives."""

import numpy as np
import sympy
from conftest import make_grid
from devito import Eq, Function, Operator

from devito_perforad.access import analyse
from devito_perforad.differentiate import partials, plain
from devito_perforad.region import Select


def _partials(eq, active):
    (stmt,) = analyse([eq])
    return {a.expr: d for a, d in partials(stmt, active)}


def test_constants_are_not_differentiated():
    grid = make_grid(1, 2)
    u, c, w = (Function(name=n, grid=grid, space_order=2) for n in 'ucw')
    d = _partials(Eq(w, c * u), {u})
    assert set(d) == {u} and d[u] == c


def test_product_rule_and_repeated_access():
    grid = make_grid(1, 2)
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    d = _partials(Eq(w, u ** 3 + 2 * u), {u})
    assert sympy.simplify(d[u] - (3 * u ** 2 + 2)) == 0


def test_max_min_subgradients():
    """d max(u, 0)/du = 1 for u > 0 and 0 for u <= 0 (H(0) = 0), as C ternaries."""
    grid = make_grid(1, 2)
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    d = _partials(Eq(w, sympy.Max(u, 0) + sympy.Min(u, 0) * 3), {u})
    assert d[u].has(Select) and not d[u].has(sympy.Heaviside)
    ub = Function(name='ub', grid=grid)
    Operator(Eq(ub, d[u]))  # prints as C
    for value, expected in [(2.0, 1.0), (-2.0, 3.0)]:
        u.data[:] = value
        Operator(Eq(ub, d[u]))()
        assert np.allclose(ub.data, expected)


def test_plain_rebuilds_sympy_operators():
    grid = make_grid(1, 2)
    u = Function(name='u', grid=grid, space_order=2)
    expr = plain((2 * u.dx).evaluate)
    assert type(expr) in (sympy.Add, sympy.Mul)
    assert all(type(a) in (sympy.Add, sympy.Mul, sympy.Pow) for a in expr.args
               if a.is_Add or a.is_Mul or a.is_Pow)
