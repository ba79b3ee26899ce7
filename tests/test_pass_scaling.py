"""passes/scaling.py: the adjoint carried scaled by the statement's pointwise factor."""

import sympy
from conftest import make_grid
from devito import Eq, Function, TimeFunction

from devito_perforad import adjoint_function
from devito_perforad.differentiate import partials, pointwise_factor
from devito_perforad.ir.access import analyse, at_offsets
from devito_perforad.levels import Levels
from devito_perforad.passes.scaling import rescale, scale_injections, scaled_seed, scales


def _damped(save_adjoint):
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=10)
    m, damp = (Function(name=n, grid=grid, space_order=4) for n in ('m', 'damp'))
    ub = adjoint_function(u) if save_adjoint else \
        TimeFunction(name='ub', grid=grid, space_order=4, time_order=2)
    rhs = (2 * m * u - (m - damp) * u.backward + u.laplace) / (m + damp)
    program = analyse([Eq(u.forward, rhs)])
    adjoints = {u: ub, m: adjoint_function(m)}
    levels = Levels.of(program, program, [partials(s, adjoints) for s in program])
    return u, ub, program, adjoints, levels, grid


def test_buffered_adjoint_is_carried_scaled():
    u, ub, program, adjoints, levels, grid = _damped(save_adjoint=False)
    found = scales(levels, adjoints, grid)
    assert found == {u: pointwise_factor(program[0])}
    K = found[u]
    seed = at_offsets(ub, time=1)
    assert sympy.simplify(scaled_seed(seed, u, found) * K - seed) == 0
    eqs = rescale(found, adjoints, levels.time, 'top', 1)
    assert len(eqs) == ub.time_order + 1                       # every slot, once
    assert all(str(1 / K) in str(eq.rhs) and 'time_M' in str(eq.lhs) for eq in eqs)


def test_saved_adjoint_is_not_scaled():
    _, _, _, adjoints, levels, grid = _damped(save_adjoint=True)
    assert scales(levels, adjoints, grid) == {}


def test_injections_into_a_scaled_adjoint_are_multiplied():
    from devito_perforad.ir.contribution import Contribution
    u, ub, program, adjoints, levels, grid = _damped(save_adjoint=False)
    K = scales(levels, adjoints, grid)[u]
    c = Contribution(u, -1, None, program[0], None, sympy.Symbol('r'), via='inject')
    other = Contribution(u, -1, None, program[0], None, sympy.Symbol('r'))
    assert scale_injections([c, other], {u: K}) == [
        Contribution(u, -1, None, program[0], None, K * sympy.Symbol('r'),
                     via='inject'), other]
