"""passes/composition.py: nested derivatives reversed as compositions. The adjoints of
Devito's visco-acoustic, self-adjoint and variable-density propagators are exact, and
each time step runs the primal's structure: as many loop nests and temporaries (one
more: the seeds' product), no coefficient read at more offsets than the primal reads
it, no transcendental function in the time loop."""

import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import dot_test
from devito import Eq, Function, Grid, Operator, SubDomain, TimeFunction

from devito_perforad import AdjointOperator, adjoint_function

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from physics import (  # noqa: E402
    PROBLEMS,
    staggered_problem,
    variable_density_problem,
)

from devito_perforad.ir.access import analyse  # noqa: E402

# so=8: the order at which Devito evaluates the primal's nested derivatives through
# temporaries of its own (at low orders it reads them flat)
SIZE = dict(shape=(21, 21), nbl=6, so=8, nt=30, dtype=np.float64)


# TTI (two fields, four parameters) builds in half a minute: in the slow run, with
# Maxwell (SLS's structure, one memory variable less), for the default run's time
SLOW = {'TTI centred', 'visco-acoustic Maxwell'}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.fixture(scope='module', params=_params(PROBLEMS))
def physics(request):
    """A propagator, its adjoint map, and its primal and derived adjoint Operators."""
    model, geometry, expressions, adjoints, _ = PROBLEMS[request.param](**SIZE)
    kw = dict(subs=model.spacing_map)
    ops = Operator(expressions, **kw), AdjointOperator(expressions, adjoints, **kw)
    return model, geometry, expressions, adjoints, ops, request.param


def test_exact(physics, rng):
    """Dot test from the source to the receivers and back, float64."""
    model, geometry, expressions, adjoints, ops, _ = physics
    src = expressions[-2].interpolator.sfunction
    apply = dict(dt=model.critical_dt, time_M=geometry.nt - 2)
    assert dot_test(expressions, adjoints, {src: slice(None)}, apply=apply, rng=rng,
                    ops=ops) < 1e-11


def _time_loop(code):
    """The body of the time loop, without its sparse operations and without what runs
    at one counter only (``if (time ...) { ... }``)."""
    body = code[code.index('for (int time'):]
    body = body.split('for (int p_')[0] if 'for (int p_' in body else body
    while (start := body.find('if (time')) >= 0:
        depth, end = 0, body.index('{', start)
        while True:
            depth += {'{': 1, '}': -1}.get(body[end], 0)
            if depth == 0:
                break
            end += 1
        body = body[:start] + body[end + 1:]
    return body


def _nests(body):
    return len(re.findall(r'^\s*for \(int x = ', body, re.M))


def _temporaries(body, fields):
    """Arrays assigned in ``body`` that are none of ``fields``."""
    written = set(re.findall(r'\b(\w+)(?:\[[^\]]*\])+\s*=[^=]', body))
    return written - {f.name for f in fields}


def _offsets(body, name):
    """The distinct index lists at which ``body`` reads the array ``name``."""
    return set(re.findall(rf'\b{name}((?:\[[^\]]*\])+)', body))


# Temporaries beyond the primal's and the seeds' product. TTI: one seed product per
# field (u, v), and Devito's CIRE keeps B_j * W per inner derivative j (two per field)
# where the primal keeps W = Gz (one): 6 against the primal's 2.
EXTRA_TEMPORARIES = {'TTI centred': 3}


def test_structure_of_the_primal(physics):
    model, _, expressions, adjoints, (primal, adjoint), name = physics
    forward, backward = _time_loop(str(primal.ccode)), _time_loop(str(adjoint.ccode))
    fields = set(adjoints) | set(adjoints.values())
    assert _nests(backward) <= _nests(forward) + 1
    assert len(_temporaries(backward, fields)) <= len(_temporaries(forward, fields)) + 1 \
        + EXTRA_TEMPORARIES.get(name, 0)
    for f in model.physical_parameters:
        name = getattr(model, f).name
        assert len(_offsets(backward, name)) <= max(len(_offsets(forward, name)), 1), \
            f"{name} read at more offsets than in the primal"
    for function in ('sqrt', 'pow', 'exp', 'sin', 'cos'):
        assert backward.count(f'{function}(') <= forward.count(f'{function}(')


@pytest.mark.slow   # the default run's time
def test_staggered_divergence_of_a_staggered_gradient():
    """Devito's first-order Kelvin-Voigt model: ``div(b*grad(p, shift=.5),
    shift=-.5)`` beside ``div(v.forward)`` in one equation. Devito evaluates the
    equation at its written field's point; so does the split into compositions, which
    therefore holds, and the adjoint has the primal's structure: its loop nests and
    temporaries (one more seed product per composition), and ``b`` read at no more
    offsets than the primal reads it."""
    model, _, expressions, adjoints, _ = staggered_problem(
        'visco-acoustic KV, order 1', shape=(15, 15), nbl=4, so=8, nt=10,
        dtype=np.float64)
    (update,) = [s for s in analyse(expressions, model.spacing_map)
                 if s.write.field.name == 'p' and s.is_dense]
    assert len(update.compositions) == 2
    kw = dict(subs=model.spacing_map)
    forward = _time_loop(str(Operator(expressions, **kw).ccode))
    backward = _time_loop(str(AdjointOperator(expressions, adjoints, **kw).ccode))
    fields = set(adjoints) | set(adjoints.values())
    assert _nests(backward) <= _nests(forward)
    assert len(_temporaries(backward, fields)) <= len(_temporaries(forward, fields)) + 2
    assert len(_offsets(backward, model.b.name)) <= len(_offsets(forward, model.b.name))


@pytest.mark.parametrize('so', [2, pytest.param(8, marks=pytest.mark.slow)])
def test_space_orders(so, rng):
    """The variable-density acoustic at low and high order."""
    model, geometry, expressions, adjoints, _ = variable_density_problem(
        shape=(15, 15), nbl=4, so=so, nt=20, dtype=np.float64)
    src = expressions[-2].interpolator.sfunction
    apply = dict(dt=model.critical_dt, time_M=geometry.nt - 2)
    assert dot_test(expressions, adjoints, {src: slice(None)}, apply=apply, rng=rng,
                    subs=model.spacing_map) < 1e-12


class Middle(SubDomain):
    name = 'middle'

    def define(self, dimensions):
        return {d: ('middle', 3, 4) for d in dimensions}


@pytest.mark.parametrize('ndim', [1, 3])
def test_subdomain_and_dimensions(ndim, rng):
    """A nested derivative on a SubDomain, in 1D and 3D: the seeds' product is made
    where the primal ran, and the composed gathers read zero elsewhere."""
    grid = Grid(shape=(12,) * ndim, extent=(11.0,) * ndim, dtype=np.float64,
                subdomains=(Middle(),))
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2)
    b = Function(name='b', grid=grid, space_order=4)
    b.data[:] = 1 + rng.random(b.data.shape)
    divergence = sum((b * u.diff(d)).diff(d) for d in grid.dimensions)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * divergence,
                 subdomain=grid.subdomains['middle'])]
    adjoints = {u: adjoint_function(u)}
    assert dot_test(primal, adjoints, {u: np.array([True, True, False])},
                    apply=dict(time_m=1, time_M=8, dt=1.0), rng=rng) < 1e-12
