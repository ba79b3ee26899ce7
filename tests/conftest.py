"""Shared fixtures: grids, fields, and the dot and finite-difference tests."""

import numpy as np
import pytest
from devito import Function, Grid, Operator, SubDomain, TimeFunction, configuration

from devito_perforad import AdjointOperator

configuration['log-level'] = 'ERROR'


def _compiler_warnings_are_errors():
    """Every Operator this test process compiles, derived or primal, is compiled with
    ``-Werror``: gcc only warns on an integer literal too large for its type, then
    truncates it, and a derived operator that compiles with a warning is a bug. The
    objects go to a cache of their own, so that none compiled without the flag (by an
    earlier run outside the tests) is loaded instead."""
    from devito.arch.compiler import Compiler
    from devito.tools import make_tempdir

    jit_compile = Compiler.jit_compile

    def strict(self, soname, code):
        if '-Werror' not in self.cflags:
            self.cflags = [*self.cflags, '-Werror']
        return jit_compile(self, soname, code)

    Compiler.jit_compile = strict
    Compiler.get_jit_dir = lambda self: make_tempdir('jitcache-werror')
    Compiler.get_codepy_dir = lambda self: make_tempdir('codepy-werror')


_compiler_warnings_are_errors()

DTYPE = np.float64


def make_grid(ndim, so=2, n=None):
    """A float64 grid with unit spacing, large enough for space order ``so``."""
    if n is None:
        n = max(9, 2 * so + 3) if ndim < 3 else max(8, so + 5)
    return Grid(shape=(n,) * ndim, extent=(float(n - 1),) * ndim, dtype=DTYPE)


def positive(f, rng, lo=1.0):
    """Fill ``f`` with values in ``[lo, lo + 1)``; its halo stays zero."""
    f.data[:] = lo + rng.random(f.data.shape)
    return f


@pytest.fixture(autouse=True)
def _devito_language():
    """Each test starts in the language the session started in, whatever the tests
    before it set (``benchmarks/run.py`` sets OpenMP for every Operator when it is
    imported): Devito's code, and so what a derivation reads from it, may differ
    between languages."""
    language = configuration['language']
    yield
    if configuration['language'] != language:
        configuration['language'] = language


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=[1, 2, 3], ids=['1d', '2d', '3d'])
def ndim(request):
    return request.param


def _run(op, apply):
    op.apply(**(apply or {}))


def dot_test(primal, adjoints, inputs, apply=None, rng=None, seeds=None, ops=None,
             **op_kwargs):
    """Relative error of ``<F x, y> - <x, F^T y>`` for a program linear in ``adjoints``.

    Parameters
    ----------
    primal : list of Eq
    adjoints : dict
        Primal field -> adjoint field; the program must be linear in these fields.
    inputs : dict
        Primal field -> index (slice, mask) of the entries that are inputs, i.e. not
        overwritten by the primal. ``x`` is random there and zero elsewhere.
    seeds : dict, optional
        Primal field -> index of the entries that carry a random seed ``y``
        (default: all entries).
    ops : (Operator, Operator), optional
        The primal and adjoint Operators, already built from ``primal``.
    """
    rng = rng or np.random.default_rng(0)
    op, aop = ops or (Operator(primal, **op_kwargs),
                      AdjointOperator(primal, adjoints, **op_kwargs))
    x = {}
    for f in adjoints:
        x[f] = np.zeros(f.data.shape, dtype=DTYPE)
        if f in inputs:
            x[f][inputs[f]] = rng.standard_normal(x[f][inputs[f]].shape)
        f.data[:] = x[f]
    _run(op, apply)
    y = {}
    for f, fb in adjoints.items():
        # a buffered adjoint wider than the primal's buffer (save=Buffer(n)) holds the
        # seeds in its first slots, laid out as the primal's; the rest is its own
        k = len(f.data) if _wider(f, fb) else len(fb.data)
        y[f] = np.zeros((k,) + fb.data.shape[1:], dtype=DTYPE)
        index = (seeds or {}).get(f, slice(None))
        y[f][index] = rng.standard_normal(y[f][index].shape)
        fb.data[:] = rng.standard_normal(fb.data.shape) if k < len(fb.data) else 0
        fb.data[:k] = y[f]
    forward = sum(np.vdot(f.data, y[f]) for f in adjoints)
    _run(aop, apply)
    for fb in adjoints.values():
        assert np.all(np.isfinite(fb.data)), f"non-finite values in {fb.name}"
    backward = sum(np.vdot(x[f], fb.data[:len(y[f])]) for f, fb in adjoints.items())
    return abs(forward - backward) / max(abs(forward), abs(backward))


def _wider(f, fb):
    from devito_perforad.fields import buffer_size, is_saved
    return (isinstance(f, TimeFunction) and not is_saved(f) and not is_saved(fb)
            and buffer_size(fb) > buffer_size(f))


def fd_test(primal, adjoints, inputs, apply=None, rng=None, h=1e-6, **op_kwargs):
    """Relative error between the adjoint and central differences along a direction.

    ``J(x) = sum_f <F(x)_f, y_f>`` for random ``y``; the adjoint gives
    ``<dJ/dx, dx>``, compared with ``(J(x + h dx) - J(x - h dx)) / 2h``.
    """
    rng = rng or np.random.default_rng(0)
    op = Operator(primal, **op_kwargs)
    aop = AdjointOperator(primal, adjoints, **op_kwargs)
    x, dx = {}, {}
    for f in adjoints:
        x[f] = np.zeros(f.data.shape, dtype=DTYPE)
        dx[f] = np.zeros(f.data.shape, dtype=DTYPE)
        if f in inputs:
            shape = x[f][inputs[f]].shape
            x[f][inputs[f]] = rng.standard_normal(shape)
            dx[f][inputs[f]] = rng.standard_normal(shape)
    y = {f: rng.standard_normal(fb.data.shape) for f, fb in adjoints.items()}

    def objective(step):
        for f in adjoints:
            f.data[:] = x[f] + step * dx[f]
        _run(op, apply)
        return sum(np.vdot(f.data, y[f]) for f in adjoints)

    fd = (objective(h) - objective(-h)) / (2 * h)
    objective(0.0)  # primal fields now hold the trajectory at x
    for f, fb in adjoints.items():
        fb.data[:] = y[f]
    _run(aop, apply)
    ad = sum(np.vdot(dx[f], fb.data) for f, fb in adjoints.items() if f in inputs)
    return abs(fd - ad) / abs(ad)


def gradient_errors(ops, adjoints, parameters, receiver, apply, rng=None, h=1e-3):
    """Per model parameter, the relative error between the derived gradient of
    ``J(m) = <d(m), y>`` and a 4th-order central difference along a random direction
    of that parameter alone (1% of its size), ``d`` the data ``receiver`` records.

    Each parameter is checked on its own: mixed into one direction, a parameter that
    contributes little to ``J`` (a tilt angle, ``qp``) could be wrong and still pass.

    Parameters
    ----------
    ops : (Operator, Operator)
        The primal and the adjoint, built with ``adjoints``.
    adjoints : dict
        Every field of the primal to its adjoint, ``receiver`` and the
        ``parameters`` included.
    parameters : list of Function
        Whose data hold the model.

    Returns
    -------
    dict
        Parameter name -> relative error.
    """
    rng = rng or np.random.default_rng(0)
    op, aop = ops
    y = rng.standard_normal(receiver.data.shape)
    state = [f for f in adjoints if f not in parameters and f is not receiver
             and not getattr(f, 'is_SparseFunction', False)]

    def run(m=None, m0=None, dm=None, step=0.0):
        if m is not None:
            m.data[:] = m0 + step * dm
        for f in state:
            f.data[:] = 0
        _run(op, apply)
        return np.vdot(receiver.data, y)

    run()
    for fb in adjoints.values():
        fb.data[:] = 0
    adjoints[receiver].data[:] = y
    _run(aop, apply)
    gradients = {m: adjoints[m].data.copy() for m in parameters}
    errors = {}
    for m in parameters:
        m0 = m.data.copy()
        dm = rng.standard_normal(m.data.shape) * 0.01 * np.abs(m0).mean()
        J = [run(m, m0, dm, k * h) for k in (1, -1, 2, -2)]
        m.data[:] = m0
        fd = (8 * (J[0] - J[1]) - (J[2] - J[3])) / (12 * h)
        ad = np.vdot(dm, gradients[m])
        errors[m.name] = abs(fd - ad) / abs(ad)
    return errors


def time_inputs(u, first, last):
    """Entries of a TimeFunction that a loop over ``[first, last]`` (``time_m``,
    ``time_M``) writing ``u.forward`` does not overwrite."""
    if u.save is not None:
        levels = np.ones(u.data.shape[0], dtype=bool)
        levels[first + 1:last + 2] = False
    else:
        levels = np.ones(u.time_order + 1, dtype=bool)
        levels[(first + 1) % (u.time_order + 1)] = False
    return levels


class Box(SubDomain):
    """A SubDomain given by one ``define`` spec per dimension."""

    name = 'box'

    def __init__(self, spec, **kwargs):
        self.spec = spec
        super().__init__(**kwargs)

    def define(self, dimensions):
        return dict(zip(dimensions, [s if s is not None else d
                                     for s, d in zip(self.spec, dimensions, strict=True)],
                        strict=True))


__all__ = ['Box', 'make_grid', 'positive', 'dot_test', 'fd_test', 'time_inputs', 'DTYPE',
           'Function', 'TimeFunction']


def acoustic_problem(so=4, shape=(31, 31), nbl=8, tn=150.0, save=True, nrec=9):
    """Devito's acoustic forward model, built as ``examples/seismic`` builds it.

    Damping layer, the ``physdomain`` SubDomain, a Ricker source injected with
    ``src * dt**2 / m`` and receivers interpolating ``u``; float64. Returns a dict with
    the model, geometry, wavefield, primal expressions and ``apply`` arguments.
    """
    from examples.seismic.acoustic.operators import iso_stencil

    from examples.seismic import AcquisitionGeometry, demo_model

    spacing = (10.0, 10.0)
    model = demo_model('layers-isotropic', shape=shape, spacing=spacing, nbl=nbl,
                       space_order=so, dtype=DTYPE, nlayers=3)
    extent = [(n - 1) * h for n, h in zip(shape, spacing, strict=True)]
    src_coords = np.array([[0.5 * extent[0], 2 * spacing[1]]])
    rec_coords = np.array([[x, 3 * spacing[1]] for x in np.linspace(0, extent[0], nrec)])
    geometry = AcquisitionGeometry(model, rec_coords, src_coords, 0.0, tn, f0=0.025,
                                   src_type='Ricker')
    u = TimeFunction(name='u', grid=model.grid, time_order=2, space_order=so,
                     save=geometry.nt if save else None)
    src, rec = geometry.src, geometry.rec
    s = model.grid.stepping_dim.spacing
    primal = (iso_stencil(u, model, 'OT2')
              + src.inject(field=u.forward, expr=src * s ** 2 / model.m)
              + rec.interpolate(expr=u))
    return dict(model=model, geometry=geometry, u=u, src=src, rec=rec, primal=primal,
                subs=model.spacing_map, apply=dict(dt=model.critical_dt))


def devito_forward(solver, save=False):
    """The expressions Devito's own ``solver.op_fwd(save)`` was built from, its
    keywords, the adjoint map of every field it writes and every sparse function it
    runs (``devito_perforad.fields.adjoint_functions``), and its source.

    The Operator is Devito's, its stencils are not copied: the expressions are those
    recorded when it was built (``devito_perforad.devito_compat.operator_inputs``).
    """
    from devito.operations.interpolators import Injection
    from devito.tools import flatten

    from devito_perforad.devito_compat import operator_inputs
    from devito_perforad.fields import adjoint_functions
    expressions, kwargs = operator_inputs(solver.op_fwd(save))
    (src,) = {e.interpolator.sfunction for e in flatten(expressions)
              if isinstance(e, Injection)}
    return expressions, kwargs, adjoint_functions(expressions), src
