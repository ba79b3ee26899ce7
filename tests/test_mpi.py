"""Derived adjoints under Devito's MPI domain decomposition (issue 5).

``tests/mpi/adjoint_mpi.py`` builds Devito's acoustic model (dot test, FWI gradient,
and the gradient with checkpointing), a 2D program with SubDomains, edge guards and
nonlinear partials (dot test and parameter gradient), and a variable-density stencil
with nested derivatives (dot test and the gradient with respect to ``b``), derives
their adjoints and gathers every result to rank 0. It runs once serially and once per
MPI mode under ``mpirun``; every entry must equal the serial one to 1e-12 relative, the
dot tests must hold under MPI too, and the checkpointed gradient must equal the
saved-wavefield one.

Needs ``mpirun`` and ``mpi4py`` (Debian: ``apt-get install -y openmpi-bin
libopenmpi-dev``, then ``pip install "mpi4py<4.1.3"``, the range Devito 4.8.23's
``mpi`` extra allows); skipped without them. See ``docs/mpi.md``.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'mpi', 'adjoint_mpi.py')
MPIRUN = shutil.which('mpirun')
HAVE_MPI4PY = importlib.util.find_spec('mpi4py') is not None
TOL = 1e-12
TIMEOUT = 600  # seconds per run; a hung MPI job fails the test instead of the suite
# Small problems: the runs are dominated by building the operators, once per rank.
ARGS = ['--so', '4', '--n', '31', '--nbl', '8', '--tn', '150', '--nrec', '7']

pytestmark = [
    pytest.mark.slow,  # several MPI jobs per test, each building every operator
    pytest.mark.skipif(MPIRUN is None, reason='mpirun not found (Debian: apt-get install '
                                              'openmpi-bin libopenmpi-dev)'),
    pytest.mark.skipif(not HAVE_MPI4PY, reason='mpi4py not installed (pip install '
                                               '"mpi4py<4.1.3")'),
]


def _env(mode):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    env.pop('DEVITO_MPI', None)
    if mode is not None:
        env['DEVITO_MPI'] = mode
        # OpenMPI refuses to run as root (CI containers) without both; it ignores
        # them otherwise. More ranks than cores must be allowed explicitly.
        env.setdefault('OMPI_ALLOW_RUN_AS_ROOT', '1')
        env.setdefault('OMPI_ALLOW_RUN_AS_ROOT_CONFIRM', '1')
        env.setdefault('OMPI_MCA_rmaps_base_oversubscribe', '1')
    return env


def run_script(out, mode=None, nprocs=1):
    """Run the script serially (``mode=None``) or under ``mpirun -n nprocs``; load
    the ``.npz`` rank 0 wrote."""
    command = [sys.executable, SCRIPT, str(out), *ARGS]
    if mode is not None:
        command = [MPIRUN, '-n', str(nprocs), *command]
    try:
        done = subprocess.run(command, env=_env(mode), capture_output=True, text=True,
                              timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`{' '.join(command)}` ran past {TIMEOUT} s:\n{e.stderr}")
    if done.returncode != 0:
        tail = '\n'.join((done.stdout + done.stderr).splitlines()[-40:])
        pytest.fail(f"`{' '.join(command)}` failed with code {done.returncode}:\n{tail}")
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope='module')
def serial(tmp_path_factory):
    return run_script(tmp_path_factory.mktemp('serial') / 'serial.npz')


def compare(reference, result):
    """Largest relative difference per entry: ``max|a - b| / max|a|``."""
    errors = {}
    for key, a in reference.items():
        if a.dtype.kind != 'f' or key == 'seconds' or key.endswith('dot'):
            continue  # the dot-test residuals are round-off, compared below
        b = result[key]
        assert b.shape == a.shape, key
        scale = np.abs(a).max()
        errors[key] = np.abs(a - b).max() / scale if scale else np.abs(b).max()
    return errors


def _checkpointed_error(result):
    saved, checkpointed = result['acoustic_grad'], result['acoustic_grad_checkpointed']
    return np.abs(checkpointed - saved).max() / np.abs(saved).max()


def test_serial_dot_tests(serial):
    assert serial['mode'] == 'False' and serial['nprocs'] == 1
    assert serial['acoustic_dot'] < TOL
    assert serial['stencils_dot'] < TOL
    assert serial['nested_dot'] < TOL
    assert _checkpointed_error(serial) <= TOL


@pytest.mark.parametrize('nprocs', [2, pytest.param(4, marks=pytest.mark.skipif(
    (os.cpu_count() or 1) < 4, reason='4 ranks need 4 cores to run in reasonable time'))])
@pytest.mark.parametrize('mode', ['1', 'diag2', 'overlap'])
def test_mpi_matches_serial(mode, nprocs, serial, tmp_path):
    result = run_script(tmp_path / 'mpi.npz', mode, nprocs)
    assert result['nprocs'] == nprocs
    assert result['package'] == serial['package']  # the same checkout ran both
    errors = compare(serial, result)
    assert errors, 'nothing compared'
    worst = max(errors, key=errors.get)
    assert errors[worst] <= TOL, f"{worst}: {errors[worst]:.3e} (all: {errors})"
    assert result['acoustic_dot'] < TOL
    assert result['stencils_dot'] < TOL
    assert result['nested_dot'] < TOL
    assert _checkpointed_error(result) <= TOL  # checkpointing under MPI
