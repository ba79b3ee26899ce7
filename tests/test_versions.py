"""ir/versions.py: several writes to one level in a step, with reads in between, in
program order; and the programs whose order Devito itself does not keep, refused."""

import re

import numpy as np
import pytest
from conftest import dot_test, fd_test, make_grid
from devito import Eq, Inc, Max, Operator, SparseTimeFunction, TimeFunction

from devito_perforad import (
    AdjointError,
    AdjointOperator,
    TangentOperator,
    adjoint,
    adjoint_function,
    tangent,
)
from devito_perforad.devito_compat import one_time_loop


def _fields(save, so=4):
    grid = make_grid(1, so=so, n=13)
    return grid, [TimeFunction(name=n, grid=grid, space_order=so, save=save)
                  for n in 'fh']


def _inputs(f, h, save):
    """The entries of ``f`` and ``h`` a run from ``time_m=1`` to ``5`` does not
    overwrite: the levels outside the run (saved), the level before it (buffered)."""
    inputs = np.ones(f.data.shape[0], dtype=bool)
    if save:
        inputs[2:7] = False
    else:
        inputs[0] = False
    return {f: inputs, h: inputs}


def _programs(grid, f, h):
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=9)
    src.coordinates.data[:] = 5.3
    first = [Eq(f.forward, f + 0.1 * f.dx)]
    return {
        # the Inc sees the value the read saw; the later steps see the sum
        'Inc after a read': first + [Eq(h.forward, h + 0.1 * f.forward.dx),
                                     Inc(f.forward, 0.2 * h)],
        # a second Eq reading the level it overwrites, at its own point
        'Eq after a read': first + [Eq(h.forward, h + 0.1 * f.forward.dx),
                                    Eq(f.forward, f.forward + 0.2 * h)],
        # the first Eq's value is never read: it drops out
        'Eq over an Eq': first + [Eq(h.forward, h + 0.1 * f.dx),
                                  Eq(f.forward, 0.5 * f + 0.2 * h)],
        # a correction on a SubDomain
        'Eq on a SubDomain after a read': first + [
            Eq(h.forward, h + 0.1 * f.forward.dx),
            Eq(f.forward, 0.3 * h, subdomain=grid.interior)],
        'injection after a read': (first + [Eq(h.forward, h + 0.1 * f.forward.dxl)]
                                   + src.inject(field=f.forward, expr=src)),
    }, src


CASES = ['Inc after a read', 'Eq after a read', 'Eq over an Eq',
         'Eq on a SubDomain after a read', 'injection after a read']
DEFAULT = {'Inc after a read', 'Eq on a SubDomain after a read'}


@pytest.mark.parametrize('case, save', [
    pytest.param(c, s, id=f'{c}-{"saved" if s else "buffered"}',
                 marks=[] if c in DEFAULT and not s else [pytest.mark.slow])
    for c in CASES for s in (None, 9)])
def test_several_writes_to_one_level_are_exact(case, save):
    grid, (f, h) = _fields(save)
    programs, src = _programs(grid, f, h)
    primal = programs[case]
    adjoints = {f: adjoint_function(f), h: adjoint_function(h)}
    inputs = _inputs(f, h, save)
    if src in {getattr(e, 'interpolator', None) and e.interpolator.sfunction
               for e in primal}:
        adjoints[src], inputs[src] = adjoint_function(src), slice(None)
    # built as users are told to: Devito may split a primal's time loop against its
    # dependences (devito_compat.primal_time_loop_whole)
    with one_time_loop():
        op = Operator(primal)
    assert dot_test(primal, adjoints, inputs, apply=dict(time_m=1, time_M=5),
                    ops=(op, AdjointOperator(op, adjoints))) < 1e-13


@pytest.mark.parametrize('case', [pytest.param(c, marks=[] if c in DEFAULT
                                                else [pytest.mark.slow])
                                  for c in CASES + ['interpolation between the writes']])
def test_tangents_of_several_writes_to_one_level(case):
    """The tangent runs versioned: the primal statements the derivation rewrote are
    restated (a copy from the version; an interpolation reading it), the tangent of
    each value between the writes has a field of its own. Against the primal's
    central difference, exact for the program, affine in ``f`` and ``h``."""
    grid, (f, h) = _fields(None)
    programs, src = _programs(grid, f, h)
    rec = SparseTimeFunction(name='rec', grid=grid, npoint=2, nt=9)
    rec.coordinates.data[:] = [[3.2], [7.7]]
    programs['interpolation between the writes'] = (
        programs['Inc after a read'][:2] + rec.interpolate(expr=f.forward)
        + programs['Inc after a read'][2:])
    primal = programs[case]
    tangents = {f: adjoint_function(f, 'fd'), h: adjoint_function(h, 'hd')}
    inputs = _inputs(f, h, None)
    if 'interpolation' in case:
        tangents[rec], inputs[rec] = adjoint_function(rec, 'recd'), slice(0, 0)
    with one_time_loop():
        op = Operator(primal)
    top = TangentOperator(op, tangents)
    # a version, unless its value is never read (an Eq over an Eq)
    versioned = any('f_v0_d' in str(e.lhs) for e in tangent(op, tangents))
    assert versioned == (case != 'Eq over an Eq')
    assert _tangent_error(op, top, tangents, inputs, dict(time_m=1, time_M=5),
                          h=1.0) < 1e-13


def test_the_value_between_the_writes_has_no_seed(rng):
    """The adjoint of ``f``'s value between its writes is an internal field that
    holds no seed: a second run of the adjoint Operator, with the same seeds, gives
    the same result, whatever the first one left in it."""
    grid, (f, h) = _fields(None)
    primal = _programs(grid, f, h)[0]['Inc after a read']
    adjoints = {f: adjoint_function(f), h: adjoint_function(h)}
    op = AdjointOperator(primal, adjoints)
    seeds = {g: rng.standard_normal(g.data.shape) for g in adjoints.values()}
    results = []
    for _ in range(2):
        for g in adjoints.values():
            g.data[:] = seeds[g]
        op.apply(time_m=1, time_M=5)
        results.append([g.data.copy() for g in adjoints.values()])
    assert any('f_v0_b' in str(e.lhs) for e in adjoint(primal, adjoints))
    for first, second in zip(*results, strict=True):
        assert np.array_equal(first, second)


@pytest.mark.parametrize('case', ['Inc', 'Eq', '2D, along y', pytest.param(
    '3D, blocked along z', marks=pytest.mark.slow)])   # 3D: the default run's time
@pytest.mark.parametrize('save', [None, 9], ids=['buffered', 'saved'])
def test_a_read_devito_runs_in_place_is_reversed_as_devito_runs_it(case, save):
    """A one-sided read of ``f.forward`` between two writes of it: Devito runs it in
    one loop with the later write, in the direction that makes the read see the later
    write's value at the neighbour (and the earlier one at the point). The adjoint is
    that of what Devito runs: exact against the primal Operator."""
    ndim = {'2D, along y': 2, '3D, blocked along z': 3}.get(case, 1)
    grid = make_grid(ndim, so=2, n=11)
    f, h = (TimeFunction(name=n, grid=grid, space_order=2, save=save) for n in 'fh')
    read = f.forward.dz if ndim == 3 else f.forward.dy if ndim == 2 else f.forward.dx
    later = Eq(f.forward, 0.5 * f.forward + 0.2 * h) if case == 'Eq' else \
        Inc(f.forward, 0.2 * h)
    primal = [Eq(f.forward, f + 0.1 * f.dx), Eq(h.forward, h + 0.1 * read), later]
    op = Operator(primal)
    code = str(op)
    # the read and the later write in one loop nest, run backwards
    assert re.search(r'for \(int \w+ = \w+_M; \w+ >= \w+_m; \w+ -= 1\)', code)
    assert ('blk' in code) == (ndim == 3)
    adjoints = {f: adjoint_function(f), h: adjoint_function(h)}
    assert dot_test(primal, adjoints, _inputs(f, h, save),
                    apply=dict(time_m=1, time_M=5),
                    ops=(op, AdjointOperator(op, adjoints))) < 1e-13
    # the tangent of a linear program is the program: J dx = F(dx)
    tangents = {f: adjoint_function(f, 'fd'), h: adjoint_function(h, 'hd')}
    assert _tangent_error(op, TangentOperator(op, tangents), tangents,
                          _inputs(f, h, save), dict(time_m=1, time_M=5)) < 1e-13


def _tangent_error(op, top, tangents, inputs, apply, rng=None, h=None):
    """The tangent Operator's ``J dx`` against the primal's: ``F(dx)`` for a linear
    program (``h`` None), central differences of ``F`` at random ``x`` otherwise;
    the largest error relative to the largest entry."""
    rng = rng or np.random.default_rng(0)
    x, dx = {}, {}
    for g in tangents:
        x[g], dx[g] = np.zeros(g.data.shape), np.zeros(g.data.shape)
        x[g][inputs[g]] = 0.3 * rng.standard_normal(x[g][inputs[g]].shape)
        dx[g][inputs[g]] = rng.standard_normal(x[g][inputs[g]].shape)

    def run(x, step):
        for g in tangents:
            g.data[:] = x[g] + step * dx[g]
        op.apply(**apply)
        return {g: g.data.copy() for g in tangents}

    if h is None:
        expected = run({g: 0 * x[g] for g in x}, 1)
    else:
        plus, minus = run(x, h), run(x, -h)
        expected = {g: (plus[g] - minus[g]) / (2 * h) for g in tangents}
    for g, gd in tangents.items():
        g.data[:], gd.data[:] = x[g], dx[g]
    top.apply(**apply)
    scale = max(np.abs(e).max() for e in expected.values())
    return max(np.abs(gd.data - expected[g]).max() for g, gd in tangents.items()) / scale


def test_a_read_devitos_openmp_code_reduces_is_refused():
    """With OpenMP, Devito makes the later ``Inc`` an array reduction, and the read in
    the same loop sees the reduction's private copy: the primal computes neither
    program order nor the in-place values. Refused, naming the read."""
    grid, (f, h) = _fields(None, so=2)
    primal = [Eq(f.forward, f + 0.1 * f.dx), Eq(h.forward, h + 0.1 * f.forward.dx),
              Inc(f.forward, 0.2 * h)]
    op = Operator(primal, language='openmp')
    assert 'reduction(+:f' in str(op)
    with pytest.raises(AdjointError, match=r"`f\(t \+ dt, x \+ h_x\)` is read in a loop "
                                           r"where Devito's OpenMP code reduces"):
        adjoint(op, {f: adjoint_function(f), h: adjoint_function(h)})


def test_reads_devito_runs_in_place_are_refused_where_they_are_no_expression():
    """Where the later write reads what the reading equation writes (``h.forward``),
    the value Devito's loop reads at the neighbour depends on the reading equation
    itself there: refused, naming the read, by the adjoint and the tangent alike."""
    _, (f, h) = _fields(None, so=2)
    reading = Eq(h.forward, h + 0.1 * f.forward.dx)
    primal = [Eq(f.forward, f + 0.1 * f.dx), reading, Inc(f.forward, 0.2 * h.forward)]
    op = Operator(primal)
    with pytest.raises(AdjointError, match=r"`f\(t \+ dt, x \+ h_x\)` is read before "
                                           r"a later write.*in-place"):
        adjoint(op, {f: adjoint_function(f), h: adjoint_function(h)})
    with pytest.raises(AdjointError, match=r"Devito runs the read in one loop"):
        TangentOperator(op, {f: adjoint_function(f, 'fd'), h: adjoint_function(h, 'hd')})


@pytest.mark.parametrize('primal, match', [
    # a genuine in-place update: the writer reads its own level at an offset
    (lambda f, h: [Eq(h.forward, h), Eq(f.forward, f + h), Eq(f.forward, f.forward.dx)],
     r"`f\(t \+ dt, x [+-] \d?\*?h_x\)` is read at an offset by the equation that "
     r"writes"),
    # a read of a level before the step writes it: an older level of the buffer
    (lambda f, h: [Eq(h.forward, f.forward), Eq(f.forward, f)],
     r"read before the step writes its level"),
    # a nonlinear read of the value between the writes, of a field the primal does
    # not keep (buffered): the value is recomputed from f's earlier level
    (lambda f, h: [Eq(f.forward, f), Eq(h.forward, f.forward**2), Inc(f.forward, h)],
     r"needs primal values `f\(t, x\)` at every time step"),
    # the level read between the writes was first assigned on a SubDomain only
    (lambda f, h: [Eq(f.forward, f, subdomain=f.grid.interior), Eq(h.forward, f.forward),
                   Inc(f.forward, h)],
     r"assigned on a SubDomain only"),
], ids=['in place', 'before the first write', 'nonlinear, buffered', 'SubDomain first'])
def test_refusals(primal, match):
    _, (f, h) = _fields(None)
    with pytest.raises(AdjointError, match=match) as e:
        adjoint(primal(f, h), {f: adjoint_function(f), h: adjoint_function(h)})
    assert len(str(e.value)) < 400


def test_tangent_of_a_statement_reading_its_own_level():
    """``Eq(f.forward, f.forward**2 + ...)`` after a first write: its tangent needs
    ``f.forward`` from before it, so it runs before the primal statement. Checked
    against central differences."""
    _, (f, h) = _fields(9)
    primal = [Eq(f.forward, f + 0.1 * f.dx), Eq(f.forward, f.forward**2 + 0.2 * f),
              Eq(h.forward, h + f.forward.dx)]
    tangents = {f: adjoint_function(f, 'fd'), h: adjoint_function(h, 'hd')}
    assert _tangent_error(Operator(primal), TangentOperator(primal, tangents), tangents,
                          _inputs(f, h, 9), dict(time_m=1, time_M=4), h=1e-6) < 1e-7


def _nonlinear(grid, f, h):
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=9)
    src.coordinates.data[:] = 5.3
    first = [Eq(f.forward, f + 0.1 * f.dx)]
    return {
        # h reads f's value between its writes nonlinearly: recomputed from f's Eq
        'Eq, a product, Inc': first + [Eq(h.forward, h + 0.3 * f.forward * f.forward.dx),
                                      Inc(f.forward, 0.2 * h)],
        # a chain: h's first value reads f's first, and f's final value reads h's
        'a chain of versions': first + [
            Eq(h.forward, h * f.forward), Inc(f.forward, 0.2 * h.forward),
            Eq(h.forward, 0.5 * h.forward * f.forward + 0.1 * f.forward)],
        # f's value after an injection: recomputed from its final value
        'an injection, then Max': first + src.inject(field=f.forward, expr=src) + [
            Eq(h.forward, h + Max(f.forward, 0.1) * f.forward.dx),
            Inc(f.forward, 0.2 * h)],
    }, src


@pytest.mark.parametrize('case', ['Eq, a product, Inc', 'a chain of versions',
                                  'an injection, then Max', 'Devito runs it in place'])
def test_nonlinear_reads_between_writes_against_finite_differences(case):
    """A nonlinear read of a level's value between two writes: the partial needs the
    value, which the primal overwrites within the step. It is recomputed from the
    values the primal keeps (saved fields), and the gradient matches central
    differences. At space order 2, Devito runs the one-sided read in one loop with
    the ``Inc``: the adjoint follows it."""
    in_place = case == 'Devito runs it in place'
    grid, (f, h) = _fields(9, so=2 if in_place else 4)
    programs, src = _nonlinear(grid, f, h)
    primal = programs['Eq, a product, Inc' if in_place else case]
    assert (str(Operator(primal)).count('for (int x') == 2) == in_place
    adjoints = {f: adjoint_function(f), h: adjoint_function(h)}
    inputs = np.zeros(f.data.shape[0], dtype=bool)
    inputs[:2] = True
    inputs = {f: inputs, h: inputs}
    with one_time_loop():   # the primal as users are told to build it
        error = fd_test(primal, adjoints, inputs, apply=dict(time_m=1, time_M=5))
    assert error < 1e-8


def test_a_value_between_injections_read_nonlinearly_is_refused():
    """Between two injections, the value is neither a sum of dense writes nor the
    final value minus dense increments: it cannot be recomputed, and is refused."""
    grid, (f, h) = _fields(9)
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=9)
    primal = ([Eq(f.forward, f)] + src.inject(field=f.forward, expr=src)
              + [Eq(h.forward, f.forward**2)] + src.inject(field=f.forward, expr=src))
    with pytest.raises(AdjointError, match="needs the value `f` holds between two "
                                           "writes") as e:
        adjoint(primal, {f: adjoint_function(f), h: adjoint_function(h)})
    assert len(str(e.value)) < 400


def test_a_tangent_without_its_primal_recomputes_a_value_between_writes():
    """``primal=False``: the tangent reads the primal's saved fields, which hold the
    level's final value, not the value between the writes that the nonlinear read
    saw (before it was recomputed, the tangent was off by 0.38 against central
    differences). The value is recomputed as the adjoint recomputes it; where it
    cannot be (between two injections), the tangent is refused, naming the read."""
    grid, (f, h) = _fields(9)
    primal = [Eq(f.forward, f + 0.1 * f.dx), Eq(h.forward, h + 0.3 * f.forward**2),
              Inc(f.forward, 0.2 * h)]
    tangents = {f: adjoint_function(f, 'fd'), h: adjoint_function(h, 'hd')}
    op = Operator(primal)
    top = TangentOperator(primal, tangents, primal=False)
    rng = np.random.default_rng(0)
    x0 = {g: 0.3 * rng.standard_normal(g.data.shape) for g in (f, h)}
    dx = {g: rng.standard_normal(g.data.shape) for g in (f, h)}
    apply, eps = dict(time_m=1, time_M=4), 1e-6
    trajectories = []
    for step in (eps, -eps, 0):
        for g in (f, h):
            g.data[:] = x0[g] + step * dx[g]
        op.apply(**apply)
        trajectories.append({g: g.data.copy() for g in (f, h)})
    for g in (f, h):   # the saved fields hold the trajectory at x0
        tangents[g].data[:] = dx[g]
    top.apply(**apply)
    for g in (f, h):
        fd = (trajectories[0][g] - trajectories[1][g]) / (2 * eps)
        assert np.abs(tangents[g].data - fd).max() < 1e-7 * np.abs(fd).max()

    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=9)
    primal = ([Eq(f.forward, f)] + src.inject(field=f.forward, expr=src)
              + [Eq(h.forward, f.forward**2)] + src.inject(field=f.forward, expr=src))
    with pytest.raises(AdjointError, match=r"the tangent needs the value "
                                           r"`f\(time \+ dt, x\)` has when"):
        TangentOperator(primal, tangents, primal=False)
    TangentOperator(primal, tangents)
