"""Smoke tests of the example scripts in ``examples/seismic``, run at tiny sizes.

Each script runs in a subprocess from the repository root, exactly as a user would run
it; the tests check its exit status and the key numbers it prints.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SEISMIC = ROOT / 'examples' / 'seismic'


def run_example(name, *args):
    """Run ``examples/seismic/<name>.py`` with ``args``; return its stdout."""
    proc = subprocess.run([sys.executable, str(SEISMIC / f'{name}.py'), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
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
    for name in ['model_true', 'model_initial', 'model_inverted', 'gradient_first',
                 'misfit']:
        png = tmp_path / f'{name}.png'
        assert png.is_file() and png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n', name


def test_fwi_parallel_shots_with_checkpointing(tmp_path):
    """Shots spread over two processes, each gradient checkpointed: the same misfits
    as one process with saved wavefields."""
    tiny = ['--shape', 21, 21, '--nbl', 4, '--shots', 2, '--iterations', 1, '--tn', 200,
            '--space-order', 4]
    serial = run_example('fwi', *tiny, '--out', tmp_path / 'serial')
    parallel = run_example('fwi', *tiny, '--out', tmp_path / 'parallel', '--workers', 2,
                           '--checkpointing')
    assert '2 process(es), checkpointing' in parallel, parallel
    pattern = r'(?:initial|final) misfit = (\S+)'
    expected, got = numbers(pattern, serial), numbers(pattern, parallel)
    assert len(expected) == 2 and got == pytest.approx(expected, rel=1e-5), parallel
