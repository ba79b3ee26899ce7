"""passes/core_shell.py: the update bare on the core, guarded on thin shells."""

import sympy
from devito import Grid

from devito_perforad.ir.names import naming
from devito_perforad.passes.core_shell import domain_edge, split, updates
from devito_perforad.region import space_conditions


def test_core_and_shells_cover_the_guards():
    grid = Grid(shape=(16, 12))
    x, y = grid.dimensions
    terms = [(space_conditions(grid, None, (-2, 0)), x),
             (space_conditions(grid, None, (0, 1)), y)]
    with naming():
        core, shells = split(grid, terms)
        again = split(grid, terms)
    assert again[0] is core                            # one box per reach, memoised
    assert core.name == 'core0'
    assert core.spec == (('middle', 2, 0), ('middle', 0, 1))
    assert [s.name for s in shells] == ['shell0xleft', 'shell0yright']
    assert [domain_edge(c) for c, in [t for t, _ in terms]] == [(x, 'left', 2),
                                                              (y, 'right', 1)]


def test_no_edge_guard_no_split():
    grid = Grid(shape=(16,))
    x = grid.dimensions[0]
    time = grid.time_dim
    assert split(grid, [([], x)]) is None
    assert split(grid, [([sympy.Ge(time - 1, time.symbolic_min)], x)]) is None
    with naming():
        (eq,) = updates(x, 0, [([], x)], grid)
    assert eq.subdomain is None or eq.subdomain.name == 'domain'
