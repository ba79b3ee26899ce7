"""passes/factoring.py: a product read at many offsets computed once, into a
temporary."""

from conftest import make_grid
from devito import Eq, Function, TimeFunction

from devito_perforad.differentiate import partials
from devito_perforad.ir.access import analyse, at_offsets
from devito_perforad.ir.names import naming
from devito_perforad.levels import Levels
from devito_perforad.passes.factoring import factor
from devito_perforad.rules import RULES


def _contributions(rhs_of):
    grid = make_grid(1, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=8)
    m = Function(name='m', grid=grid, space_order=4)
    ub = TimeFunction(name='ub', grid=grid, space_order=4, time_order=2)
    program = analyse([Eq(u.forward, rhs_of(u, m))])
    adjoints = {u: ub}
    derivs = [partials(s, adjoints) for s in program]
    levels = Levels.of(program, program, derivs)
    stmt = program[0]
    cs = RULES[stmt.kind](stmt, derivs[0], at_offsets(ub, time=1), levels)
    main = [c for c in cs if c.level == levels.w[u] and c.edge is None]
    return u, grid, adjoints, main


def test_coefficient_at_every_offset_goes_into_one_temporary():
    u, grid, adjoints, main = _contributions(
        lambda u, m: 2 * u - u.backward + u.dx2 / m)
    with naming():
        temps, terms = factor(main, u, None, grid, adjoints)
    (z,) = temps
    assert z.lhs.name == 'u_z0'
    reads = {str(t) for _, e in terms for t in e.atoms(type(z.lhs))
             if t.function is z.lhs.function}
    assert len(reads) == 5             # z at the five offsets of the so=4 stencil
    assert all(not conditions for conditions, _ in terms)


def test_bare_seed_needs_no_temporary():
    u, grid, adjoints, main = _contributions(lambda u, m: 2 * u - u.backward + u.dx2)
    with naming():
        temps, terms = factor(main, u, None, grid, adjoints)
    assert temps == []
    with naming():
        assert factor(main, u, 'top', grid, adjoints)[0] == []  # at an edge: none
