"""Stage 1: access analysis, and the indexing it refuses."""

import pytest
from conftest import make_grid
from devito import Eq, Function, TimeFunction

from devito_perforad import AdjointError, adjoint, adjoint_function
from devito_perforad.ir.access import access_of, analyse, at_offsets


def test_offsets_of_a_stencil():
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2)
    (stmt,) = analyse([Eq(u.forward, 2 * u - u.backward + u.dxdy)])
    assert (stmt.write.field, stmt.write.time, stmt.write.space) == (u, 1, (0, 0))
    offsets = {(a.time, a.space) for a in stmt.reads}
    assert (-1, (0, 0)) in offsets and (0, (2, -2)) in offsets
    assert all(a.field is u for a in stmt.reads)


def test_nested_lists_and_increment():
    grid = make_grid(1)
    u, w = (Function(name=n, grid=grid) for n in 'uw')
    from devito import Inc
    stmts = analyse([[Eq(w, u)], [[Inc(w, 2 * u)]]])
    assert [s.increment for s in stmts] == [False, True]


def test_at_offsets_round_trips():
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, save=5)
    a = access_of(at_offsets(u, time=-1, space=(2, -3)))
    assert (a.time, a.space) == (-1, (2, -3))


@pytest.mark.parametrize('index', ['scaled', 'indirect', 'quadratic'])
def test_non_affine_indexing_is_refused(index):
    grid = make_grid(1, 2)
    x = grid.dimensions[0]
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    idx = Function(name='idx', grid=grid, dtype=int)
    arg = {'scaled': 2 * x, 'indirect': idx, 'quadratic': x ** 2}[index]
    with pytest.raises(AdjointError, match=r"In `Eq\(w\(x\).*field `u`.*not `x` plus"):
        adjoint([Eq(w, u.subs(x, arg))], {u: adjoint_function(u), w: adjoint_function(w)})


def test_indexed_notation_is_refused():
    grid = make_grid(1, 2)
    x = grid.dimensions[0]
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    with pytest.raises(AdjointError, match="indexed notation"):
        analyse([Eq(w, u.indexed[x + 1])])


def test_sparse_operations_are_analysed():
    from devito import SparseTimeFunction
    grid = make_grid(2, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2)
    m = Function(name='m', grid=grid)
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=4)
    rec = SparseTimeFunction(name='rec', grid=grid, npoint=2, nt=4)
    inject, interpolate = analyse([src.inject(field=u.forward, expr=src / m),
                                   rec.interpolate(expr=u)])
    assert (inject.kind, inject.write.field, inject.write.time) == ('inject', u, 1)
    assert {a.field for a in inject.reads} == {src, m} and inject.increment
    assert (interpolate.kind, interpolate.write.field) == ('interpolate', rec)
    assert [a.field for a in interpolate.reads] == [u] and not interpolate.increment


def test_sparse_function_inside_dense_equation_is_refused():
    from devito import SparseFunction
    grid = make_grid(1, 2)
    u = Function(name='u', grid=grid)
    s = SparseFunction(name='s', grid=grid, npoint=1)
    with pytest.raises(AdjointError, match="field `s`.*inject"):
        analyse([Eq(u, 2 * s)])
