"""Adjoint fields: the helper and the checks on the adjoints map."""

import pytest
from conftest import make_grid
from devito import Eq, TimeFunction

from devito_perforad import adjoint, adjoint_function


def _program(save=None):
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=save)
    return grid, u, [Eq(u.forward, 2 * u - u.backward + u.laplace)]


@pytest.mark.parametrize('save', [None, 7])
def test_adjoint_function_matches(save):
    grid, u, _ = _program(save)
    ub = adjoint_function(u)
    assert (type(ub), ub.grid, ub.shape, ub.time_order, ub.space_order, ub.save) == \
        (type(u), u.grid, u.shape, u.time_order, u.space_order, u.save)
    assert ub.name == 'u_b' and adjoint_function(u, name='v').name == 'v'


def test_saved_primal_with_buffered_adjoint_is_allowed():
    grid, u, primal = _program(save=7)
    ub = TimeFunction(name='ub', grid=grid, space_order=4, time_order=2)
    assert adjoint(primal, {u: ub})


def test_adjoint_functions_of_a_forward_model():
    """Every field a forward model writes (a tensor's components), and every sparse
    function it runs, from its expressions or from its Operator; no parameter."""
    from devito import (
        Function,
        Grid,
        Operator,
        SparseTimeFunction,
        TensorTimeFunction,
        VectorTimeFunction,
        div,
        grad,
    )

    from devito_perforad import adjoint_functions
    grid = Grid(shape=(6, 6))
    v = VectorTimeFunction(name='v', grid=grid, space_order=2)
    tau = TensorTimeFunction(name='tau', grid=grid, space_order=2)
    b = Function(name='b', grid=grid)
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=4)
    eqs = [Eq(v.forward, v + b * div(tau)), Eq(tau.forward, tau + grad(v.forward)),
           src.inject(tau.forward.diagonal(), expr=src)]
    for given in (eqs, Operator(eqs)):
        adjoints = adjoint_functions(given)
        assert [f.name for f in adjoints] == ['v_x', 'v_y', 'tau_xx', 'tau_xy',
                                              'tau_yy', 'src']
        assert all(fb.name == f'{f.name}_b' and fb.staggered == f.staggered
                   for f, fb in adjoints.items())
