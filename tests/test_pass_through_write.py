"""passes/through_write.py: parameter partials through the saved write."""

from conftest import make_grid
from devito import Eq, Function, Inc, SparseTimeFunction, TimeFunction

from devito_perforad.differentiate import partials
from devito_perforad.ir.access import access_of, analyse, at_offsets
from devito_perforad.passes.through_write import through_saved_writes


def _wave(save, later=()):
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=save)
    m = Function(name='m', grid=grid, space_order=4)
    ub = TimeFunction(name='ub', grid=grid, space_order=4, time_order=2)
    program = analyse([Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m),
                       *later(u, m)] if later else
                      [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m)])
    adjoints = {u: ub, m: Function(name='mb', grid=grid, space_order=4)}
    active = [s for s in program if s.write.field in adjoints]
    derivs = [partials(s, adjoints) for s in active]
    seeds = [at_offsets(ub, time=s.write.time) for s in active]
    return u, m, program, active, derivs, seeds


def _apps(expr, f):
    from devito.symbolics import retrieve_functions
    return [a for a in retrieve_functions(expr) if a.function is f]


def test_saved_write_reads_only_the_centre():
    u, m, program, active, derivs, seeds = _wave(save=10)
    before = {access_of(a).space for a in _apps(dict((a.field, d) for a, d in
                                                     derivs[0])[m], u)}
    new, corrections = through_saved_writes(program, active, derivs, seeds, False)
    after = {access_of(a).space for a in _apps(dict((a.field, d) for a, d in
                                                    new[0])[m], u)}
    assert len(before) > 1          # the stencil of u
    assert after == {(0, 0)}        # the saved values at the point itself
    assert corrections == []


def test_buffered_write_keeps_the_partial_unless_recomputed():
    u, m, program, active, derivs, seeds = _wave(save=None)
    new, _ = through_saved_writes(program, active, derivs, seeds, False)
    assert new == derivs
    new, _ = through_saved_writes(program, active, derivs, seeds, True)
    assert new != derivs


def test_later_increment_keeps_the_partial():
    u, m, program, active, derivs, seeds = _wave(
        save=10, later=lambda u, m: [Inc(u.forward, 0.01 * m * u.backward)])
    new, corrections = through_saved_writes(program, active, derivs, seeds, False)
    assert new == derivs and corrections == []


def test_later_injection_gives_a_correction():
    def inject(u, m):
        src = SparseTimeFunction(name='src', grid=u.grid, npoint=1, nt=10)
        src.coordinates.data[:] = 4.0
        return [src.inject(field=u.forward, expr=src / m)]

    u, m, program, active, derivs, seeds = _wave(save=10, later=inject)
    new, corrections = through_saved_writes(program, active, derivs, seeds, False)
    assert new[0] != derivs[0]
    (c,) = corrections
    assert (c.target, c.via, c.sparse.name, c.statement) == (m, 'inject', 'src',
                                                             active[0])
