"""passes/time_shift.py: a gradient term's time offsets moved onto the adjoint."""

from conftest import make_grid
from devito import Eq, Function, TimeFunction
from devito.symbolics import retrieve_functions

from devito_perforad import adjoint_function
from devito_perforad.differentiate import partials
from devito_perforad.ir.access import access_of, analyse, at_offsets
from devito_perforad.ir.contribution import Contribution
from devito_perforad.levels import Levels
from devito_perforad.passes.time_shift import shift_parameter_terms, time_reversed


def _setup(save_adjoint=False):
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2, save=8)
    m = Function(name='m', grid=grid, space_order=2)
    ub = adjoint_function(u) if save_adjoint else \
        TimeFunction(name='ub', grid=grid, space_order=2, time_order=2)
    program = analyse([Eq(u.forward, 2 * u - u.backward + u.dx2 / m)])
    adjoints = {u: ub, m: adjoint_function(m)}
    levels = Levels.of(program, program, [partials(s, adjoints) for s in program])
    return u, m, ub, program, adjoints, levels


def _levels_of(expr, f):
    return {access_of(a).time for a in retrieve_functions(expr) if a.function is f}


def test_wave_gradient_reads_one_level_of_the_saved_field():
    u, m, ub, program, adjoints, levels = _setup()
    w, time = levels.w[u], levels.time
    # (u[t+1] - 2 u[t] + u[t-1]) ub[t+1]: three levels of u
    expr = sum(c * at_offsets(u, time=k) * at_offsets(ub, time=1)
               for c, k in ((1, 1), (-2, 0), (1, -1)))
    loop, top, bottom = time_reversed(expr, ub, w, levels.low[u] < w, time)
    assert set().union(*(_levels_of(e, u) for _, e in loop)) == {0}
    assert len(top) == 1 and len(bottom) == 1       # the steps the shift moves out


def test_saved_adjoint_is_left_alone():
    u, m, ub, program, adjoints, levels = _setup(save_adjoint=True)
    expr = at_offsets(u, time=1) * at_offsets(ub, time=1)
    assert time_reversed(expr, ub, levels.w[u], False, levels.time) is None


def test_pass_moves_parameter_terms_only():
    u, m, ub, program, adjoints, levels = _setup()
    stmt = program[0]
    moved = Contribution(m, None, None, stmt, None,
                         at_offsets(u, time=1) * at_offsets(ub, time=1), 0)
    kept = Contribution(u, levels.w[u], None, stmt, None, at_offsets(ub, time=1), 0)
    updates = {(m, None, None): [moved], (u, levels.w[u], None): [kept]}
    new, early, top, bottom = shift_parameter_terms(updates, adjoints, levels)
    assert new == {(m, None, None): [], (u, levels.w[u], None): [kept]}
    assert list(early) == [m] and len(early[m]) == 1
    assert [h for h, _ in top] == [adjoints[m]] and bottom == []
