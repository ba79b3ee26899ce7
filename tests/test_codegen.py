"""Gather, checked: in the generated OpenMP code every adjoint field is written only at
its own point, with no atomics and no array reductions, and every spatial loop nest is
parallel."""

import re

import numpy as np
import pytest
from conftest import make_grid, positive
from devito import Eq, Function, Inc, Operator, SparseFunction, TimeFunction

from devito_perforad import AdjointOperator, adjoint_function

OPENMP = dict(opt=('advanced', {'openmp': True}))


def _loops(code, dim):
    """The outermost loop of every spatial loop nest (the block loop if blocked),
    with the line just above it."""
    lines = [ln.strip() for ln in str(code).splitlines() if ln.strip()]
    return [(lines[i - 1], ln) for i, ln in enumerate(lines)
            if re.match(rf'for \(int ({dim}|{dim}\d+_blk\d+) = (?!{dim}\d+_blk)', ln)]


def _writes(code, f):
    """Index lists of every C assignment to the array of field ``f``, written either
    ``f[t][x + 4][y + 4] =`` or, linearised for offloading, ``fL0(t, x + 4, y + 4) =``."""
    brackets = rf'\b{f.name}((?:\[[^\]]*\])+)\s*\+?='
    macro = rf'\b{f.name}L\d+\(([^)]*)\)\s*\+?='
    return ([re.findall(r'\[([^\]]*)\]', m) for m in re.findall(brackets, code)]
            + [[i.strip() for i in m.split(',')] for m in re.findall(macro, code)])


def assert_gather(op, grid, fields):
    code = str(op.ccode)
    assert 'omp atomic' not in code
    assert 'reduction' not in code
    for f in fields:
        writes = _writes(code, f)
        assert writes, f"{f.name} is never written"
        for index in writes:
            space = index[-len(f.space_dimensions):]
            own = [f"{d.name} + {f._size_halo[d].left}" for d in f.space_dimensions]
            assert space == own, f"{f.name} written at {space}, not its own point {own}"
    outer = grid.dimensions[0].name
    loops = _loops(code, outer)
    assert loops, "no spatial loop found"
    for pragma, loop in loops:
        assert pragma.startswith('#pragma omp for'), f"serial loop: {loop}"


@pytest.mark.parametrize('ndim', [2, pytest.param(3, marks=pytest.mark.slow)])
def test_wave_adjoint_and_gradient_are_gathers(ndim):
    rng = np.random.default_rng(0)
    grid = make_grid(ndim, 8)
    u = TimeFunction(name='u', grid=grid, space_order=8, time_order=2, save=6)
    m = positive(Function(name='m', grid=grid, space_order=8), rng)
    damp = positive(Function(name='damp', grid=grid, space_order=8), rng)
    primal = [Eq(u.forward,
                 2 * u - u.backward + (u.laplace - damp * (u - u.backward)) / m)]
    ub = TimeFunction(name='ub', grid=grid, space_order=8, time_order=2)
    mb = adjoint_function(m)
    op = AdjointOperator(primal, {u: ub, m: mb}, **OPENMP)
    assert_gather(op, grid, [ub, mb])


def test_multi_statement_adjoint_is_a_gather():
    grid = make_grid(2, 4)
    u, w, q = (Function(name=n, grid=grid, space_order=4) for n in 'uwq')
    primal = [Eq(w, u.dx + u.dy2), Eq(q, w.laplace * u)]
    adjoints = {f: adjoint_function(f) for f in (u, w, q)}
    op = AdjointOperator(primal, adjoints, **OPENMP)
    assert_gather(op, grid, [adjoints[u], adjoints[w]])  # q_b is only a seed


def test_scatter_form_fails_the_check():
    """Textbook reverse mode (Inc at offsets) is what the check is there to catch.

    Devito keeps it race-free only by fission, one sweep per offset, each writing
    a neighbour of its point.
    """
    grid = make_grid(2, 4)
    x = grid.dimensions[0]
    ub, wb = (Function(name=n, grid=grid, space_order=4) for n in ('ub', 'wb'))
    scatter = [Inc(ub.shift(x, k * x.spacing), c * wb) for k, c in ((-1, 1.0), (1, -1.0))]
    with pytest.raises(AssertionError, match="not its own point"):
        assert_gather(Operator(scatter, **OPENMP), grid, [ub])


def test_scatter_mode_is_not_a_gather():
    """``mode='scatter'`` (the baseline in the benchmarks) writes the adjoint wavefield
    at offsets from the iteration point (Devito runs it as one sweep per offset)."""
    from conftest import acoustic_problem
    p = acoustic_problem(save=False)
    u, src, rec = p['u'], p['src'], p['rec']
    adjoints = {u: adjoint_function(u), src: adjoint_function(src),
                rec: adjoint_function(rec)}
    op = AdjointOperator(p['primal'], adjoints, subs=p['subs'], mode='scatter',
                         **OPENMP)
    ub = adjoints[u]
    own = [f"{d.name} + {ub._size_halo[d].left}" for d in ub.space_dimensions]
    spaces = [index[-2:] for index in _writes(str(op.ccode), ub)]
    assert own in spaces and any(space != own for space in spaces)


def test_whole_domain_adjoint_has_no_edge_guards():
    """A primal on the whole domain: past the edges the adjoint reads its own halo,
    which is zero, so neither the time loop nor the updates that run once at the run's
    edges need guards (a guarded 3D update made gcc take 7x the primal's compile)."""
    grid = make_grid(3, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
    lap = sum(u.shift(d, d.spacing) + u.shift(d, -d.spacing) - 2 * u
              for d in grid.dimensions)
    op = AdjointOperator([Eq(u.forward, 2 * u - u.backward + 0.1 * lap)],
                         {u: adjoint_function(u)}, **OPENMP)
    code = str(op.ccode)
    assert 'time_M' in code  # the updates pinned at the run's last step are there
    assert not re.search(r'\b[xyz] [-+] \d+ [<>]= [xyz]_[mM]\b', code)


def _loop_tools():
    """``benchmarks/loops.py``, which reads loops out of generated code."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
    import loops
    return loops


def _loop_updates(code, f):
    """``(line, at_top)`` of every assignment to ``f`` at its own point inside the time
    loop; ``at_top`` where it sits in an ``if (time >= ...)`` block."""
    tools = _loop_tools()
    top, around = tools.top_counter_lines(code), tools.enclosing_loops(code)
    own = ''.join(f'[{d.name} + {f._size_halo[d].left}]' for d in f.space_dimensions)
    return [(ln, i in top) for i, ln in enumerate(code.splitlines(), 1)
            if re.search(rf'\b{f.name}\[t\d\]{re.escape(own)} =', ln)
            and 'time' in around[i - 1]]


@pytest.mark.parametrize('problem', ['1d wave, guards', '2d acoustic, scaled'])
def test_buffered_adjoint_loop_does_not_read_the_slot_it_writes(problem):
    """A buffered adjoint's slot holds a seed at the first counter of the backward run
    only. The stencil update never reads the slot it overwrites, so the loop moves as
    much memory as the primal's (reading it with a 0/1 factor cost 10% of the 2D
    acoustic adjoint's time): the seed is set aside before the loop and added back
    after the update of the first counter."""
    if problem.startswith('1d'):
        grid = make_grid(1, 2)
        u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
        m = Function(name='m', grid=grid, space_order=2)
        primal = [Eq(u.forward, 2 * u - u.backward + u.dx2 / m)]
        ub = adjoint_function(u)
        op = AdjointOperator(primal, {u: ub}, **OPENMP)
    else:
        from conftest import acoustic_problem
        p = acoustic_problem(so=8, save=False)
        u, rec = p['u'], p['rec']
        ub = adjoint_function(u)
        op = AdjointOperator(p['primal'], {u: ub, rec: adjoint_function(rec)},
                             subs=p['subs'], **OPENMP)
    code = str(op.ccode)
    updates = _loop_updates(code, ub)
    stencils = [line for line, at_top in updates if not at_top]
    assert stencils
    for line in stencils:
        slot = re.search(rf'\b({ub.name}\[t\d\]\[[^=]*) =', line).group(1)
        assert slot not in line.split(' = ', 1)[1], line
    aside, = {re.search(r'= (\w+)\[x\]', ln).group(1) for ln, at_top in updates
              if at_top}
    uses = [i for i, ln in enumerate(code.splitlines(), 1)
            if re.search(rf'\b{aside}\[x\]', ln)]
    # set aside once, before the loop; added back at the first counter only
    loop = code.index('for (int time')
    copy, back = uses
    assert len(code[:loop].splitlines()) >= copy
    assert back in _loop_tools().top_counter_lines(code)


def test_acoustic_gradient_reads_the_saved_centre():
    """The vp gradient in the backward loop is the discrete ``u * v.dt2`` with the
    chain rule to vp: the saved wavefield at the centre and, its time offsets moved
    onto the adjoint, at the current level only; no stencil, and the scaled seed's
    ``1/K`` cancelled (no ``damp``)."""
    from conftest import acoustic_problem
    p = acoustic_problem(save=True)
    u, rec, vp = p['u'], p['rec'], p['model'].vp
    ub = TimeFunction(name='ub', grid=u.grid, space_order=u.space_order, time_order=2)
    vpb = adjoint_function(vp)
    op = AdjointOperator(p['primal'], {u: ub, rec: adjoint_function(rec), vp: vpb},
                         subs=p['subs'], **OPENMP)
    lines = [ln for ln in str(op.ccode).splitlines()
             if re.search(rf'\b{vpb.name}\[x \+ \d+\]\[y \+ \d+\] =', ln)]
    assert lines, 'no gradient update at the iteration point'
    for line in lines:
        assert 'damp' not in line
        reads = re.findall(r'\bu\[[^\]]*\]((?:\[[^\]]*\])+)', line)
        assert reads and set(reads) == {reads[0]}, reads  # one point: the centre
    in_loop = [ln for ln in lines if re.search(r'\bub\[t\d\]', ln)]
    assert len(in_loop) == 1
    assert set(re.findall(r'\bu\[([^\]]*)\]', in_loop[0])) == {'time'}


def test_acoustic_adjoint_loop_compiles_like_the_primal():
    """What the C compiler makes of the stencil loops: the derived adjoint's loop in
    the time loop uses the primal's vector registers, reads no gathered addresses and
    takes within 10% of the primal's instructions per iteration, and so does the
    gradient's fused loop against the sum of Devito's two loops (it also updates the
    gradient). ``benchmarks/loops.py`` reports these numbers for every problem."""
    from conftest import acoustic_problem
    stencil_loops = _loop_tools().stencil_loops

    p = acoustic_problem(so=8, save=True)
    u, rec, vp = p['u'], p['rec'], p['model'].vp
    ub = TimeFunction(name='ub', grid=u.grid, space_order=u.space_order, time_order=2)
    adjoints = {u: ub, rec: adjoint_function(rec)}
    primal = stencil_loops(Operator(p['primal'], subs=p['subs'], **OPENMP))
    adjoint = stencil_loops(AdjointOperator(p['primal'], adjoints, subs=p['subs'],
                                            **OPENMP))
    gradient = stencil_loops(AdjointOperator(p['primal'],
                                             {**adjoints, vp: adjoint_function(vp)},
                                             subs=p['subs'], **OPENMP))
    (_, forward), = primal
    (_, backward), = adjoint
    (_, fused), = gradient  # the adjoint and the gradient updated in one loop
    assert forward.register in ('zmm', 'ymm'), 'the primal is not vectorised'
    for loop in (backward, fused):
        assert loop.register == forward.register
        assert loop.count('gather') == 0
    assert len(backward.instructions) <= 1.1 * len(forward.instructions)
    # Devito's gradient: the primal's loop run backward, then a loop for the gradient
    # (about 10 instructions); the fused loop may take those and no more
    assert len(fused.instructions) <= 1.1 * (len(forward.instructions) + 10)


# -- GPU code targets (source generation only; no GPU compiler needed) -------------------

def _atomic_targets(code):
    """The statement after every ``atomic`` pragma."""
    lines = [ln.strip() for ln in str(code).splitlines() if ln.strip()]
    return [lines[i + 1] for i, ln in enumerate(lines) if ln.startswith('#pragma')
            and ' atomic' in ln]


@pytest.mark.parametrize('language', [pytest.param('openacc', marks=pytest.mark.slow),
                                      'openmp'])
def test_gpu_adjoint_has_no_atomics_on_dense_fields(language):
    """Derived gradients build for GPUs (OpenACC, OpenMP offload). Only the sparse
    injections (receivers, and the source term of the gradient) use atomics; every
    dense adjoint update is a gather at its own point."""
    from conftest import acoustic_problem
    p = acoustic_problem(so=4)
    model, u, rec = p['model'], p['u'], p['rec']
    ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=4)
    vpb = adjoint_function(model.vp)
    op = AdjointOperator(p['primal'], {u: ub, model.vp: vpb, rec: adjoint_function(rec)},
                         subs=p['subs'], platform='nvidiaX', language=language)
    code = str(op)
    assert ('#pragma acc' if language == 'openacc' else '#pragma omp target') in code
    atomics = _atomic_targets(code)
    assert atomics, "the sparse injections should use atomics"
    assert all('pos' in stmt for stmt in atomics), atomics  # indirect, sparse points
    assert 'reduction' not in code
    for f in (ub, vpb):
        own = [w for w in _writes(code, f)
               if w[-2:] == [f"{d.name} + {f._size_halo[d].left}"
                             for d in f.space_dimensions]]
        assert own, f"no gather update of {f.name}"


@pytest.mark.parametrize('language', ['openmp', 'openacc'])
def test_staggered_adjoint_is_a_gather(language):
    """The adjoint of a velocity-pressure system on a staggered grid (velocities at
    the half points): every adjoint field written at its own point, no atomics, no
    reductions; the spatial loops parallel (OpenMP) or offloaded (OpenACC)."""
    from test_offsets import _staggered_system
    eqs, fields, _ = _staggered_system(2, 4)
    adjoints = {f: adjoint_function(f) for f in fields}
    grid = fields[0].grid
    if language == 'openmp':
        assert_gather(AdjointOperator(eqs, adjoints, **OPENMP), grid,
                      list(adjoints.values()))
        return
    code = str(AdjointOperator(eqs, adjoints, platform='nvidiaX', language='openacc'))
    assert '#pragma acc parallel' in code
    assert not _atomic_targets(code) and 'reduction' not in code
    for f in adjoints.values():
        assert _writes(code, f), f"{f.name} is never written"
        assert all(w[-2:] == [f"{d.name} + {f._size_halo[d].left}"
                              for d in f.space_dimensions] for w in _writes(code, f))


# in the slow run: the default run's time (test_staggered_adjoint_is_a_gather checks
# a small staggered system there)
STAGGERED_MODELS = [pytest.param(p, marks=pytest.mark.slow)
                    for p in ('elastic', 'viscoelastic', 'tti staggered', 'visco sls',
                              'visco kv', 'visco maxwell')]


@pytest.mark.parametrize('language', ['openmp', 'openacc'])
@pytest.mark.parametrize('physics', STAGGERED_MODELS)
def test_devito_staggered_models_are_gathers(physics, language):
    """The adjoint and every parameter's gradient of Devito's own staggered-grid
    forward models (vector and tensor wavefields), in OpenMP and in OpenACC (source
    generation only): the only atomics are the sparse injections, no reductions,
    every dense adjoint field written at its own point, the spatial loops parallel
    or offloaded. (Devito's staggered TTI keeps its particle velocities buffered:
    its gradient is the checkpointed one.)"""
    from conftest import devito_forward
    from test_seismic import devito_solver

    from devito_perforad import CheckpointedAdjoint
    solver = devito_solver(physics, 2)
    saves = physics != 'tti staggered'
    expressions, kwargs, adjoints, _ = devito_forward(solver, save=saves)
    model = solver.model
    params = [getattr(model, n) for n in model.physical_parameters
              if isinstance(getattr(model, n), Function) and n != 'damp']
    adjoints.update({m: adjoint_function(m) for m in params})
    options = OPENMP if language == 'openmp' else dict(platform='nvidiaX',
                                                       language='openacc')
    if saves:
        op = AdjointOperator(expressions, adjoints, subs=kwargs['subs'], **options)
    else:
        op = CheckpointedAdjoint(expressions, adjoints, subs=kwargs['subs'],
                                 **options).reverse
    code = str(op.ccode)
    assert all('pos' in stmt for stmt in _atomic_targets(code))  # sparse points only
    assert 'reduction' not in code
    dense = [fb for f, fb in adjoints.items() if not isinstance(f, SparseFunction)]
    for fb in dense:
        own = [f"{d.name} + {fb._size_halo[d].left}" for d in fb.space_dimensions]
        writes = [w for w in _writes(code, fb) if not any('pos' in i for i in w)]
        assert writes, f"{fb.name} is never written"
        assert all(w[-2:] == own for w in writes), (fb.name, writes)
    if language == 'openacc':
        assert '#pragma acc parallel' in code
    else:
        loops = _loops(code, model.grid.dimensions[0].name)
        assert loops and all(p.startswith('#pragma omp for') for p, _ in loops)
