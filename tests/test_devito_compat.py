"""devito_compat.py: the workarounds for Devito, applied only while an adjoint is
derived or built, and gone afterwards; and the record of what each Operator was built
from, which changes nothing Devito does."""

import numpy as np
import pytest
import sympy
from conftest import Box, dot_test, make_grid, positive
from devito import Eq, Function, Inc, Operator, TimeFunction

from devito_perforad import (
    AdjointError,
    AdjointOperator,
    CheckpointedAdjoint,
    TangentOperator,
    adjoint,
    adjoint_function,
    tangent,
)


def test_lone_loop_gets_contiguous_chunks():
    """A 1D adjoint's OpenMP loops hand each thread one contiguous block (Devito's
    chunks of one point would interleave the threads and stop vectorisation), while a
    2D adjoint's outer loops keep Devito's row-by-row chunks; Devito is left as it was."""
    import re

    def schedules(op):
        return set(re.findall(r'omp for (schedule\([^)]*\))', str(op)))

    openmp = dict(opt=('advanced', {'openmp': True}))
    for ndim, expected in [(1, {'schedule(static)'}), (2, {'schedule(static,1)'})]:
        grid = make_grid(ndim)
        u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
        lap = sum(u.shift(d, d.spacing) + u.shift(d, -d.spacing) - 2 * u
                  for d in grid.dimensions)
        primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * lap)]
        adjoint_op = AdjointOperator(primal, {u: adjoint_function(u)}, **openmp)
        assert schedules(adjoint_op) == expected
    static = ('advanced', {'openmp': True, 'par-dynamic-work': np.inf})
    assert schedules(Operator(primal[0], opt=static)) == {'schedule(static,1)'}

    # Burgers: the adjoint is one loop, over the whole domain, in one block per thread
    # (its partials are finite in the zero halo: no edge strips)
    grid = make_grid(1)
    x = grid.dimensions[0]
    u = TimeFunction(name='u', grid=grid, space_order=2, save=5)
    up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)
    loop = r'omp for (schedule\([^)]*\))\s*for \(int x = ([^;]*);'
    for flux, expected in [
            (sympy.Max(u, 0) * (u - um) + sympy.Min(u, 0) * (up - u),
             [('schedule(static)', 'x_m')]),
            # a partial divided by a field needs a guard at the right edge (the
            # primal reads u[x - 1]): the loop over the points there keeps Devito's
            # chunks
            (sympy.Max(u, 0) * (u - um) / (1 + u**2),
             [('schedule(static)', 'x_m + x_ltkn0'),
              ('schedule(static,1)', 'x_M - x_rtkn1 + 1')])]:
        code = str(AdjointOperator(Eq(u.forward, u - 0.2 * flux),
                                   {u: adjoint_function(u)}, **openmp))
        assert re.findall(loop, code) == expected


def test_core_and_shell_boxes_decompose_like_devito():
    """``core_shell.Box`` builds its SubDomain with integer bounds (Devito's own compares
    every grid index with sympy numbers): the decomposition is Devito's, the patch is
    gone after the build, and a large grid's boxes cost no per-index sympy work."""
    import sys

    import sympy
    from devito import Grid
    from devito.mpi import distributed

    from devito_perforad import devito_compat
    from devito_perforad.passes import core_shell

    original = distributed._interval_bounds
    grid = Grid(shape=(40, 30))
    spec = (('middle', 2, 3), ('right', 4))
    ours = core_shell.Box('core_test', spec, grid)
    devitos = Box(spec, grid=grid)  # this module's SubDomain: Devito's own path
    assert distributed._interval_bounds is original
    for a, b in zip(ours.distributor._decomposition, devitos.distributor._decomposition,
                    strict=True):
        assert [list(p) for p in a] == [list(p) for p in b]
    with devito_compat.sympy_subdomain_bounds():
        interval = ours.dimensions[0]._interval.subs(
            {t: t.value for t in ours.dimensions[0].thickness})
        interval = interval.subs({grid.dimensions[0].symbolic_min: 0,
                                  grid.dimensions[0].symbolic_max: 39})
        bounds = distributed._interval_bounds(interval)
    assert bounds == (2, 36) and all(type(b) is int for b in bounds)
    assert isinstance(original(interval)[0], sympy.Integer)  # what Devito compares

    # sympify calls while building a box on a 20000-point grid: Devito's path makes
    # four per grid index (81654 here with Devito 4.8.23), ours a few hundred
    module, calls = sys.modules['sympy.core.sympify'], []
    sympify = module.sympify
    try:
        module.sympify = lambda *a, **k: calls.append(1) or sympify(*a, **k)
        core_shell.Box('core_big', (('middle', 1, 1),), Grid(shape=(20_000,)))
    finally:
        module.sympify = sympify
    assert len(calls) < 2000, len(calls)


# -- an Operator in place of its equations (record_operator_inputs) ---------------------

def _wave_program(save=8):
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2, save=save)
    m = Function(name='m', grid=grid, space_order=4)
    m.data[:] = 1.5
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m)]
    return u, m, primal


def test_operator_in_place_of_its_equations():
    """``adjoint``, ``AdjointOperator``, ``tangent`` and ``TangentOperator`` take the
    Operator and derive from exactly what it was built from: the same equations and
    the same C as from the equations, with the adjoints keyed by field or by name."""
    u, m, primal = _wave_program()
    op = Operator(primal, subs=u.grid.spacing_map, name='Wave')
    fields = {u: adjoint_function(u), m: adjoint_function(m)}
    names = {'u': fields[u], 'm': fields[m]}
    derived = str(adjoint(primal, fields, subs=u.grid.spacing_map))
    assert str(adjoint(op, names)) == derived == str(adjoint(op, fields))
    assert str(AdjointOperator(op, names).ccode) == str(
        AdjointOperator(primal, fields, subs=u.grid.spacing_map).ccode)
    tangents = {u: adjoint_function(u, 'ud'), m: adjoint_function(m, 'md')}
    assert str(tangent(op, {'u': tangents[u], 'm': tangents[m]})) == str(
        tangent(primal, tangents, subs=u.grid.spacing_map))
    assert str(TangentOperator(op, tangents).ccode) == str(
        TangentOperator(primal, tangents, subs=u.grid.spacing_map).ccode)


def test_derived_operators_keep_the_primals_options():
    """The primal Operator's keywords (here OpenMP) are the adjoint's, but its name."""
    u, m, primal = _wave_program()
    op = Operator(primal, language='openmp', name='Wave')
    aop = AdjointOperator(op, {u: adjoint_function(u)})
    assert aop.name == 'Adjoint' and '#pragma omp parallel' in str(aop.ccode)
    assert '#pragma omp parallel' not in str(AdjointOperator(
        op, {u: adjoint_function(u)}, language='C').ccode)


def test_checkpointing_runs_the_operator_given():
    u, m, primal = _wave_program(save=None)
    op = Operator(primal, name='Wave')
    checkpointed = CheckpointedAdjoint(op, {'u': adjoint_function(u),
                                            'm': adjoint_function(m)})
    assert checkpointed.forward is op


RECORDING = """
import hashlib, pickle, sys
import numpy as np
if sys.argv[1] == 'import':
    import devito_perforad
from devito import Eq, Function, Grid, Operator, TimeFunction, configuration
configuration['log-level'] = 'ERROR'
from examples.seismic import demo_model, setup_geometry
from examples.seismic.acoustic import AcousticWaveSolver
model = demo_model('layers-isotropic', shape=(21, 21), spacing=(10., 10.), nbl=4,
                   space_order=4)
solver = AcousticWaveSolver(model, setup_geometry(model, 100.), space_order=4)
rec, u, _ = solver.forward(save=True)
op = solver.op_fwd(save=True)
again = pickle.loads(pickle.dumps(op))
print(op is solver.op_fwd(save=True), op._soname, sorted(op.__getstate__()),
      hashlib.sha1(str(op.ccode).encode()).hexdigest(), repr(np.linalg.norm(rec.data)),
      type(again).__name__)
"""


@pytest.mark.slow   # the default run's time
def test_devito_is_unchanged_by_the_recording():
    """Built after the import, Devito's own solver gives the same C, the same shared
    object name (its JIT cache key), the same results, the same pickled state, and
    its memoised Operator is still one object."""
    import subprocess
    import sys
    out = [subprocess.run([sys.executable, '-c', RECORDING, flag], capture_output=True,
                          text=True, check=True).stdout.splitlines()[-1]
           for flag in ('plain', 'import')]
    assert out[0] == out[1], out
    assert out[0].startswith('True ')


BEFORE = """
from devito import Eq, Function, Grid, Operator
grid = Grid(shape=(4,))
f, g = Function(name='f', grid=grid), Function(name='g', grid=grid)
op = Operator([Eq(f, 2 * g)], name='Early')
from devito_perforad import AdjointError, adjoint, adjoint_function
try:
    adjoint(op, {f: adjoint_function(f), g: adjoint_function(g)})
except AdjointError as e:
    print(e)
"""


def test_an_operator_built_before_the_import():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, '-c', BEFORE], capture_output=True, text=True,
                         check=True).stdout
    assert ('The Operator `Early` was built before devito_perforad was imported' in out
            and 'Import devito_perforad at the top of the script' in out), out


def _shrunk(op):
    return [d for d in op.dimensions if d.is_Space and any(op._dspace[d].offsets)]


@pytest.mark.slow  # the elastic model's Operators: the default run's time
def test_no_derived_operator_leaves_points_uncomputed():
    """Devito shrinks a loop of the elastic stress's tangent by ``mu`` when it hoists
    the harmonic average (and only warns when it runs, "Shrinking bounds"): the
    derived Operator is built again without that hoisting, and computes every
    point."""
    from test_seismic import devito_solver

    from devito_perforad.devito_compat import operator_inputs
    solver = devito_solver('elastic', 2)
    expressions, kwargs = operator_inputs(solver.op_fwd(False))
    model = solver.model
    tangents = {model.mu: adjoint_function(model.mu, 'dmu')}
    for e in expressions:
        if isinstance(e, Eq):
            tangents.update({c.function: adjoint_function(c.function, f'{c.name}_d')
                             for c in e.lhs.values()})
        elif not hasattr(e, 'field'):  # the receivers
            tangents[e.interpolator.sfunction] = None
    shrinking = Operator(tangent(expressions, tangents, kwargs['subs']),
                         subs=kwargs['subs'])
    assert _shrunk(shrinking), "Devito no longer shrinks this loop: drop the rebuild"
    assert not _shrunk(TangentOperator(expressions, tangents, subs=kwargs['subs']))


def test_a_time_loop_is_never_split(rng):
    """Two coupled saved fields: the adjoint of ``g`` reads ``f``'s at ``t+1``, which a
    later statement writes at ``t-1`` through a temporary. Devito split such a time
    loop in two (dot test 0.13, random program 193); the derived Operator keeps one,
    and Devito, outside the building, is left as it was."""
    grid = make_grid(2, so=4, n=13)
    f, g = (TimeFunction(name=n, grid=grid, space_order=4, time_order=o, save=7)
            for n, o in (('f', 2), ('g', 1)))
    c = positive(Function(name='c', grid=grid, space_order=4), rng)
    primal = [Eq(f.forward, 1.5 * f - 0.5 * f.backward + 0.01 * g.dx),
              Eq(g.forward, g + 0.01 * c * f.dx + 0.01 * c * f.backward.dy.dx
                 + 0.001 * f.backward.dy)]
    adjoints = {f: adjoint_function(f), g: adjoint_function(g)}
    aop = AdjointOperator(primal, adjoints)
    assert str(aop).count('for (int time') == 1
    first = np.arange(7) < 2
    error = dot_test(primal, adjoints, {f: first, g: first},
                     apply=dict(time_m=1, time_M=4), ops=(Operator(primal), aop))
    assert error < 1e-12
    assert str(Operator(adjoint(primal, adjoints))).count('for (int time') == 2


def test_a_primal_whose_time_loop_devito_splits(rng):
    """``Eq(f.forward, ...)``, a field reading ``f.backward``, then ``Inc(f.forward,
    ...)``: Devito runs ``f``'s ``Eq`` over every step in a first time loop, before
    the increments it reads. Refused, saying how to build the primal; built that way,
    its adjoint is exact."""
    from devito_perforad.devito_compat import one_time_loop
    grid = make_grid(1, so=2, n=13)
    f, g = (TimeFunction(name=n, grid=grid, space_order=2, save=7) for n in 'fg')
    c = positive(Function(name='c', grid=grid, space_order=2), rng)
    primal = [Eq(f.forward, 1.5 * f - 0.5 * f.backward),
              Eq(g.forward, 0.02 * c * f.backward + g - 0.008 * g.dx),
              Inc(f.forward, 0.01 * g)]
    adjoints = {f: adjoint_function(f), g: adjoint_function(g)}
    op = Operator(primal)
    assert str(op).count('for (int time') == 2
    with pytest.raises(AdjointError, match=r"field `f`: Devito splits the time loop "
                                           r"and runs a loop reading `f`.*one_time_loop"):
        AdjointOperator(op, adjoints)
    with one_time_loop():
        op = Operator(primal)
    assert str(op).count('for (int time') == 1
    inputs = np.ones(7, dtype=bool)
    inputs[2:6] = False
    assert dot_test(primal, adjoints, {f: inputs, g: inputs},
                    apply=dict(time_m=1, time_M=4),
                    ops=(op, AdjointOperator(op, adjoints))) < 1e-13


def test_a_primal_split_around_a_dead_equation_is_taken_as_it_is():
    """``Eq(f.forward, ...)`` overwritten by a later ``Eq(f.forward, ...)`` with no
    read in between: Devito runs the first over every step in a loop of its own, but
    what it computes is never read, so the primal computes what its equations say.
    Not refused; the adjoint is exact."""
    grid = make_grid(1, so=4, n=13)
    f, h = (TimeFunction(name=n, grid=grid, space_order=4, save=9) for n in 'fh')
    primal = [Eq(f.forward, f + 0.1 * f.dx), Eq(h.forward, h + 0.1 * f.dx),
              Eq(f.forward, 0.5 * f + 0.2 * h)]
    adjoints = {f: adjoint_function(f), h: adjoint_function(h)}
    op = Operator(primal)
    assert str(op).count('for (int time') == 2
    inputs = np.ones(9, dtype=bool)
    inputs[2:7] = False
    assert dot_test(primal, adjoints, {f: inputs, h: inputs},
                    apply=dict(time_m=1, time_M=5),
                    ops=(op, AdjointOperator(op, adjoints))) < 1e-13
