"""Gradients of every model parameter of every physics that derives, each parameter
against a 4th-order central difference on its own, at space orders 4 and 8, on two
non-square models with different spacings and source frequencies (the constants that
enter the visco-acoustic coefficients), long enough for the attenuation to act, the
wavefields saved; and once with OpenMP on two threads.

The default run checks the smaller model at space order 4, TTI included (anisotropic
wherever the waves travel, so that the tilt acts); the slow run the rest, and the
OpenMP run."""

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import gradient_errors
from devito import Operator

from devito_perforad import AdjointOperator, adjoint_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from physics import PARAMETERS, PROBLEMS  # noqa: E402

# Two models: non-square, anisotropic spacings, sources of different peak frequency,
# 150 ms and more (the SLS relaxation time is about 100 ms)
MODELS = {
    'small': dict(shape=(25, 19), nbl=6, spacing=(10.0, 8.0), f0=0.015, tn=150.0),
    'large': dict(shape=(41, 30), nbl=8, spacing=(12.5, 10.0), f0=0.012, tn=250.0),
}

TOLERANCE = 1e-7


def _cases():
    for model in MODELS:
        for so in (4, 8):
            for name in PROBLEMS:
                marks = () if (model, so) == ('small', 4) else (pytest.mark.slow,)
                yield pytest.param(name, model, so, marks=marks,
                                   id=f'{name}-{model}-so{so}')


def problem(name, model, so, **kwargs):
    """The physics ``name`` on ``MODELS[model]``: its model, geometry, expressions,
    and the adjoint map with every model parameter's adjoint."""
    extra = dict(anisotropic=True) if name.startswith('TTI') else {}
    model, geometry, expressions, adjoints, _ = PROBLEMS[name](
        so=so, dtype=np.float64, save=True, **MODELS[model], **extra)
    parameters = [getattr(model, p) for p in PARAMETERS[name]]
    adjoints = {**adjoints, **{m: adjoint_function(m) for m in parameters}}
    src, rec = (e.interpolator.sfunction for e in expressions[-2:])
    src.data[:] = np.random.default_rng(5).standard_normal(src.data.shape)
    return dict(model=model, geometry=geometry, expressions=expressions,
                adjoints=adjoints, parameters=parameters, rec=rec,
                apply=dict(dt=model.critical_dt, time_M=geometry.nt - 2), **kwargs)


def _errors(p, rng, nthreads=None, **op_kwargs):
    kw = dict(subs=p['model'].spacing_map, **op_kwargs)
    ops = (Operator(p['expressions'], **kw),
           AdjointOperator(p['expressions'], p['adjoints'], **kw))
    apply = dict(p['apply'], **({'nthreads': nthreads} if nthreads else {}))
    return gradient_errors(ops, p['adjoints'], p['parameters'], p['rec'], apply,
                           rng=rng)


@pytest.mark.parametrize('name, model, so', _cases())
def test_every_parameter(name, model, so, rng):
    """Each model parameter's gradient, on its own, against finite differences."""
    errors = _errors(problem(name, model, so), rng)
    assert set(errors) == set(PARAMETERS[name])
    for parameter, error in errors.items():
        assert error < TOLERANCE, f"{name}: {parameter} gradient off by {error:.1e}"


@pytest.mark.slow
def test_openmp_two_threads(rng):
    """The visco-acoustic SLS gradients (the ``qp`` coefficients are the most
    involved), both Operators compiled with OpenMP and run on two threads."""
    errors = _errors(problem('visco-acoustic SLS', 'small', 4), rng, nthreads=2,
                     language='openmp')
    for parameter, error in errors.items():
        assert error < TOLERANCE, f"the {parameter} gradient is off by {error:.1e}"


def test_tilt_acts_on_the_data():
    """The TTI model of these tests is anisotropic where the waves travel: a change of
    theta alone changes the recorded data (in an isotropic region it would not, and
    a theta gradient test there could not fail)."""
    p = problem('TTI centred', 'small', 4)
    op = Operator(p['expressions'], subs=p['model'].spacing_map)
    theta = p['model'].theta

    def record(value):
        theta.data[:] = value
        for f in p['adjoints']:
            if f.is_TimeFunction and not f.is_SparseFunction:
                f.data[:] = 0
        op.apply(**p['apply'])
        return p['rec'].data.copy()

    theta0 = theta.data.copy()
    change = np.linalg.norm(record(theta0 + 0.05) - record(theta0))
    assert change > 1e-3 * np.linalg.norm(record(theta0))
