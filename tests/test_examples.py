"""Smoke tests of the example scripts in ``examples/seismic``, run at tiny sizes.

Each script runs in a subprocess from the repository root, exactly as a user would run
it; the tests check its exit status and the key numbers it prints. The FWI script's
argument checks and its stop on a non-finite misfit are tested in-process (``main``
with an argument list), which spares a Python start and a Devito import per case.
"""

import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEISMIC = ROOT / 'examples' / 'seismic'


def run_script(name, *args):
    """Run ``examples/seismic/<name>.py`` with ``args``; return the CompletedProcess."""
    return subprocess.run([sys.executable, str(SEISMIC / f'{name}.py'), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def run_example(name, *args):
    """Run ``examples/seismic/<name>.py`` with ``args``; return its stdout."""
    proc = run_script(name, *args)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def numbers(pattern, text):
    return [float(v) for v in re.findall(pattern, text)]


def test_nonselfadjoint():
    out = run_example('nonselfadjoint', '--shape', 25, 25, '--tn', 100,
                      '--space-order', 4)
    derived = numbers(r'derived \(devito-perforad\).*error = (\S+)', out)
    naive = numbers(r'self-adjoint assumption.*error = (\S+)', out)
    symmetrised = numbers(r'symmetrised by hand.*error = (\S+)', out)
    assert len(derived) == len(naive) == len(symmetrised) == 2, out
    assert max(derived) < 1e-11, out           # homogeneous and heterogeneous
    assert max(symmetrised) < 1e-11, out
    assert naive[0] < 1e-11, out               # homogeneous: self-adjoint
    assert naive[1] > 1e-3, out                # heterogeneous: it is not


def test_acoustic_adjoint():
    out = run_example('acoustic_adjoint', '--shape', 25, 25, '--nbl', 6, '--tn', 120,
                      '--space-order', 4, '--steps', 4)
    (err,) = numbers(r'dot test relative error = (\S+)', out)
    assert err < 1e-11, out
    (slope,) = numbers(r'mean second-order slope = (\S+)', out)
    assert abs(slope - 2) < 0.1, out


def fwi_figures(folder, params):
    for name in [f'{p}_{kind}' for p in params
                 for kind in ('true', 'initial', 'inverted', 'gradient')] + ['misfit']:
        png = folder / f'{name}.png'
        assert png.is_file() and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name


def test_fwi(tmp_path):
    out = run_example('fwi', '--shape', 31, 31, '--nbl', 6, '--shots', 2,
                      '--iterations', 2, '--tn', 300, '--space-order', 4,
                      '--out', tmp_path, '--workers', 0)
    (J0,) = numbers(r'initial misfit = (\S+)', out)
    (J1,) = numbers(r'final misfit = (\S+)', out)
    assert J1 < J0, out
    assert 'about the figures' not in out   # it describes the default set-up only
    fwi_figures(tmp_path, ['vp'])


@pytest.mark.slow
def test_fwi_elastic(tmp_path):
    """vp and vs together, through Devito's elastic solver (which has no adjoint of
    its own): the misfit and the model error of each parameter go down."""
    out = run_example('fwi', '--physics', 'elastic', '--params', 'vp,vs', '--shape', 41,
                      41, '--nbl', 10, '--shots', 3, '--iterations', 6, '--tn', 500,
                      '--space-order', 4, '--out', tmp_path)
    (J0,) = numbers(r'initial misfit = (\S+)', out)
    (J1,) = numbers(r'final misfit = (\S+)', out)
    assert J1 < 0.1 * J0, out
    for p in ('vp', 'vs'):
        e0, e1 = map(float, re.search(rf'\|\|{p} - {p}_true\|\| / \|\|{p}_true\|\|: '
                                      r'initial = (\S+), final = (\S+)', out).groups())
        assert e1 < 0.9 * e0, out
    assert '2 receiver set(s)' in out, out
    fwi_figures(tmp_path, ['vp', 'vs'])


@pytest.mark.slow
def test_fwi_parallel_shots_with_checkpointing(tmp_path):
    """Shots spread over two Dask workers, each gradient checkpointed: in float64, the
    same misfits as one process with saved wavefields, to rounding (float32 parts
    from the fifth digit: the two adjoints are different Operators)."""
    tiny = ['--shape', 21, 21, '--nbl', 4, '--shots', 2, '--iterations', 2, '--tn', 200,
            '--space-order', 4, '--dtype', 'float64']
    serial = run_example('fwi', *tiny, '--out', tmp_path / 'serial', '--workers', 0)
    parallel = run_example('fwi', *tiny, '--out', tmp_path / 'parallel', '--workers', 2,
                           '--checkpointing')
    assert '2 Dask worker(s), checkpointing' in parallel, parallel
    assert 'Pickling' not in parallel, parallel   # the workers return plain arrays
    pattern = r'(?:initial|final) misfit = (\S+)'
    expected, got = numbers(pattern, serial), numbers(pattern, parallel)
    assert len(expected) == 2 and got == pytest.approx(expected, rel=1e-10), parallel


# -- fwi.py: argument checks and the stop on a non-finite misfit ----------------------

TINY = ['--shape', 21, 21, '--nbl', 4, '--shots', 1, '--iterations', 1, '--tn', 100,
        '--space-order', 4, '--workers', 0]


@pytest.fixture(scope='module')
def fwi():
    """``examples/seismic/fwi.py`` as a module."""
    spec = importlib.util.spec_from_file_location('fwi_example', SEISMIC / 'fwi.py')
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # as an import would: Dask sends it by value
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args, message', [
    (['--shots', 0], '--shots must be at least 1 (got 0)'),
    (['--iterations', 0], '--iterations must be at least 1 (got 0)'),
    (['--workers', -1], '--workers must be 0 (the shots in this process) or more'),
    (['--scheduler', 'tcp://127.0.0.1:1'], '--workers and --scheduler exclude each'),
    (['--params', 'vs'], '--params vs names vs: the acoustic model inverts vp'),
    (['--physics', 'elastic', '--params', 'vp,vp'], '--params vp,vp names a parameter'),
    (['--resume'], '--resume continues the run kept in --state DIR; give --state'),
    (['--vmax', 2.8], "--vmax 2.8 km/s is below the true model's maximum velocity 3"),
    (['--vmin', 3.2, '--vmax', 3.2], '--vmin 3.2 km/s must be below --vmax 3.2 km/s'),
    (['--vmin', 0], '--vmin must be a positive number of km/s (got 0)'),
    (['--vmin', 2.6], 'the initial model, 2.5 km/s, lies outside the bounds [--vmin'),
    (['--vmax', 'inf'], '--vmax must be a positive number of km/s (got inf)'),
    (['--spacing', -10], '--spacing must be a positive number of metres (got -10)'),
    (['--space-order', 3], '--space-order must be even and at least 2 (got 3)'),
    (['--space-order', 0], '--space-order must be even and at least 2 (got 0)'),
    (['--space-order', 12], '--shape must have at least 25 points in each direction'),
    (['--shape', 9, 21], '--shape must have at least 11 points in each direction'),
    (['--nbl', -1], '--nbl must be 0 (no absorbing layer) or more (got -1)'),
    (['--tn', 0], '--tn must be a positive number of milliseconds (got 0)'),
    (['--f0', -0.01], '--f0 must be a positive number of kHz (got -0.01)'),
    (['--shots', 18], '--shots 18 is more than the 17 grid points of the source well'),
], ids=lambda v: ' '.join(map(str, v)) if isinstance(v, list) else '')
def test_fwi_rejects_bad_arguments(fwi, monkeypatch, capsys, tmp_path, args, message):
    """argparse's clean exit (status 2, a one-line message naming the argument) before
    any model or operator is built."""
    def refuse(*_, **__):
        raise AssertionError('a model or an operator was built before the checks')

    monkeypatch.setattr(fwi, 'Shots', refuse)
    monkeypatch.setattr(fwi, 'Pool', refuse)
    with pytest.raises(SystemExit) as stop:
        fwi.main([*map(str, TINY + args), '--out', str(tmp_path / 'figures')])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f'error: {message}' in err, err
    assert not (tmp_path / 'figures').exists()


def test_fwi_bad_argument_from_the_command_line():
    proc = run_script('fwi', '--shots', 0)
    assert proc.returncode == 2, proc
    assert proc.stderr.strip().endswith('error: --shots must be at least 1 (got 0)'), proc
    assert proc.stdout == '', proc


def test_fwi_warns_about_dispersion_and_short_recordings(fwi, capsys):
    fwi.parse_args(['--spacing', '20', '--tn', '200'])   # goes ahead, with warnings
    err = capsys.readouterr().err
    assert 'warning: 2.8 grid points per minimum wavelength' in err, err
    assert 'warning: --tn 200 ms ends before the peak of the wavelet' in err, err
    fwi.parse_args([])                                   # the defaults: no warning
    assert capsys.readouterr().err == ''


@pytest.mark.parametrize('poison', [
    'observed data', pytest.param('third gradient', marks=pytest.mark.slow)])
def test_fwi_stops_on_non_finite_misfit(fwi, monkeypatch, capsys, tmp_path, poison):
    """A NaN in the observed data (it reaches the misfit through the operators) or in
    a gradient inside L-BFGS-B: a message on stderr, exit status 1, no figures."""
    if poison == 'observed data':
        observed = fwi.Shots.observed

        def poisoned(self, shot):
            data = observed(self, shot)
            data[0][len(data[0]) // 2, 0] = np.nan
            return data

        monkeypatch.setattr(fwi.Shots, 'observed', poisoned)
        evaluation = 1
    else:
        misfit_gradient, calls = fwi.Shots.misfit_gradient, []

        def poisoned(self, x, shot, d_obs, weights):
            J, g = misfit_gradient(self, x, shot, d_obs, weights)
            calls.append(J)
            if len(calls) == 3:
                g[10] = np.nan
            return J, g

        monkeypatch.setattr(fwi.Shots, 'misfit_gradient', poisoned)
        evaluation = 3
    out = tmp_path / 'figures'
    with pytest.raises(SystemExit) as stop:
        fwi.main([*map(str, TINY), '--iterations', '3', '--tn', '200', '--out', str(out)])
    assert stop.value.code == 1
    captured = capsys.readouterr()
    assert f'misfit/gradient evaluation {evaluation} is not finite' in captured.err
    assert '--vmax' in captured.err and '--f0' in captured.err, captured.err
    assert 'figures written' not in captured.out
    assert not out.exists()


def test_fwi_refuses_a_file_as_out(fwi, monkeypatch, capsys, tmp_path):
    """An existing file as ``--out`` stops before anything runs, not after the
    inversion."""
    monkeypatch.setattr(fwi, 'Shots', None)
    monkeypatch.setattr(fwi, 'Pool', None)
    taken = tmp_path / 'figures.png'
    taken.write_text('mine')
    with pytest.raises(SystemExit) as stop:
        fwi.main([*map(str, TINY), '--out', str(taken)])
    assert stop.value.code == 2
    assert f'error: --out {taken} is a file' in capsys.readouterr().err
    assert taken.read_text() == 'mine'


@pytest.mark.slow   # the default run's time
def test_fwi_stops_when_there_is_nothing_to_invert(fwi, capsys, tmp_path):
    """A recording too short for the waves to reach the receivers: zero misfit, no
    iteration; an error, no figures."""
    out = tmp_path / 'figures'
    with pytest.raises(SystemExit) as stop:
        fwi.main([*map(str, TINY), '--tn', '20', '--out', str(out)])
    assert stop.value.code == 1
    assert 'stopped before its first iteration' in capsys.readouterr().err
    assert not out.exists()


# -- fwi.py: resumable runs, and shots on Dask ----------------------------------------

def stored(folder):
    with np.load(folder / 'state.npz') as state:
        return state['model'], state['history']


@pytest.mark.slow
def test_fwi_resumes_a_stored_run(fwi, capsys, tmp_path):
    """A run of 2 iterations, resumed for 3: the stored evaluations replay L-BFGS-B's
    first steps, and the result is the one of a run of 3 iterations from the start."""
    run = [*map(str, TINY), '--tn', '200', '--dtype', 'float64', '--out',
           str(tmp_path / 'figures')]
    fwi.main([*run, '--iterations', '3', '--state', str(tmp_path / 'whole')])
    fwi.main([*run, '--iterations', '2', '--state', str(tmp_path / 'parts')])
    capsys.readouterr()
    fwi.main([*run, '--iterations', '3', '--state', str(tmp_path / 'parts'), '--resume'])
    out = capsys.readouterr().out
    assert re.search(r'resuming: [1-9]\d* stored evaluations', out), out
    assert re.search(r'\n +2 .* stored\n', out), out        # replayed, not recomputed
    (whole, whole_history), (parts, parts_history) = (
        stored(tmp_path / name) for name in ('whole', 'parts'))
    assert len(parts_history) == 4
    np.testing.assert_allclose(parts_history, whole_history, rtol=1e-12)
    np.testing.assert_allclose(parts, whole, rtol=1e-12)


def test_fwi_refuses_to_mix_runs(fwi, monkeypatch, capsys, tmp_path):
    """A folder that holds a run is not overwritten, nor resumed with other settings:
    both stop before anything is built."""
    def refuse(*_, **__):
        raise AssertionError('a model or an operator was built')

    state = tmp_path / 'state'
    run = [*map(str, TINY), '--tn', '200', '--out', str(tmp_path / 'figures')]
    stored_run = fwi.Evaluations(str(state), fwi.parse_args([*run, '--state',
                                                             str(state)]), False)
    stored_run.add(np.zeros(3), 1., np.ones(3))
    stored_run.save(np.zeros(3), [1.], [[1.]])
    kept = (state / 'state.npz').read_bytes()
    monkeypatch.setattr(fwi, 'Pool', refuse)
    with pytest.raises(SystemExit) as stop:
        fwi.main([*run, '--state', str(state)])
    assert stop.value.code == 2
    assert f'--state {state} holds a run already: add --resume' in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        fwi.main([*run, '--state', str(state), '--resume', '--f0', '0.012'])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert f'--state {state} holds a run with --f0 0.01 (now 0.012)' in err, err
    assert (state / 'state.npz').read_bytes() == kept


@pytest.mark.slow
def test_fwi_dask_workers_equal_serial(fwi):
    """Two local Dask workers, and a running cluster given by its scheduler's address,
    give the serial observed data, misfit and gradient (float64), at a model away from
    the initial one."""
    from distributed import LocalCluster
    args = [*map(str, TINY[:-2]), '--shots', '3', '--tn', '200', '--dtype', 'float64']
    # a running cluster whose worker has two threads: its shots take turns
    cluster = LocalCluster(n_workers=1, threads_per_worker=2, dashboard_address=None)
    address = cluster.scheduler_address
    pools = [fwi.Pool(fwi.parse_args([*args, *more])) for more in (
        ['--workers', '0'], ['--workers', '2'], ['--scheduler', address])]
    try:
        assert [p.where for p in pools] == ['this process', '2 Dask worker(s)',
                                            '1 Dask worker(s)']
        shots = [(s,) for s in range(3)]
        observed = pools[0].run('observed', shots)
        initial = pools[0].shots.initial['vp'].ravel()
        x = initial + 0.1 * np.random.default_rng(0).random(initial.size)
        tasks = [(x, s, observed[s], [1.]) for s in range(3)]
        (J, g), *others = (
            (sum(J for J, _ in parts), sum(g for _, g in parts))
            for parts in (p.run('misfit_gradient', tasks) for p in pools))
        assert J > 0
        for pool, (Jd, gd) in zip(pools[1:], others, strict=True):
            for mine, theirs in zip(observed, pool.run('observed', shots), strict=True):
                np.testing.assert_allclose(theirs[0], mine[0], rtol=0,
                                           atol=1e-12 * abs(mine[0]).max())
            assert abs(Jd - J) <= 1e-12 * J, pool.where
            assert np.linalg.norm(gd - g) <= 1e-12 * np.linalg.norm(g), pool.where
    finally:
        for pool in pools:
            pool.close()
        cluster.close()


@pytest.mark.slow
def test_fwi_resumes_after_kills(tmp_path):
    """A run on two Dask workers loses a worker in its second iteration (Dask reruns
    its shots on a new one), then is killed whole in its fourth. Resumed, it ends
    with the model of a run that was never stopped (float64)."""
    psutil = pytest.importorskip('psutil')
    args = [*map(str, TINY), '--shots', '2', '--iterations', '5', '--tn', '200',
            '--dtype', 'float64', '--out', str(tmp_path / 'figures')]
    run_example('fwi', *args, '--state', tmp_path / 'whole')
    args = [*args, '--workers', '2', '--state', str(tmp_path / 'stopped')]
    proc = subprocess.Popen([sys.executable, '-u', str(SEISMIC / 'fwi.py'), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    lines, killed = [], []
    try:
        for line in proc.stdout:
            lines.append(line)
            if re.match(r' +1 ', line):      # a worker, while iteration 2 runs
                workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                           if 'spawn_main' in ' '.join(p.cmdline())]
                assert len(workers) == 2, lines
                workers[0].kill()
                killed.append('worker')
            elif re.match(r' +3 ', line):    # the whole run, while iteration 4 runs
                os.killpg(proc.pid, signal.SIGKILL)
                killed.append('run')
                break
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert killed == ['worker', 'run'], ''.join(lines)
    assert len(stored(tmp_path / 'stopped')[1]) == 4    # iterations 0 to 3 kept
    out = run_example('fwi', *args, '--resume')
    assert 'resuming:' in out, out
    (whole, whole_history), (resumed, history) = (
        stored(tmp_path / name) for name in ('whole', 'stopped'))
    assert len(history) == len(whole_history) == 6
    np.testing.assert_allclose(history, whole_history, rtol=1e-12)
    np.testing.assert_allclose(resumed, whole, rtol=1e-12)
