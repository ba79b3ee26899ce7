"""Smoke tests of the example scripts in ``examples/seismic``, run at tiny sizes.

Each script runs in a subprocess from the repository root, exactly as a user would run
it; the tests check its exit status and the key numbers it prints. The FWI script's
argument checks and its stop on a non-finite misfit are tested in-process (``main``
with an argument list), which spares a Python start and a Devito import per case.
"""

import importlib.util
import re
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


def test_fwi(tmp_path):
    out = run_example('fwi', '--shape', 31, 31, '--nbl', 6, '--shots', 2,
                      '--iterations', 2, '--tn', 300, '--space-order', 4,
                      '--out', tmp_path)
    (J0,) = numbers(r'initial misfit = (\S+)', out)
    (J1,) = numbers(r'final misfit = (\S+)', out)
    assert J1 < J0, out
    assert 'about the figures' not in out   # it describes the default set-up only
    for name in ['model_true', 'model_initial', 'model_inverted', 'gradient_first',
                 'misfit']:
        png = tmp_path / f'{name}.png'
        assert png.is_file() and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name


@pytest.mark.slow
def test_fwi_parallel_shots_with_checkpointing(tmp_path):
    """Shots spread over two processes, each gradient checkpointed: in float64, the
    same misfits as one process with saved wavefields, to rounding (float32 parts
    from the fifth digit: the two adjoints are different Operators)."""
    tiny = ['--shape', 21, 21, '--nbl', 4, '--shots', 2, '--iterations', 2, '--tn', 200,
            '--space-order', 4, '--dtype', 'float64']
    serial = run_example('fwi', *tiny, '--out', tmp_path / 'serial')
    parallel = run_example('fwi', *tiny, '--out', tmp_path / 'parallel', '--workers', 2,
                           '--checkpointing')
    assert '2 process(es), checkpointing' in parallel, parallel
    assert 'Pickling' not in parallel, parallel   # the workers return plain arrays
    pattern = r'(?:initial|final) misfit = (\S+)'
    expected, got = numbers(pattern, serial), numbers(pattern, parallel)
    assert len(expected) == 2 and got == pytest.approx(expected, rel=1e-10), parallel


# -- fwi.py: argument checks and the stop on a non-finite misfit ----------------------

TINY = ['--shape', 21, 21, '--nbl', 4, '--shots', 1, '--iterations', 1, '--tn', 100,
        '--space-order', 4]


@pytest.fixture(scope='module')
def fwi():
    """``examples/seismic/fwi.py`` as a module."""
    spec = importlib.util.spec_from_file_location('fwi_example', SEISMIC / 'fwi.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('args, message', [
    (['--shots', 0], '--shots must be at least 1 (got 0)'),
    (['--iterations', 0], '--iterations must be at least 1 (got 0)'),
    (['--workers', 0], '--workers must be at least 1 (got 0)'),
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


@pytest.mark.parametrize('poison', ['observed data', 'third gradient'])
def test_fwi_stops_on_non_finite_misfit(fwi, monkeypatch, capsys, tmp_path, poison):
    """A NaN in the observed data (it reaches the misfit through the operators) or in
    a gradient inside L-BFGS-B: a message on stderr, exit status 1, no figures."""
    if poison == 'observed data':
        observed = fwi.Shots.observed

        def poisoned(self, shots):
            data = observed(self, shots)
            data[0][len(data[0]) // 2, 0] = np.nan
            return data

        monkeypatch.setattr(fwi.Shots, 'observed', poisoned)
        evaluation = 1
    else:
        misfit_gradient, calls = fwi.Shots.misfit_gradient, []

        def poisoned(self, x, shots, d_obs):
            J, g = misfit_gradient(self, x, shots, d_obs)
            calls.append(J)
            if len(calls) == 3:
                g[10, 10] = np.nan
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


def test_fwi_stops_when_there_is_nothing_to_invert(fwi, capsys, tmp_path):
    """A recording too short for the waves to reach the receivers: zero misfit, no
    iteration; an error, no figures."""
    out = tmp_path / 'figures'
    with pytest.raises(SystemExit) as stop:
        fwi.main([*map(str, TINY), '--tn', '20', '--out', str(out)])
    assert stop.value.code == 1
    assert 'stopped before its first iteration' in capsys.readouterr().err
    assert not out.exists()
