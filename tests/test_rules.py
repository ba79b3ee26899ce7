"""The transpose rules: offset reversal turns scatters into gathers."""

from conftest import make_grid
from devito import Eq, Function, TimeFunction

from devito_perforad import adjoint, adjoint_function
from devito_perforad.differentiate import partials
from devito_perforad.ir.access import access_of, analyse
from devito_perforad.ir.symbolic import shift
from devito_perforad.levels import Levels
from devito_perforad.rules import RULES


def test_three_point_stencil_gathers():
    """w[i] = a u[i-1] + b u[i] + c u[i+1]
    ->  ub[i] += a wb[i+1] + b wb[i] + c wb[i-1]."""
    grid = make_grid(1, 2)
    x = grid.dimensions[0]
    h = x.spacing
    u, w = (Function(name=n, grid=grid, space_order=2) for n in 'uw')
    wb = adjoint_function(w)
    (stmt,) = analyse([Eq(w, 2 * u.shift(x, -h) + 3 * u + 5 * u.shift(x, h))])
    gathered = {}
    for term in RULES[stmt.kind](stmt, partials(stmt, {u}), wb, Levels.of([stmt])):
        (seed,) = term.gathered.atoms(type(wb))
        gathered[access_of(seed).space] = term
    # the term for u[i-1] reads the seed at i+1 and so on
    assert str(gathered[(1,)].gathered) == '2*w_b(x + h_x)'
    assert str(gathered[(0,)].gathered) == '3*w_b(x)'
    assert str(gathered[(-1,)].gathered) == '5*w_b(x - h_x)'


def test_shift_moves_time_and_space():
    grid = make_grid(2, 2)
    x, y = grid.dimensions
    u = TimeFunction(name='u', grid=grid, space_order=2, save=4)
    a = access_of(shift(u.forward, time=-2, space={x: 1, y: -1}))
    assert (a.time, a.space) == (-1, (1, -1))


def test_adjoint_of_time_loop_is_backward():
    """The derived adjoint of a forward time loop writes an earlier level."""
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
    ub = adjoint_function(u)
    eqs = adjoint([Eq(u.forward, 2 * u - u.backward + u.dx2)], {u: ub})
    # the loop's update (not the seed set aside before the loop and added back after
    # the update of the first counter)
    main, = [eq for eq in eqs if eq.lhs.function is ub and not eq.implicit_dims
             and 'time_M' not in str(eq.lhs)]
    assert access_of(main.lhs).time == -1
    assert {access_of(r).time for r in main.rhs.atoms(type(main.lhs))} >= {0, 1}
