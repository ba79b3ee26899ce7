"""No number that C cannot take exactly reaches the generated code.

gcc only warns on an integer literal too large for its type, then truncates it: a
derived operator holding one computes a wrong adjoint with no error. Three layers stop
it: the passes that do exact arithmetic bring their results back to floating-point
numbers C takes as written; a guard after every pass raises an ``InternalError`` that
names the pass; and in this test suite every Operator is compiled with ``-Werror``
(``conftest._compiler_warnings_are_errors``).
"""

import re
from dataclasses import replace

import numpy as np
import pytest
import sympy
from codepy import CompileError
from conftest import dot_test, make_grid
from devito import Eq, Function, Grid, Operator, TimeFunction

from devito_perforad import (
    AdjointError,
    InternalError,
    adjoint,
    adjoint_function,
    tangent,
)
from devito_perforad import derive as derive_module
from devito_perforad.differentiate import cancelled, partials, plain, through_write
from devito_perforad.ir.access import analyse
from devito_perforad.ir.symbolic import unrepresentable

BIG = sympy.Integer(2) ** 64


def test_compiler_warnings_fail_the_tests():
    """The suite's compiler hook: the literal gcc truncates with a warning fails the
    build instead."""
    grid = make_grid(1)
    f, g = Function(name='f', grid=grid), Function(name='g', grid=grid)
    with pytest.raises(CompileError):
        _ = Operator(Eq(f, BIG * 1000 * g + g * g)).cfunction


def _sls_statement(f0):
    """Devito's visco-acoustic SLS memory-variable update, the source frequency
    ``f0`` entering its coefficients as ``1/f0`` (``66.6666666666667`` for 0.015)."""
    from examples.seismic.viscoacoustic import operators

    from examples.seismic import AcquisitionGeometry, demo_model
    model = demo_model('layers-viscoacoustic', shape=(15, 13), spacing=(10.0, 8.0),
                       nbl=4, space_order=4, dtype=np.float64)
    geometry = AcquisitionGeometry(model, np.array([[50.0, 30.0]]),
                                   np.array([[50.0, 20.0]]), 0.0, 50.0, f0=f0,
                                   src_type='Ricker')
    p = TimeFunction(name='p', grid=model.grid, time_order=2, space_order=4,
                     save=geometry.nt)
    return analyse(operators.kernels['sls'](model, geometry, p, save=True)), model


@pytest.mark.parametrize('f0', [0.010, *(pytest.param(f, marks=pytest.mark.slow)
                                        for f in (0.012, 0.015))])
def test_through_write_keeps_the_primal_numbers(f0):
    """The qp partial through the saved write (the silently wrong gradient of a
    30-digit integer): no number C cannot take, no high powers of ``qp``, only the
    centre values of the stencil, and the same value as the partial it replaces."""
    program, model = _sls_statement(f0)
    for stmt in program:
        ((a, d),) = [(a, d) for a, d in partials(stmt, {model.qp})]
        new, ratio = through_write(stmt, a, stmt.write.expr)
        assert unrepresentable(new) == [] and unrepresentable(ratio) == []
        powers = [p.exp for p in new.atoms(sympy.Pow) if p.base.has(model.qp)]
        assert max(abs(e) for e in powers) <= 3
        assert not any(any(r.space) for r in analyse([Eq(stmt.write.expr, new)])[0].reads
                       if r.field.name == 'p')
        # the rewrite equals the partial once the written value is substituted back
        rng = np.random.default_rng(0)
        values = {r.expr: 35.0 if r.field is model.qp else 1.5 + rng.random()
                  for r in stmt.reads}
        rhs, d, new = (plain(e) for e in (stmt.rhs, d, new))
        values.update({s: 0.5 + rng.random() for s in rhs.free_symbols
                       | d.free_symbols | new.free_symbols if s not in values})
        written = float(rhs.xreplace(values))
        got = float(new.xreplace({stmt.write.expr: written}).xreplace(values))
        want = float(d.xreplace(values))
        assert abs(got - want) <= 1e-10 * abs(want)


def test_cancellation_refuses_an_unrepresentable_denominator():
    """Cancelling over a common denominator can multiply representable numbers into
    one that is not (``2**30 * 3**19``): the expression is then kept as it was."""
    grid = make_grid(1)
    f, g = Function(name='f', grid=grid), Function(name='g', grid=grid)
    d = g / 2 ** 30 + sympy.Rational(1, 3 ** 19)
    expr = f / d + f * g / d
    assert unrepresentable(expr) == []
    assert unrepresentable(sympy.cancel(expr)) != []
    assert unrepresentable(cancelled(expr)) == []


def _wave():
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=6)
    m = Function(name='m', grid=grid, space_order=4)
    m.data[:] = 1.0
    b = Function(name='b', grid=grid, space_order=4)
    b.data[:] = 1.0
    nested = sum((b * u.diff(d)).diff(d) for d in grid.dimensions)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * nested / m)]
    return primal, {u: adjoint_function(u), m: adjoint_function(m),
                    b: adjoint_function(b)}


def _bigger(contributions):
    return [replace(c, coefficient=BIG * c.coefficient) for c in contributions]


# each pass, made to produce a big integer, and the name the guard gives it
BROKEN = {
    'through-write': ('through_saved_writes', lambda f: lambda *a: (
        [[(acc, BIG * d) for acc, d in ds] for ds in f(*a)[0]], f(*a)[1])),
    'cancellation': ('cancel_parameter_terms', lambda f: lambda cs: _bigger(f(cs))),
    'factoring': ('_update', lambda f: lambda *a: replace(
        f(*a), terms=tuple((k, BIG * e) for k, e in f(*a).terms))),
    'assembly': ('_emit', lambda f: lambda *a: [
        e.func(e.lhs, BIG * e.rhs) if isinstance(e, Eq) else e for e in f(*a)]),
}


@pytest.mark.parametrize('stage', [s if s == 'assembly' else
                                   pytest.param(s, marks=pytest.mark.slow)
                                   for s in sorted(BROKEN)])
def test_guard_names_the_pass(stage, monkeypatch):
    """A pass that produced a number C cannot take fails here, naming the pass,
    before anything is compiled."""
    name, broken = BROKEN[stage]
    monkeypatch.setattr(derive_module, name, broken(getattr(derive_module, name)))
    primal, adjoints = _wave()
    with pytest.raises(InternalError, match=f'in the {stage} pass'):
        adjoint(primal, adjoints)


def test_guard_names_the_composition_pass(monkeypatch):
    form = derive_module.FORMS['gather']
    compose = form.compose
    monkeypatch.setattr(form, 'compose', lambda *a: _bigger(compose(*a)))
    primal, adjoints = _wave()
    with pytest.raises(InternalError, match='in the composition pass'):
        adjoint(primal, adjoints)


def test_guard_on_the_tangent(monkeypatch):
    from devito_perforad import api
    partials_of = api.partials
    monkeypatch.setattr(api, 'partials', lambda *a: [
        (acc, BIG * d) for acc, d in partials_of(*a)])
    primal, tangents = _wave()
    with pytest.raises(InternalError, match='in the tangent pass'):
        tangent(primal, tangents)


def test_a_number_in_the_primal_that_c_truncates():
    """The user's own program holds such a number: an error that names the
    equation, before anything is derived."""
    primal, adjoints = _wave()
    (u,) = [f for f in adjoints if f.is_TimeFunction]
    with pytest.raises(AdjointError, match=(
            r'In `Eq\(u\(time \+ dt, x, y\), 18446744073709551616'
            r'\*u\(time, x, y\)\)`.*Write it as a float, 1.84467440737095')):
        adjoint([Eq(u.forward, BIG * u)], {u: adjoints[u]})


def test_composition_temporaries_keep_numbers_c_takes():
    """``passes/composition`` shares a temporary between sums equal up to a constant by
    making their weights' ratios exact binary fractions: the fractions' terms stay
    exact doubles, even for ratios far from 1, and the sum is unchanged."""
    from devito_perforad.passes.composition import _normalised
    a, b, c = sympy.symbols('a b c')
    value = 66.6666666666667 * a + 0.015 * b + 1e-300 * c + sympy.Rational(1, 3) * a * b
    k, normal = _normalised(value)
    assert unrepresentable(normal) == [] and unrepresentable(k) == []
    point = {a: 0.3, b: 1.7, c: 2.9}
    assert abs(float((k * normal).subs(point)) - float(value.subs(point))) <= 1e-15 * abs(
        float(value.subs(point)))


def test_offsets_are_whole_numbers():
    """``ir/access`` and ``ir/composition`` read offsets with ``nsimplify``: only
    whole numbers of grid spacings come out, as Python integers, so no exact
    rational of theirs reaches the C."""
    from devito_perforad.ir.access import access_of
    from devito_perforad.ir.composition import _offsets
    grid = make_grid(2, 4)
    x, y = grid.dimensions
    u = TimeFunction(name='u', grid=grid, space_order=4)
    app = u.subs({x: x + 1.0 * x.spacing, y: y - 2 * y.spacing})
    assert access_of(app).space == (1, -2)
    assert _offsets(app.subs(grid.time_dim, grid.stepping_dim), grid) == (0, 1, -2)
    assert all(type(k) is int for k in _offsets(app, grid))


def _summed_derivatives(so, rng):
    """``u + 1e-3 * (...)``: half-point, one-sided and custom-weight derivatives of one
    field, summed, some under literal factors and a coefficient. Devito folds some of
    their weights in binary and prints others as decimal text."""
    grid = Grid(shape=(3 * so + 7, 2 * so + 9), extent=(1.3, 0.7), dtype=np.float64)
    x, y = grid.dimensions
    u = TimeFunction(name='u', grid=grid, space_order=so)
    c = Function(name='c', grid=grid, space_order=so)
    c.data[:] = 1 + rng.random(c.shape)
    hx = x.spacing / 2
    half = u.dx(x0=x + hx) + u.dx(x0=x - hx)
    rhs = (half + c * u.dxl + u.dyr + u.dx(weights=np.linspace(-1, 1, so + 1))
           + 0.37 * c * half + c**2 * (u.dx(x0=x + hx) - 0.3 * u.dx(x0=x - hx))
           + 0.7 * u.dy2)
    return [Eq(u.forward, u + 1e-3 * rhs)], u


@pytest.mark.parametrize('so', [4, 8, pytest.param(12, marks=pytest.mark.slow),
                                pytest.param(16, marks=pytest.mark.slow)])
def test_summed_half_point_and_one_sided_derivatives_are_exact(so, rng):
    """The adjoint multiplies by the numbers of the primal's C code
    (``devito_compat.with_compiled_numbers``): analysed from the equations alone,
    the folded weights differ in the 10th digit (a dot test at 1e-11 to 1e-8)."""
    primal, u = _summed_derivatives(so, rng)
    err = dot_test(primal, {u: adjoint_function(u)}, {u: np.array([True, False])},
                   apply=dict(time_m=0, time_M=5), rng=rng)
    assert err < 1e-13


def test_right_hand_sides_take_the_numbers_the_c_code_has(rng):
    """Every number of the statement, read back from the primal's lowered code, is
    one the primal's C code prints; those analysed from the equations are not."""
    from devito_perforad.devito_compat import with_compiled_numbers
    primal, _ = _summed_derivatives(4, rng)
    code = str(Operator(primal).ccode)
    printed = {float(n) for n in re.findall(r'\d+\.\d+(?:e-?\d+)?', code)}
    (analysed,) = analyse(primal)
    (compiled,) = with_compiled_numbers([analysed], primal)

    def numbers(stmt):
        return {abs(float(str(f))) for f in stmt.rhs.atoms(sympy.Float)}
    assert numbers(compiled) <= printed | {1.0}
    assert not numbers(analysed) <= printed | {1.0}


@pytest.mark.parametrize('so', [4, pytest.param(8, marks=pytest.mark.slow)])
def test_a_literal_factor_on_a_nested_derivative(so, rng):
    """Devito folds ``1e-3`` into the outer weights of ``(c * u.dy).dy`` in binary;
    the composed adjoint would take them as decimal text, so the statement is
    reversed flat, with the primal's numbers."""
    grid = Grid(shape=(3 * so + 7, 2 * so + 9), extent=(1.3, 0.7), dtype=np.float64)
    x, y = grid.dimensions
    u = TimeFunction(name='u', grid=grid, space_order=so)
    c = Function(name='c', grid=grid, space_order=so)
    c.data[:] = 1 + rng.random(c.shape)
    hx, hy = x.spacing / 2, y.spacing / 2
    nested = (c * u.dy(x0=y + hy)).dy(x0=y - hy)
    primal = [Eq(u.forward, u + 1e-3 * (u.dx(x0=x + hx) + u.dx(x0=x - hx) + nested))]
    err = dot_test(primal, {u: adjoint_function(u)}, {u: np.array([True, False])},
                   apply=dict(time_m=0, time_M=5), rng=rng)
    assert err < 1e-13
