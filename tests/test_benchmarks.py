"""The benchmark harness runs end to end (``benchmarks/run.py --quick``: tiny sizes, one
round) and writes its tables and plots, and its rounds pair the runs they compare.
Timings are not asserted."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_benchmark_harness(tmp_path):
    proc = subprocess.run([sys.executable, 'benchmarks/run.py', '--quick', '--out',
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ['results', 'results_paper']:
        table = (tmp_path / f'{name}.md').read_text()
        for case in ['primal', 'derived adjoint', 'scatter adjoint']:
            assert f'| {case}' in table or f' {case} |' in table, (name, case, table)
        if name == 'results':  # JAX and deepwave: measured, or skipped with a note
            for peer in ['JAX gradient', 'deepwave gradient']:
                assert f'| {peer} |' in table or f'- {peer}: not measured' in table
        for plot in ['', '_threads', '_compile', '_memory']:
            png = tmp_path / f'{name}{plot}.png'
            assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', png



@pytest.mark.slow
def test_loop_report(tmp_path):
    """``benchmarks/loops.py`` writes a row for the primal's and the derived adjoint's
    stencil loop in every problem, with no gathers in the 2D and 3D acoustic ones."""
    proc = subprocess.run([sys.executable, 'benchmarks/loops.py', '--quick', '--out',
                           str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / 'loops.md').read_text()
    for problem in ['2d', '3d', 'paper']:
        assert f'## {problem}' in text
    rows = [[c.strip() for c in ln.strip('|').split('|')] for ln in text.splitlines()
            if ln.startswith('| ') and not ln.startswith('| operator')]
    names = {r[0] for r in rows}
    for name in ['primal', 'derived adjoint', 'derived gradient', "Devito's gradient",
                 '3D wave derived adjoint', '1D Burgers derived adjoint']:
        assert name in names, (name, text)
    head = [c.strip() for c in text.split('| operator')[1].split('\n')[0].split('|')]
    gathers = head.index('gathers')
    for r in rows:
        if r[0] in ('primal', 'derived adjoint', 'derived gradient'):
            assert r[gathers] == '0', r


@pytest.mark.slow
def test_compile_report(tmp_path):
    """``benchmarks/compile.py`` compiles every Devito operator of a problem from an
    empty cache and reports the median with its ratio to the primal."""
    proc = subprocess.run([sys.executable, 'benchmarks/compile.py', '--problem', 'paper',
                           '--repeats', '2', '--out', str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (tmp_path / 'compile.md').read_text()
    rows = {r[0]: r for r in ([c.strip() for c in ln.strip('|').split('|')]
                              for ln in text.splitlines() if ln.startswith('| 1D')
                              or ln.startswith('| 3D'))}
    for name in ['1D wave primal', '1D wave derived adjoint', '3D wave derived adjoint',
                 '1D Burgers derived adjoint']:
        assert name in rows, (name, text)
        assert len(rows[name][3].split()) == 2  # two real compiles
    assert rows['1D wave primal'][2] == '1.00'


def test_burgers_hand_written_adjoint_is_the_derived_one():
    """``benchmarks/burgers_floor.py`` times a hand-written Burgers adjoint against the
    derived one: on the interior it must compute the same step, and the script runs."""
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    from burgers_floor import operators
    ops = operators(64, 4)
    u, ub = (next(f for f in ops['derived adjoint'].input if f.name == name)
             for name in ('u', 'ub'))
    seed = np.random.default_rng(1).standard_normal(64)
    results = []
    for name in ('derived adjoint', 'hand-written adjoint (interior)'):
        ub.data[:] = 0
        ub.data[0] = seed  # level 4; level 3 (slot 1) starts at 0
        ops[name].apply(time_m=3, time_M=3)  # one step: level 3 from level 4
        results.append(ub.data[1].copy())
    assert np.abs(results[0]).max() > 0
    assert np.allclose(results[0][1:-1], results[1][1:-1], rtol=1e-13, atol=1e-13)
    proc = subprocess.run([sys.executable, 'benchmarks/burgers_floor.py', '--n', '4000',
                           '--nt', '5', '--rounds', '1'], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'hand-written adjoint (interior):' in proc.stdout


class FakeOperator:
    """Stands in for an Operator: ``apply`` logs its name and the clock moves by its
    cost times the machine's current slowness."""

    parameters = ()

    def __init__(self, name, cost, clock, log):
        self.name, self.cost, self.clock, self.log = name, cost, clock, log

    def apply(self, **kwargs):
        self.log.append(self.name)
        self.clock['now'] += self.cost * self.clock['slowness'](len(self.log))


def test_rounds_rotate_and_ratios_pair_within_a_round(monkeypatch):
    """Every operator runs once per round, the order rotates, and a ratio is taken
    within each round: a machine that slows down threefold in the middle of round 1
    spoils that round's ratio only, and the median over the rounds keeps the true one."""
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    import run

    clock, log = {'now': 0.0, 'slowness': lambda k: 1.0 if k <= 7 else 3.0}, []
    monkeypatch.setattr(run.time, 'perf_counter', lambda: clock['now'])
    monkeypatch.setattr(run, 'cpu_seconds', lambda: clock['now'])
    ops = [FakeOperator(name, cost, clock, log)
           for name, cost in [('primal', 1.0), ('adjoint', 1.1), ('gradient', 2.0)]]
    prepared = [(run.Result(run.Case('', op.name, None, {})), op) for op in ops]
    run.time_rounds(prepared, nthreads=1, repeats=4)

    warm_up, timed = log[:3], log[3:]
    assert warm_up == ['primal', 'adjoint', 'gradient']
    assert [timed[3 * k] for k in range(4)] == ['primal', 'adjoint', 'gradient',
                                                 'primal']
    for k in range(4):
        assert sorted(timed[3 * k:3 * k + 3]) == ['adjoint', 'gradient', 'primal']
    primal, adjoint, _ = (result for result, _ in prepared)
    assert len(primal.runs[1]) == 4
    # from the 8th run on (round 1: adjoint fast, then gradient and primal slow)
    assert primal.runs[1] == pytest.approx([1.0, 3.0, 3.0, 3.0])
    assert adjoint.runs[1] == pytest.approx([1.1, 1.1, 3.3, 3.3])
    value, low, high = run.paired(adjoint, primal, 1)
    assert value == pytest.approx(1.1) and high == pytest.approx(1.1)
    assert low == pytest.approx(1.1 / 3)  # round 1, the spoilt pair


def test_child_ratios_pair_with_the_partners_timed_in_the_child():
    """A scatter adjoint measured in a child process is paired with the primal the
    child timed in the same rounds, not with the parent's primal from another time."""
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    import run

    primal = run.Result(run.Case('', 'primal', None, {}), times={2: 1.0},
                        runs={2: [1.0, 1.0, 1.0]})
    scatter = run.Result(run.Case('', 'scatter adjoint', None, {}), times={2: 9.0},
                         runs={2: [6.0, 9.0, 12.0]},
                         partners={'primal': {2: [3.0, 4.5, 6.0]}})
    assert run.paired(scatter, primal, 2) == pytest.approx((2.0, 2.0, 2.0))
    assert run.paired(primal, scatter, 2) == pytest.approx((0.5, 0.5, 0.5))
    scatter.partners = {}  # nothing timed with it: the ratio of the medians
    assert run.paired(scatter, primal, 2) == pytest.approx((9.0, 9.0, 9.0))


def test_gpu_script_compiler_offloads_and_reuses_prebuilt_objects(tmp_path, monkeypatch):
    """``gpu_gradient.py``'s gcc compiler offloads only for GPU platforms, and a shared
    object it stored is loaded by the hash of the C code, with no compiler run."""
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    import gpu_gradient
    from devito import Eq, Grid, Operator, TimeFunction
    from devito.arch import platform_registry
    from devito.arch.compiler import GNUCompiler, compiler_registry

    def flags(platform):
        c = compiler_registry['gnu-offload'](platform=platform_registry[platform],
                                             language='openmp', mpi=False,
                                             name='gnu-offload')
        return c.cflags + c.ldflags

    assert '-foffload=nvptx-none' in flags('nvidiaX')
    assert not any(f.startswith('-foffload') for f in flags('hsw'))
    assert '-march=x86-64-v3' in flags('hsw') and '-march=native' not in flags('hsw')

    store = tmp_path / 'prebuilt'
    monkeypatch.setenv('PERFORAD_PREBUILT', str(store))
    jit_dir = {'path': tmp_path / 'jit-here'}
    jit_dir['path'].mkdir()
    monkeypatch.setattr(gpu_gradient.GNUOffloadCompiler, 'get_jit_dir',
                        lambda self: jit_dir['path'])
    monkeypatch.setattr(gpu_gradient.GNUOffloadCompiler, 'get_codepy_dir',
                        lambda self: jit_dir['path'] / 'codepy')
    u = TimeFunction(name='u', grid=Grid(shape=(11,)))
    target = {'platform': 'hsw', 'language': 'openmp', 'compiler': 'gnu-offload'}
    Operator(Eq(u.forward, u + 1), **target).apply(time_M=2)
    assert len(list(store.glob('*.so'))) == 1

    def no_compiler(*args):
        raise AssertionError('compiled although a prebuilt object was stored')

    monkeypatch.setattr(GNUCompiler, 'jit_compile', no_compiler)
    jit_dir['path'] = tmp_path / 'jit-elsewhere'  # as on another machine
    jit_dir['path'].mkdir()
    u.data[:] = 0
    Operator(Eq(u.forward, u + 1), **target).apply(time_M=4)
    assert np.all(u.data[5 % 2] == 5)
