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
