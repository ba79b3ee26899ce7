"""passes/cancellation.py: a parameter's gradient term cancelled as a rational
function."""

import sympy
from conftest import make_grid
from devito import Eq, Function, TimeFunction

from devito_perforad.ir.access import analyse
from devito_perforad.ir.contribution import Contribution
from devito_perforad.passes.cancellation import cancel_parameter_terms


def test_parameter_terms_are_cancelled_others_kept():
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, save=4)
    f, g = (Function(name=n, grid=grid) for n in 'fg')
    (stmt,) = analyse([Eq(u.forward, u * f)])
    long = (f / (g + 1) + f * g / (g + 1)) * g
    to_param = Contribution(g, None, None, stmt, None, long)
    to_field = Contribution(u, 0, None, stmt, None, long)
    new = cancel_parameter_terms([to_param, to_field])
    assert str(new[0].coefficient) == 'f(x)*g(x)'
    assert sympy.count_ops(new[0].coefficient) < sympy.count_ops(long)
    assert new[1] is to_field
