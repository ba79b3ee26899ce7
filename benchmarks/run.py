"""Benchmark the derived adjoint and gradient against the primal, a scatter-form adjoint
and Devito's hand-written operators, in one command.

Each case builds a fresh Operator (timed: derivation and lowering) and JIT-compiles it
into an empty compiler cache (timed separately, so that every compile is a real one).
Then, per thread count, every operator of the problem warms up with one run and is timed
in ``--repeats`` rounds; a round runs each operator once, in an order rotated from round
to round, so that a slow spell of a shared machine hits all of them alike. A case's time
is its median over the rounds, and a ratio (``x primal``, the summary's targets) is the
median over the rounds of the ratio within each round, with its range. Last, the memory
each run allocates beyond its fields (one more run, with resident memory sampled every
2 ms). Results go to ``--out``: per problem, a markdown table with ratios
(``results.md`` for 2d, ``results_3d.md``, ``results_paper.md``) and PNG plots of run
time (``results*.png``), thread scaling (``*_threads.png``), build and JIT compile time
(``*_compile.png``) and memory (``*_memory.png``).

Run from the repository root::

    python benchmarks/run.py                      # 2D acoustic 841^2, so=8, 1350 steps
    python benchmarks/run.py --threads 1 2 4 8    # on a larger machine
    python benchmarks/run.py --problem 3d         # 161^3 with the layer, so=8, 200 steps
    python benchmarks/run.py --problem paper      # the PerforAD paper's stencils
    python benchmarks/run.py --problem physics    # visco-acoustic, self-adjoint, ...
    python benchmarks/run.py --problem physics-gradient   # their gradients
    python benchmarks/run.py --problem staggered  # elastic, staggered TTI, visco order 1
    python benchmarks/run.py --problem staggered-3d       # 3D elastic
    python benchmarks/run.py --problem all        # all of them
    python benchmarks/run.py --quick              # 2d and paper, tiny sizes (smoke test)

``--quick`` writes to a temporary directory unless ``--out`` is given. The scatter-form
adjoint (``AdjointOperator(..., mode='scatter')``) runs in a child process per case, so
that a failure or crash there skips it with a note; the child times it in rounds with
its group's primal and derived adjoint, so that its ratios to them are paired too. On a
shared machine, check the table's CPU share column (near 1: the run had its cores). On
the 2d problem, JAX's ``jax.grad`` and deepwave (the optional ``bench`` extra) run as
cases too, where they are installed: the same functions as ``jax_baseline.py`` and
``deepwave_baseline.py``, each in a child process per thread count pinned to that many
CPUs.
"""

import argparse
import atexit
import ctypes
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from burgers_floor import burgers_step
from devito import Operator, TimeFunction, configuration
from physics import gradient_cases, physics_cases, staggered_cases

from devito_perforad import AdjointOperator, adjoint_function
from devito_perforad.devito_compat import openmp_chunks_of_one

configuration['log-level'] = 'ERROR'
configuration['language'] = 'openmp'  # every operator, Devito's own included

PROBLEMS = {
    '2d': dict(shape=(801, 801), nbl=20, so=8, nt=1350),
    '3d': dict(shape=(141, 141, 141), nbl=10, so=8, nt=200),  # 161^3 with the layer
    'paper': dict(shape=(4_000_000,), n3d=160, nt=100),  # 1D sizes, 3D wave n3d^3
    'physics': dict(shape=(2401, 2401), nbl=40, so=8, nt=300),  # 24.6 MB per field
    'physics-gradient': dict(shape=(1201, 1201), nbl=40, so=8, nt=200),  # saved: 1.3 GB
    'staggered': dict(shape=(1601, 1601), nbl=40, so=8, nt=150),  # 11 MB per field
    'staggered-3d': dict(shape=(141, 141, 141), nbl=10, so=8, nt=100),  # 17 MB
}
QUICK = {
    '2d': dict(shape=(41, 41), nbl=10, so=8, nt=30),
    '3d': dict(shape=(13, 13, 13), nbl=4, so=8, nt=10),
    'paper': dict(shape=(4000,), n3d=12, nt=10),
    'physics': dict(shape=(21, 21), nbl=6, so=8, nt=10),
    'physics-gradient': dict(shape=(21, 21), nbl=6, so=8, nt=10),
    'staggered': dict(shape=(21, 21), nbl=6, so=8, nt=10),
    'staggered-3d': dict(shape=(13, 13, 13), nbl=4, so=8, nt=10),
}
OUTPUT = {'2d': 'results', '3d': 'results_3d', 'paper': 'results_paper',
          'physics': 'results_physics', 'physics-gradient': 'results_physics_gradient',
          'staggered': 'results_staggered', 'staggered-3d': 'results_staggered_3d'}
PEERS = ('JAX forward', 'JAX gradient', 'deepwave forward', 'deepwave gradient')
# measured in a child process each, skipped with a note where they fail (a missing
# optional package, a crash); peers once per thread count, with the child's CPUs pinned
OPTIONAL = ('scatter adjoint', *PEERS)
# an optional case's child process also times these cases of its group, in the same
# rounds, so that its ratios to them are paired as well
PARTNERS = {'scatter adjoint': ('primal', 'derived adjoint')}
MB = 2 ** 20
FOOTNOTE = (
    'Build: Operator construction (derivation and lowering). JIT compile: code '
    'generation, C compiler and loading. Extra RSS: peak resident memory during one run '
    'minus the resident memory before it (temporaries the operator allocates). Fields: '
    'allocated size of the fields the operator takes, halo included. MB: 2^20 bytes. '
    'CPU share: CPU seconds over threads times wall seconds (median); well below 1 '
    'means other processes held the cores during the runs.')
CACHE_NOTE = {
    'fresh': 'JIT compile times are real compiles: the process starts with an empty '
             "Devito JIT cache (see `fresh_jit_cache`).",
    'keep': "Devito's JIT cache was kept: operators marked (cached) were loaded, not "
            'compiled.',
}


@dataclass
class Case:
    """One operator to measure.

    Attributes
    ----------
    group : str
        Cases of a group share a primal, the reference of the ratios ('' for one
        problem, the stencil's name for the paper's stencils).
    role : str
        'primal', 'derived adjoint', 'scatter adjoint', 'derived gradient', ...
    build : callable
        Makes the Operator, so that its construction is timed.
    kwargs : dict
        Arguments of ``op.apply``.
    repeats : int, optional
        Timed runs per thread count where fewer than ``--repeats`` (the slow peers).
    """

    group: str
    role: str
    build: object
    kwargs: dict
    repeats: int = None  # None: the command line's --repeats

    @property
    def name(self):
        return f'{self.group} {self.role}'.strip()


@dataclass
class Result:
    """What :func:`measure` found for one case (times in s, memory in bytes)."""

    case: Case
    build: float = np.nan
    compile: float = np.nan
    cached: bool = False
    times: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # {threads: [seconds in each round]}
    partners: dict = field(default_factory=dict)  # {role: runs} of PARTNERS, same rounds
    cpu_share: dict = field(default_factory=dict)
    extra_rss: dict = field(default_factory=dict)
    fields: int = 0
    grid_array: int = 0
    skipped: str = ''


# -- environment ----------------------------------------------------------------------

def fresh_jit_cache():
    """Point Devito's JIT caches at a new, empty directory, removed at exit.

    Devito 4.8 keeps compiled operators in ``<tmp>/devito-jitcache-uid<uid>`` and
    codepy's cache in ``<tmp>/devito-codepy-uid<uid>``, named by a hash of the
    generated code; an Operator whose ``.so`` is already there is loaded, not compiled
    (``jit-backdoor`` only recompiles a hand-edited source). Both directories are made
    under ``tempfile.gettempdir()``, so a private temporary directory makes every
    compile in this process a real one.

    Returns
    -------
    Path
        The new directory.
    """
    path = Path(tempfile.mkdtemp(prefix='perforad-bench-'))
    tempfile.tempdir = str(path)
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def warm_up_compiler():
    """Build and compile a trivial operator, so that the first measured case does not
    pay one-time costs (compiler detection, lazy imports, Devito's first lowering)."""
    from devito import Eq, Function, Grid
    f = Function(name='warm_up', grid=Grid(shape=(4,)))
    _ = Operator(Eq(f, f + 1), name='WarmUp').cfunction


def unbuffer_large_allocations():
    """Make glibc return every large block to the OS when it is freed.

    By default glibc raises its mmap threshold after a large block is freed, so a
    temporary the operator frees could stay resident and be reused by the next run,
    hiding it from the RSS measurement. A fixed threshold (``M_MMAP_THRESHOLD``)
    keeps blocks above 128 KiB in their own mappings.
    """
    try:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass  # not glibc: measurements may under-report temporaries


def rss():
    """Resident set size of this process in bytes (``/proc/self/statm``)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


class PeakRss:
    """Context manager sampling the resident memory from a background thread.

    ``extra`` is the peak resident memory seen inside the block minus the resident
    memory at entry. ``op.apply`` runs the compiled code through ctypes, which releases
    the GIL, so the sampler keeps running while the operator does.

    Parameters
    ----------
    interval : float
        Seconds between samples.
    """

    def __init__(self, interval=0.002):
        self.interval = interval
        self.base = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss())
            self._stop.wait(self.interval)

    def __enter__(self):
        self.base = self.peak = rss()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def extra(self):
        return self.peak - self.base


# -- problems -------------------------------------------------------------------------

def paper_cases(shape, n3d, nt):
    """The PerforAD paper's stencils (1D wave, 3D wave, 1D Burgers), float64: primal,
    derived adjoint and scatter adjoint (tests/test_paper.py checks them against
    NumPy).

    Parameters
    ----------
    shape : tuple of int
        The 1D grid (Burgers uses a quarter of it).
    n3d : int
        Points per side of the 3D wave's grid.
    nt : int
        Time steps.

    Yields
    ------
    Case
    """
    from devito import Eq, Grid

    def wave(n, ndim, c):
        grid = Grid(shape=(n,) * ndim, dtype=np.float64)
        u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
        lap = sum(u.shift(d, d.spacing) + u.shift(d, -d.spacing) - 2 * u
                  for d in grid.dimensions)
        return u, [Eq(u.forward, 2 * u - u.backward + c * lap)]

    def burgers(n):
        grid = Grid(shape=(n,), dtype=np.float64)
        u = TimeFunction(name='u', grid=grid, space_order=2, save=nt + 2)
        return u, burgers_step(u)

    # Static OpenMP scheduling for all (AdjointOperator's default): Devito would pick
    # schedule(dynamic, 1) for the Burgers primal, which is far slower on long 1D loops.
    kw = dict(opt=('advanced', {'par-dynamic-work': np.inf}))

    def contiguous(primal):
        with openmp_chunks_of_one():
            return Operator(primal, **kw)
    steps = dict(time_m=1, time_M=nt)
    for label, (u, primal) in [('1D wave', wave(shape[0], 1, 0.3)),
                               ('3D wave', wave(n3d, 3, 0.1)),
                               ('1D Burgers', burgers(shape[0] // 4))]:
        # The adjoint of the time stepping: a buffered adjoint field, seeded with the
        # final levels (for Burgers, the primal is saved for its nonlinear terms)
        ub = TimeFunction(name='ub', grid=u.grid, space_order=u.space_order,
                          time_order=u.time_order)
        yield Case(label, 'primal', lambda p=primal: Operator(p, **kw), steps)
        if u.grid.dim == 1:
            # Like for like: the schedule the derived adjoint gets for a lone loop
            yield Case(label, 'primal, contiguous chunks', lambda p=primal: contiguous(p),
                       steps)
        yield Case(label, 'derived adjoint',
                   lambda p=primal, u=u, ub=ub: AdjointOperator(p, {u: ub}, **kw), steps)
        if u.save is not None:
            # An objective on every saved level: the adjoint field is saved too and
            # takes a seed at each level, read and rewritten as the adjoint passes
            ubs = adjoint_function(u)
            yield Case(label, 'derived adjoint, seeds at every level',
                       lambda p=primal, u=u, ub=ubs: AdjointOperator(p, {u: ub}, **kw),
                       steps)
        yield Case(label, 'scatter adjoint',
                   lambda p=primal, u=u, ub=ub: AdjointOperator(p, {u: ub},
                                                                mode='scatter', **kw),
                   steps)


def setup(shape, nbl, so, nt, dtype=np.float32):
    """Devito's acoustic model with one source and a line of receivers.

    Returns
    -------
    model, geometry, iso_stencil
        The model, its acquisition geometry and Devito's stencil function.
    """
    from examples.seismic.acoustic.operators import iso_stencil

    from examples.seismic import AcquisitionGeometry, demo_model

    spacing = (10.0,) * len(shape)
    model = demo_model('layers-isotropic', shape=shape, spacing=spacing, nbl=nbl,
                       space_order=so, dtype=dtype, nlayers=4)
    extent = [(n - 1) * h for n, h in zip(shape, spacing, strict=True)]
    dt = model.critical_dt
    src_coords = np.array([[e / 2 for e in extent[:-1]] + [20.0]])
    nrec = shape[0]
    rec_coords = np.zeros((nrec, len(shape)))
    rec_coords[:, 0] = np.linspace(0, extent[0], nrec)
    rec_coords[:, 1:-1] = extent[1] / 2
    rec_coords[:, -1] = 30.0
    geometry = AcquisitionGeometry(model, rec_coords, src_coords, 0.0, (nt - 1) * dt,
                                   f0=0.010, src_type='Ricker')
    return model, geometry, iso_stencil


def acoustic_cases(shape, nbl, so, nt):
    """Every operator compared on Devito's acoustic model.

    Parameters
    ----------
    shape, nbl, so, nt
        Interior grid, absorbing layer width, space order and time steps.

    Yields
    ------
    Case
    """
    from examples.seismic.acoustic import AcousticWaveSolver

    model, geometry, iso_stencil = setup(shape, nbl, so, nt)
    grid, s = model.grid, model.grid.stepping_dim.spacing
    nt = geometry.nt
    kw = dict(subs=model.spacing_map, opt='advanced')

    src, rec = geometry.src, geometry.rec  # each access makes a new object: once

    def forward(u):
        return (iso_stencil(u, model, 'OT2')
                + src.inject(field=u.forward, expr=src * s ** 2 / model.m)
                + rec.interpolate(expr=u))

    u = TimeFunction(name='u', grid=grid, time_order=2, space_order=so)
    usave = TimeFunction(name='usave', grid=grid, time_order=2, space_order=so, save=nt)
    ub = TimeFunction(name='ub', grid=grid, time_order=2, space_order=so)
    recb = adjoint_function(rec)
    recb.data[:] = np.random.default_rng(0).standard_normal(recb.data.shape)
    vpb = adjoint_function(model.vp)
    solver = AcousticWaveSolver(model, geometry, space_order=so)
    v = TimeFunction(name='v', grid=grid, time_order=2, space_order=so)
    grad = adjoint_function(model.vp, 'grad')
    srca = geometry.new_src(name='srca', src_type=None)
    steps = dict(dt=model.critical_dt, time_m=1, time_M=nt - 2)
    adjoints = {u: ub, rec: recb}
    yield Case('', 'primal', lambda: Operator(forward(u), name='Forward', **kw), steps)
    yield Case('', 'derived adjoint',
               lambda: AdjointOperator(forward(u), adjoints, **kw), steps)
    yield Case('', 'scatter adjoint',
               lambda: AdjointOperator(forward(u), adjoints, mode='scatter', **kw),
               steps)
    yield Case('', 'derived gradient',
               lambda: AdjointOperator(forward(usave),
                                       {usave: ub, rec: recb, model.vp: vpb}, **kw),
               steps)
    yield Case('', "Devito's adjoint", solver.op_adj,
               dict(rec=recb, v=v, srca=srca, vp=model.vp, **steps))
    yield Case('', "Devito's gradient", lambda: solver.op_grad(save=True),
               dict(rec=recb, v=v, u=usave, grad=grad, vp=model.vp, **steps))
    if len(shape) == 2:
        yield from peer_cases(shape, nbl, nt)


class Peer:
    """A baseline outside Devito with the part of an Operator's interface that
    :func:`measure` uses: ``cfunction`` compiles (JAX's trace and XLA compile),
    ``apply`` runs and waits for the result."""

    parameters = ()  # no Devito thread arguments: the child's CPUs are pinned instead
    input = ()  # no Devito fields

    def __init__(self, run, compile=None):
        self.run, self.compile = run, compile

    @property
    def cfunction(self):
        if self.compile is not None:
            self.run = self.compile()

    def apply(self, **kwargs):
        self.run()


def peer_cases(shape, nbl, nt):
    """JAX's ``jax.grad`` and deepwave on the same 2D problem
    (``jax_baseline.py``, ``deepwave_baseline.py``), where they are installed.

    Each runs in a child process per thread count (:func:`measure_isolated`), with
    the process pinned to that many CPUs (XLA sizes its thread pool by them) and
    torch's thread count set; one timed run after the warm-up, as they are slow.
    """
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    n = shape[0] + 2 * nbl

    def jax_peer(which):
        def build():
            import jax_baseline
            fns, m = jax_baseline.functions(n, nt)
            compiled = None

            def compile():
                nonlocal compiled
                compiled = fns[which].lower(m).compile()
                return lambda: compiled(m).block_until_ready()
            return Peer(None, compile)
        return build

    def deepwave_peer(which):
        def build():
            import deepwave_baseline
            return Peer(deepwave_baseline.functions(shape[0], nbl, nt)[which])
        return build

    for lib, peer in (('JAX', jax_peer), ('deepwave', deepwave_peer)):
        for which in ('forward', 'gradient'):
            yield Case('', f'{lib} {which}', peer(which), {}, repeats=1)


# -- measurement ----------------------------------------------------------------------

def is_cached(op):
    """Whether the compiled ``.so`` of ``op`` is already in Devito's JIT cache."""
    compiler = getattr(op, '_compiler', None)
    if compiler is None:
        return False  # not a Devito Operator
    return (compiler.get_jit_dir() / f'{op._soname}{compiler.so_ext}').exists()


def compile_op(build):
    """Build and JIT-compile an Operator.

    Returns
    -------
    op, build_s, compile_s, cached
        The Operator, the seconds spent constructing it (derivation and lowering) and
        compiling it (code generation, C compiler, loading), and whether the compile
        was a cache hit.
    """
    t0 = time.perf_counter()
    op = build()
    t1 = time.perf_counter()
    cached = is_cached(op)
    _ = op.cfunction
    return op, t1 - t0, time.perf_counter() - t1, cached


def field_sizes(op, kwargs):
    """Bytes of the fields ``op`` touches (halo included), and of one grid array.

    Parameters
    ----------
    op : Operator
    kwargs : dict
        The ``apply`` arguments; a field passed there replaces the operator's own.

    Returns
    -------
    total, grid_array : int
        The sum over the operator's input functions of their allocated size, and the
        size of one time level of its largest grid field (what a per-thread copy of a
        full array would cost).
    """
    funcs = {f.name: f for f in op.input if getattr(f, 'is_DiscreteFunction', False)}
    funcs.update({k: v for k, v in kwargs.items() if k in funcs})
    total = sum(f.nbytes for f in funcs.values())
    grid = [f.nbytes // f.shape_allocated[0] if f.is_TimeFunction else f.nbytes
            for f in funcs.values() if not f.is_SparseFunction]
    return total, max(grid, default=0)


def thread_args(op, nthreads):
    """``apply`` arguments running every parallel region of ``op`` on ``nthreads``.

    Devito sizes the teams of sparse operations (``nthreads_nonaffine``) separately:
    they would otherwise take every core even where ``nthreads=1``.
    """
    names = {p.name for p in op.parameters}
    return {k: nthreads for k in ('nthreads', 'nthreads_nonaffine') if k in names}


def cpu_seconds():
    """User and system CPU time of this process, all threads, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed_run(op, kwargs, nthreads):
    """Run ``op`` once.

    Returns
    -------
    wall, share : float
        The wall-clock seconds, and the CPU share: CPU seconds over ``nthreads`` times
        wall seconds. Well below 1 means other processes held the cores during the run
        (OpenMP threads that spin at barriers can hide this with several threads; with
        one it is exact).
    """
    c0, t0 = cpu_seconds(), time.perf_counter()
    op.apply(**thread_args(op, nthreads), **kwargs)
    wall = time.perf_counter() - t0
    return wall, (cpu_seconds() - c0) / (wall * nthreads)


def extra_memory(op, kwargs, nthreads):
    """Peak resident memory during one run minus the resident memory before it."""
    with PeakRss() as peak:
        op.apply(**thread_args(op, nthreads), **kwargs)
    return peak.extra


def prepare(case):
    """Build and JIT-compile one case.

    An optional case (:data:`OPTIONAL`) that fails to build or compile is returned
    with ``skipped`` set instead of raising.

    Returns
    -------
    Result, Operator
        The result with build and compile times and field sizes, and the operator
        (None where skipped).
    """
    result = Result(case)
    try:
        op, result.build, result.compile, result.cached = compile_op(case.build)
    except Exception as e:  # noqa: BLE001 - optional comparisons only
        if case.role not in OPTIONAL:
            raise
        result.skipped = f'{type(e).__name__}: {str(e).splitlines()[0][:120]}'
        print(f'{case.name}: skipped ({result.skipped})', flush=True)
        return result, None
    result.fields, result.grid_array = field_sizes(op, case.kwargs)
    return result, op


def time_rounds(prepared, nthreads, repeats):
    """Time every prepared operator at ``nthreads`` in rounds, after a warm-up run each.

    Round ``k`` runs each operator once, starting from the ``k``-th, so that no case
    always follows the same one. A case with its own ``repeats`` (the slow peers) sits
    out the rounds past it. Fills ``runs``, ``times`` (the median over the rounds) and
    ``cpu_share`` (the median share) of each Result.
    """
    for result, op in prepared:  # warm-up (also allocates the fields)
        op.apply(**thread_args(op, nthreads), **result.case.kwargs)
    shares = {id(result): [] for result, _ in prepared}
    for k in range(max(r.case.repeats or repeats for r, _ in prepared)):
        shift = k % len(prepared)
        for result, op in prepared[shift:] + prepared[:shift]:
            if k < (result.case.repeats or repeats):
                wall, share = timed_run(op, result.case.kwargs, nthreads)
                result.runs.setdefault(nthreads, []).append(wall)
                shares[id(result)].append(share)
    for result, _ in prepared:
        result.times[nthreads] = float(np.median(result.runs[nthreads]))
        result.cpu_share[nthreads] = float(np.median(shares[id(result)]))


def print_result(result):
    """One progress line: build, compile, time, CPU share and memory per thread count."""
    if result.skipped:
        print(f'{result.case.name}: skipped ({result.skipped})', flush=True)
        return
    print(f'{result.case.name}: build {result.build:.1f} s, compile '
          f'{result.compile:.1f} s'
          + ''.join(f', {n} thr {t:.3f} s (CPU share {result.cpu_share[n]:.2f}, '
                    f'+{result.extra_rss[n] / MB:.1f} MB)'
                    for n, t in result.times.items()), flush=True)


def measure(cases, threads, repeats):
    """Build and compile every case, then time them together in rounds
    (:func:`time_rounds`) and measure the memory of each run.

    Returns
    -------
    list of Result
        In the order of ``cases``.
    """
    prepared = [prepare(case) for case in cases]
    live = [(result, op) for result, op in prepared if op is not None]
    for n in threads:
        if live:
            time_rounds(live, n, repeats)
        for result, op in live:
            result.extra_rss[n] = extra_memory(op, result.case.kwargs, n)
    for result, _ in live:
        print_result(result)
    return [result for result, _ in prepared]


RESULT_LINE = 'RESULT-JSON '


def child_argv(problem, spec, args, name, threads):
    """Command line that measures the case ``name`` alone in a new interpreter."""
    argv = [sys.executable, str(Path(__file__).resolve()), '--problem', problem,
            '--child', name, '--repeats', str(args.repeats), '--jit-cache',
            args.jit_cache, '--threads', *map(str, threads),
            '--shape', *map(str, spec['shape']), '--nt', str(spec['nt'])]
    return argv + (['--quick'] if args.quick else [])


def measure_child(case, problem, spec, args, threads):
    """:func:`measure` one case at ``threads`` in a child process.

    Returns
    -------
    Result
    """
    proc = subprocess.run(child_argv(problem, spec, args, case.name, threads),
                          capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_LINE)]
    result = Result(case)
    if proc.returncode or not lines:
        rc = proc.returncode
        why = (f'crashed ({signal.Signals(-rc).name})' if rc < 0 else
               (proc.stderr.strip().splitlines() or [f'exit status {rc}'])[-1][:160])
        result.skipped = f'child process: {why}'
        return result
    data = json.loads(lines[-1][len(RESULT_LINE):])
    for key in ('times', 'runs', 'cpu_share', 'extra_rss'):
        data[key] = {int(n): v for n, v in data[key].items()}
    data['partners'] = {role: {int(n): v for n, v in runs.items()}
                        for role, runs in data['partners'].items()}
    vars(result).update(data)
    return result


def measure_isolated(case, problem, spec, args):
    """:func:`measure` one case in a child process, so that a crash (an OpenMP array
    reduction overflowing a thread's stack, say) or a missing optional package skips
    the case instead of ending the benchmark. A peer (:data:`PEERS`) runs in one child
    per thread count, pinned to that many CPUs.

    Returns
    -------
    Result
    """
    if case.role not in PEERS:
        result = measure_child(case, problem, spec, args, args.threads)
    else:
        parts = [measure_child(case, problem, spec, args, [n]) for n in args.threads]
        result = next((r for r in parts if r.skipped), parts[0])
        if not result.skipped:
            for key in ('times', 'runs', 'cpu_share', 'extra_rss'):
                for r in parts:
                    getattr(result, key).update(getattr(r, key))
    print_result(result)
    return result


def as_json(result):
    """The measured numbers of ``result`` as one JSON line (for the parent process)."""
    data = {k: v for k, v in vars(result).items() if k != 'case'}
    return RESULT_LINE + json.dumps(data)


# -- report ---------------------------------------------------------------------------

def groups(results):
    """Measured results by group, in order, with each group's primal.

    Returns
    -------
    dict
        ``{group: (primal Result, [Result, ...])}``.
    """
    out = {}
    for r in results:
        if not r.skipped:
            out.setdefault(r.case.group, []).append(r)
    return {g: (next(r for r in rs if r.case.role == 'primal'), rs)
            for g, rs in out.items()}


def paired(a, b, n):
    """Time of ``a`` over time of ``b`` at ``n`` threads, paired by round.

    Where both ran in the same rounds (:func:`time_rounds`: both in this process, or
    one in a child process that timed the other as its partner), the ratio within each
    round, so that both saw the machine in the same state.

    Returns
    -------
    median, lowest, highest : float
        The median over the rounds and the range; where the runs cannot be paired (a
        peer measured on its own in a child process), the ratio of the medians three
        times.
    """
    if a.case.role not in OPTIONAL and b.case.role not in OPTIONAL:
        ra, rb = a.runs.get(n, []), b.runs.get(n, [])
    elif b.case.role in a.partners:
        ra, rb = a.runs.get(n, []), a.partners[b.case.role].get(n, [])
    elif a.case.role in b.partners:
        ra, rb = b.partners[a.case.role].get(n, []), b.runs.get(n, [])
    else:
        ra, rb = [], [None]
    if not ra or len(ra) != len(rb):
        value = a.times[n] / b.times[n]
        return value, value, value
    within = np.array(ra) / np.array(rb)
    return float(np.median(within)), float(within.min()), float(within.max())


def table(results, threads):
    """The markdown table: times, ratios to the group's primal, compile and memory."""
    head = (['operator', 'build (s)', 'JIT compile (s)']
            + [c for n in threads for c in (f'{n} thr (s)', 'x primal', 'CPU share')]
            + ['fields (MB)'] + [f'extra RSS, {n} thr (MB)' for n in threads])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    for primal, rs in groups(results).values():
        for r in rs:
            cells = ([r.case.name, f'{r.build:.1f}',
                      f'{r.compile:.1f}' + (' (cached)' if r.cached else '')]
                     + [c for n in threads for c in
                        (f'{r.times[n]:.3f}', f'{paired(r, primal, n)[0]:.2f}',
                         f'{r.cpu_share[n]:.2f}')]
                     + [f'{r.fields / MB:.1f}' if r.case.role not in PEERS else '-']
                     + [f'{r.extra_rss[n] / MB:.1f}' for n in threads])
            lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def ratio(rs, num, den, attr, n=None):
    """``num / den`` of a Result attribute for two roles, as text, or None where
    either is missing (or, for compile times, was a cache hit). Run times are paired
    by round (:func:`paired`), with the range over the rounds."""
    by_role = {r.case.role: r for r in rs}
    if num not in by_role or den not in by_role:
        return None
    a, b = by_role[num], by_role[den]
    if attr == 'compile' and (a.cached or b.cached):
        return None  # a cache hit is no compile time
    if attr != 'times':
        return f'{getattr(a, attr) / getattr(b, attr):.2f}'
    value, low, high = paired(a, b, n)
    return f'{value:.2f}' + (f' [{low:.2f}-{high:.2f}]' if high > low else '')


def summary(results, threads):
    """One line per group: the ratios the issue's targets are about."""
    n = threads[-1]
    lines = []
    for group, (_, rs) in groups(results).items():
        parts = []
        for label, num, den, attr, k in [
                ('derived adjoint / primal', 'derived adjoint', 'primal', 'times', n),
                ('derived adjoint / primal with contiguous chunks', 'derived adjoint',
                 'primal, contiguous chunks', 'times', n),
                ('derived adjoint with seeds at every level / primal',
                 'derived adjoint, seeds at every level', 'primal', 'times', n),
                ('scatter adjoint / primal', 'scatter adjoint', 'primal', 'times', n),
                ('scatter / derived adjoint', 'scatter adjoint', 'derived adjoint',
                 'times', n),
                ("derived gradient / Devito's gradient", 'derived gradient',
                 "Devito's gradient", 'times', n),
                ("derived adjoint / Devito's adjoint", 'derived adjoint',
                 "Devito's adjoint", 'times', n),
                ('derived adjoint / hand-written adjoint', 'derived adjoint',
                 'hand-written adjoint', 'times', n),
                ("derived gradient, every parameter / Devito's gradient",
                 'derived gradient, vp b qp', "Devito's gradient", 'times', n),
                ('JAX gradient / derived gradient', 'JAX gradient', 'derived gradient',
                 'times', n),
                ('deepwave gradient / derived gradient', 'deepwave gradient',
                 'derived gradient', 'times', n),
                ('JIT compile, derived adjoint / primal', 'derived adjoint', 'primal',
                 'compile', None),
                ('build, derived adjoint / primal', 'derived adjoint', 'primal', 'build',
                 None)]:
            value = ratio(rs, num, den, attr, k)
            if value is not None:
                parts.append(f'{label} = {value}')
        ours = [r for r in rs if r.case.role not in PEERS]
        mem = max(r.extra_rss[m] for r in ours for m in threads)
        grid = max(r.grid_array for r in ours)
        parts.append(f'largest extra RSS during a Devito run = {mem / MB:.1f} MB, one '
                     f'grid array = {grid / MB:.1f} MB')
        lines.append(f'- {group or "ratios"} (at {n} threads): ' + '; '.join(parts)
                     + '.')
    return lines


def notes(results):
    """Lines for skipped cases and cache hits."""
    lines = [f'- {r.case.name}: not measured ({r.skipped}).'
             for r in results if r.skipped]
    if any(r.cached for r in results if not r.skipped):
        lines.append('- (cached): the compiled operator was found in the JIT cache.')
    return lines


def write_markdown(title, results, threads, path, context=()):
    """Write the table, the summary and the notes; return the text.

    ``context`` holds extra lines for the notes (machine load, cache).
    """
    text = '\n'.join(
        [f'## {title}', ''] + table(results, threads) + [''] + summary(results, threads)
        + notes(results) + [f'- {line}' for line in context]
        + ['', FOOTNOTE, ''])
    path.write_text(text)
    return text


def pyplot():
    """matplotlib.pyplot with the file-only backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    plt.rcParams.update({'font.size': 8, 'axes.titlesize': 8})
    return plt


def threads_label(n):
    """'1 thread', '2 threads', ..."""
    return f'{n} thread' + 's' * (n > 1)


def plot_times(title, results, threads, path):
    """Bar chart: median run time of every case at every thread count."""
    plt = pyplot()
    rs = [r for r in results if not r.skipped]
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(rs)), 3.8))
    width = 0.8 / len(threads)
    for i, n in enumerate(threads):
        ax.bar(np.arange(len(rs)) + i * width, [r.times[n] for r in rs], width,
               label=threads_label(n))
    ax.set_xticks(np.arange(len(rs)) + 0.4 - width / 2, [r.case.name for r in rs],
                  rotation=25, ha='right')
    ax.set_ylabel('time (s)')
    ax.set_title(f'{title}: median run time', fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def log_axes(ax, threads):
    """Log-log axes with plain numbers: the thread counts on x, seconds on y."""
    from matplotlib.ticker import FormatStrFormatter, NullLocator
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xticks(threads, [str(n) for n in threads])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FormatStrFormatter('%.3g'))
    ax.yaxis.set_minor_formatter(FormatStrFormatter('%.3g'))


def plot_threads(title, results, threads, path):
    """Thread scaling, log-log: one panel per group, one line per case, with ideal
    scaling of the primal dotted."""
    plt = pyplot()
    gs = groups(results)
    fig, axes = plt.subplots(1, len(gs), figsize=(4.5 * len(gs), 3.8), squeeze=False)
    for ax, (group, (primal, rs)) in zip(axes[0], gs.items(), strict=True):
        for r in rs:
            ax.plot(threads, [r.times[n] for n in threads], 'o-', label=r.case.role)
        t1 = primal.times[threads[0]] * threads[0]
        ax.plot(threads, [t1 / n for n in threads], 'k:', label='ideal (primal)')
        log_axes(ax, threads)
        ax.set_xlabel('threads')
        ax.set_ylabel('time (s)')
        ax.set_title(group or title, fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_compile(title, results, path):
    """Horizontal stacked bars: build and JIT compile time of every case."""
    plt = pyplot()
    rs = [r for r in results if not r.skipped][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rs) + 1.2))
    y = np.arange(len(rs))
    builds = [r.build for r in rs]
    ax.barh(y, builds, label='build (derivation, lowering)')
    ax.barh(y, [r.compile for r in rs], left=builds, label='JIT compile (C compiler)')
    ax.set_yticks(y, [r.case.name for r in rs], fontsize=8)
    ax.set_xlabel('time (s)')
    ax.set_title(f'{title}: build and compile', fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_memory(title, results, threads, path):
    """Bars per case: fields' size, and extra resident memory during a run per thread
    count, against the size of one full grid array."""
    plt = pyplot()
    rs = [r for r in results if not r.skipped][::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.35 * len(rs) + 1.4),
                                      sharey=True)
    y = np.arange(len(rs))
    left.bar_label(left.barh(y, [r.fields / MB for r in rs], color='grey'),
                   fmt='%.1f', fontsize=7)
    left.margins(x=0.15)
    left.set_yticks(y, [r.case.name for r in rs], fontsize=8)
    left.set_xlabel('fields (MB)')
    height = 0.8 / len(threads)
    for i, n in enumerate(threads):
        bars = right.barh(y + i * height - 0.4 + height / 2,
                          [r.extra_rss[n] / MB for r in rs], height,
                          label=threads_label(n))
        right.bar_label(bars, fmt='%.1f', fontsize=6)
    grid = max(r.grid_array for r in rs) / MB
    right.axvline(grid, color='k', ls=':', label=f'one grid array ({grid:.1f} MB)')
    right.set_xlabel('extra resident memory during a run (MB)')
    right.legend(fontsize=7)
    fig.suptitle(f'{title}: memory', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(title, results, threads, out, name, context=()):
    """Write ``name.md`` and the plots to ``out``; print the table."""
    print(write_markdown(title, results, threads, out / f'{name}.md', context))
    title = title.split(' {')[0]  # the sizes are in the markdown
    plot_times(title, results, threads, out / f'{name}.png')
    plot_threads(title, results, threads, out / f'{name}_threads.png')
    plot_compile(title, results, out / f'{name}_compile.png')
    plot_memory(title, results, threads, out / f'{name}_memory.png')


# -- driver ---------------------------------------------------------------------------

def revision():
    """The git commit of the package, marked where ``devito_perforad/`` has changes."""
    import subprocess
    try:
        head = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(['git', 'status', '--porcelain', 'devito_perforad'],
                               check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return 'unknown'
    return head + (' with uncommitted changes in devito_perforad/' if dirty else '')


def priority():
    """The scheduling niceness of this process (and of its autogroup), as text."""
    try:
        group = Path('/proc/self/autogroup').read_text().split()[-1]
    except (OSError, IndexError):
        return f'nice {os.nice(0)}'
    return f'nice {os.nice(0)}, autogroup nice {group}'


def load():
    """The 1-minute load average and the number of CPUs, as text."""
    return f'{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs'


def problem_cases(problem, spec):
    """The cases of ``problem`` at the sizes ``spec``, and the problem's label."""
    if problem == 'paper':
        return paper_cases(**spec), 'PerforAD paper stencils'
    if problem == 'physics':
        return ((Case(*case) for case in physics_cases(**spec)),
                "propagators of Devito's examples.seismic")
    if problem == 'physics-gradient':
        return ((Case(*case) for case in gradient_cases(**spec)),
                "gradients of Devito's examples.seismic propagators")
    if problem == 'staggered':
        return ((Case(*case) for case in staggered_cases(**spec)),
                "staggered-grid propagators of Devito's examples.seismic")
    if problem == 'staggered-3d':
        return ((Case(*case) for case in staggered_cases(**spec, groups=('elastic',))),
                "Devito's 3D elastic propagator")

    return acoustic_cases(**spec), 'acoustic'


def run_problem(problem, spec, args):
    """Measure every case of one problem and write its results.

    Optional cases run in a child process (:func:`measure_isolated`); with
    ``args.child`` set, this process is that child: it measures only the case of that
    name and prints its numbers instead of writing results.
    """
    cases, label = problem_cases(problem, spec)
    if args.child:
        cases = list(cases)
        case = next(c for c in cases if c.name == args.child)
        if case.role in PEERS:  # the libraries size their thread pools by the CPUs
            os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.threads[0]])
        partners = [c for c in cases if c.group == case.group
                    and c.role in PARTNERS.get(case.role, ())]
        *others, result = measure([*partners, case], args.threads, args.repeats)
        result.partners = {r.case.role: r.runs for r in others}
        print(as_json(result), flush=True)
        return
    start, rev, t0 = load(), revision(), time.perf_counter()
    cases = list(cases)
    together = iter(measure([c for c in cases if c.role not in OPTIONAL], args.threads,
                            args.repeats))
    results = [measure_isolated(case, problem, spec, args) if case.role in OPTIONAL
               else next(together) for case in cases]
    context = [f'Package at {rev}; {priority()}.',
               f'Load average {start} at the start, {load()} at the end; '
               f'{time.perf_counter() - t0:.0f} s in all; rounds: {args.repeats}, each '
               'running every operator measured in this process once (x primal and '
               'the ratios: median over the rounds of the ratio within a round, '
               '[lowest-highest]).', CACHE_NOTE[args.jit_cache],
               f'{", ".join(OPTIONAL)}: measured in a child process each (same '
               'steps), so that a crash cannot end the benchmark; the scatter adjoint '
               "in rounds with its group's primal and derived adjoint, timed again in "
               'the child (its ratios to them are paired there); the peers (JAX, '
               'deepwave) in one child per thread count pinned to that many CPUs, '
               'one timed run each (their ratios are ratios of times from different '
               'processes).']
    report(f'{problem} {label} {spec}', results, args.threads, args.out,
           OUTPUT[problem], context)


def parse_args(argv=None):
    """Command-line arguments, with the problem list and sizes resolved."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--problem', nargs='+', choices=[*PROBLEMS, 'all'],
                        help="problems to run (default: 2d; 2d and paper with "
                        "--quick, which covers every code path; 'all' adds 3d and "
                        "physics)")
    parser.add_argument('--threads', type=int, nargs='+',
                        default=[1, min(2, os.cpu_count())])
    parser.add_argument('--repeats', type=int, default=5,
                        help='rounds of timed runs per thread count')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes and one repeat: a smoke test of the harness')
    parser.add_argument('--shape', type=int, nargs='+', help='override the grid shape')
    parser.add_argument('--nt', type=int, help='override the number of time steps')
    parser.add_argument('--out', type=Path, help='output directory (default: '
                        'benchmarks/results, or a temporary one with --quick)')
    parser.add_argument('--jit-cache', choices=['fresh', 'keep'],
                        help="'fresh' (default): compile every operator into an empty "
                        "cache, so that compile times are real; 'keep' (default with "
                        "--quick): use Devito's cache, whose hits are marked (cached)")
    parser.add_argument('--child', help=argparse.SUPPRESS)  # see run_problem
    args = parser.parse_args(argv)
    problems = args.problem or (['2d', 'paper'] if args.quick else ['2d'])
    args.problem = list(PROBLEMS) if 'all' in problems else list(dict.fromkeys(problems))
    if (args.shape or args.nt or args.child) and len(args.problem) > 1:
        parser.error('--shape and --nt need a single --problem')
    if args.quick:
        args.repeats = 1
    args.jit_cache = args.jit_cache or ('keep' if args.quick else 'fresh')
    if args.out is None and not args.child:
        args.out = (Path(tempfile.mkdtemp(prefix='perforad-quick-')) if args.quick
                    else Path('benchmarks/results'))
    return args


def main(argv=None):
    args = parse_args(argv)
    if not args.child:
        args.out.mkdir(parents=True, exist_ok=True)
    if args.jit_cache == 'fresh':
        fresh_jit_cache()
    unbuffer_large_allocations()
    warm_up_compiler()
    for problem in args.problem:
        spec = dict((QUICK if args.quick else PROBLEMS)[problem])
        if args.shape:
            spec['shape'] = tuple(args.shape)
        if args.nt:
            spec['nt'] = args.nt
        run_problem(problem, spec, args)
    if not args.child:
        print(f'results in {args.out}')


if __name__ == '__main__':
    main()
