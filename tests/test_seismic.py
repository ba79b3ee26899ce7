"""Seismic workflows: sparse operators, whole forward models, FWI gradients, Born."""

import numpy as np
import pytest
from conftest import acoustic_problem, dot_test
from devito import Function, Operator, SparseTimeFunction, TimeFunction

from devito_perforad import (
    AdjointError,
    AdjointOperator,
    TangentOperator,
    adjoint_function,
)

# -- sparse operators transpose in pairs -----------------------------------------------

def _sparse_problem(rng):
    from devito import Eq, Grid
    grid = Grid(shape=(21, 21), extent=(20.0, 20.0), dtype=np.float64)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
    m = Function(name='m', grid=grid, space_order=2)
    m.data[:] = 4.0 + rng.random(m.shape)
    src = SparseTimeFunction(name='src', grid=grid, npoint=2, nt=12,
                             coordinates=np.array([[5.3, 7.7], [12.1, 3.4]]))
    rec = SparseTimeFunction(name='rec', grid=grid, npoint=3, nt=12,
                             coordinates=np.array([[2.3, 7.7], [11.1, 13.4],
                                                   [15., 15.5]]))
    s = grid.stepping_dim.spacing
    stencil = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m)]
    return u, m, src, rec, stencil, src.inject(field=u.forward, expr=src * s ** 2 / m), \
        rec.interpolate(expr=u)


@pytest.mark.parametrize('ops', ['inject', 'interpolate', 'both'])
def test_sparse_pairs(ops, rng):
    """inject^T = interpolate of the adjoint field; interpolate^T = inject of the data."""
    u, m, src, rec, stencil, inject, interpolate = _sparse_problem(rng)
    apply = dict(time_m=1, time_M=10, dt=1.0)
    adjoints = {u: adjoint_function(u)}
    primal, inputs = list(stencil), {}
    if ops in ('inject', 'both'):
        primal.append(inject)
        adjoints[src] = adjoint_function(src)
        inputs[src] = slice(None)
    if ops in ('interpolate', 'both'):
        primal.append(interpolate)
        adjoints[rec] = adjoint_function(rec)
        inputs[u] = np.array([True, True, False])  # the initial buffer, t = 0 and 1
    assert dot_test(primal, adjoints, inputs, apply=apply, rng=rng) < 1e-12


@pytest.mark.parametrize('exprs', ['one', 'per field'])
def test_injection_into_several_fields(exprs, rng):
    """``S.inject(field=(u.forward, v.forward), expr=...)``, as in Devito's TTI: one
    injection per field, one expression for all or one each; receivers interpolate
    ``u + v``."""
    from devito import Eq
    u, m, src, rec, *_ = _sparse_problem(rng)
    grid = u.grid
    v = TimeFunction(name='v', grid=grid, space_order=2, time_order=2)
    s = grid.stepping_dim.spacing
    expr = src * s ** 2 / m if exprs == 'one' else (src * s ** 2 / m, 2 * src)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * (u.laplace + v.dx2) / m),
              Eq(v.forward, 2 * v - v.backward + 0.1 * (v.laplace + u.dy2) / m),
              src.inject(field=(u.forward, v.forward), expr=expr),
              rec.interpolate(expr=u + v)]
    adjoints = {f: adjoint_function(f) for f in (u, v, src, rec)}
    assert dot_test(primal, adjoints, {src: slice(None)},
                    apply=dict(time_m=1, time_M=10, dt=1.0), rng=rng) < 1e-12


def test_injection_expressions_must_pair_with_fields():
    from devito import Grid
    grid = Grid(shape=(11,))
    u, v = (TimeFunction(name=n, grid=grid, time_order=2) for n in 'uv')
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=5)
    with pytest.raises(AdjointError, match="3 expressions for 2 fields"):
        AdjointOperator([src.inject(field=(u.forward, v.forward),
                                    expr=(src, src, src))],
                        {u: adjoint_function(u), v: adjoint_function(v)})


@pytest.mark.parametrize('interpolation', ['linear', 'sinc'])
def test_receivers_at_the_edges(interpolation, rng):
    """Receivers next to the domain's edges: a sinc kernel also reads the primal's
    halo, and the transposed injection must drop what lands there, since the gathered
    stencil reads the adjoint's halo as zero (the dot test was off by 6e-3 before)."""
    from devito import Eq, Grid
    n = 20
    grid = Grid(shape=(n,), extent=(n - 1.0,), dtype=np.float64)
    u = TimeFunction(name='u', grid=grid, space_order=8, time_order=2)
    rec = SparseTimeFunction(name='rec', grid=grid, npoint=3, nt=12,
                             interpolation=interpolation, r=4,
                             coordinates=np.array([[0.3], [1.6], [n - 1.7]]))
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.dx2), rec.interpolate(expr=u)]
    adjoints = {u: adjoint_function(u), rec: adjoint_function(rec)}
    assert dot_test(primal, adjoints, {u: np.array([True, True, False])},
                    apply=dict(time_m=1, time_M=10, dt=1.0), rng=rng) < 1e-12


@pytest.mark.parametrize('interpolation, position, exact', [
    ('linear', 0.3, True), ('sinc', 9.3, True), ('sinc', 0.3, False),
    ('sinc', 17.6, False)])
def test_sources_next_to_the_edge(interpolation, position, exact, rng):
    """A source whose interpolation reaches past the domain's edge writes the halo,
    which the primal carries from step to step and the adjoint does not follow: it is
    refused before anything runs (the dot test was off by 2e-2). Linear interpolation
    next to the edge, and sinc inside, are exact."""
    from devito import Eq, Grid
    n = 20
    grid = Grid(shape=(n,), extent=(n - 1.0,), dtype=np.float64)
    u = TimeFunction(name='u', grid=grid, space_order=8, time_order=2)
    src = SparseTimeFunction(name='src', grid=grid, npoint=2, nt=12,
                             interpolation=interpolation, r=4,
                             coordinates=np.array([[position], [10.0]]))
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.dx2),
              src.inject(field=u.forward, expr=src)]
    adjoints = {u: adjoint_function(u), src: adjoint_function(src)}
    inputs = {u: np.array([True, True, False]), src: slice(None)}
    apply = dict(time_m=1, time_M=10, dt=1.0)
    if exact:
        assert dot_test(primal, adjoints, inputs, apply=apply, rng=rng) < 1e-12
    else:
        with pytest.raises(AdjointError, match=r"field `u`.*`src` has points.*radius 4"):
            AdjointOperator(primal, adjoints)


def test_injected_expression_is_differentiated(rng):
    """``src * dt**2 / m`` contributes to dJ/dm: an injection into mb."""
    u, m, src, rec, stencil, inject, interpolate = _sparse_problem(rng)
    u = TimeFunction(name='us', grid=u.grid, space_order=2, time_order=2, save=12)
    from devito import Eq
    s = u.grid.stepping_dim.spacing
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u.laplace / m),
              src.inject(field=u.forward, expr=src * s ** 2 / m), rec.interpolate(expr=u)]
    src.data[:] = rng.standard_normal(src.data.shape)
    d = rng.standard_normal(rec.data.shape)
    op = Operator(primal)
    apply = dict(time_m=1, time_M=10, dt=1.0)
    m0, dm = m.data.copy(), rng.standard_normal(m.shape)

    def objective(h):
        m.data[:] = m0 + h * dm
        u.data[:] = 0
        op.apply(**apply)
        return np.vdot(rec.data, d)

    fd = (objective(1e-6) - objective(-1e-6)) / 2e-6
    objective(0.0)
    mb, recb = adjoint_function(m), adjoint_function(rec)
    recb.data[:] = d
    AdjointOperator(primal, {u: adjoint_function(u), m: mb, rec: recb}).apply(**apply)
    assert abs(fd - np.vdot(mb.data, dm)) / abs(fd) < 1e-7


def _staggered_sparse_program(case, interpolation):
    """A velocity-pressure program on the staggered grid, with its sources and
    receivers at points between the nodes, on staggered fields or on a tensor's
    diagonal."""
    from devito import (
        Eq,
        Grid,
        TensorTimeFunction,
        VectorTimeFunction,
        div,
        grad,
    )
    grid = Grid(shape=(12, 11), extent=(11.0, 10.0), dtype=np.float64)
    p = TimeFunction(name='p', grid=grid, space_order=2)
    v = VectorTimeFunction(name='v', grid=grid, space_order=2)
    points = dict(npoint=2, nt=8, interpolation=interpolation, r=2)
    src = SparseTimeFunction(name='src', grid=grid,
                             coordinates=np.array([[3.3, 4.7], [6.1, 4.2]]), **points)
    rec = SparseTimeFunction(name='rec', grid=grid,
                             coordinates=np.array([[5.3, 5.6], [4.1, 5.9]]), **points)
    fields = [p, *v.values()]
    update_v = Eq(v.forward, v + 0.1 * grad(p, shift=.5))
    if case == 'tensor diagonal':
        t = TensorTimeFunction(name='t', grid=grid, space_order=2)
        fields = [*v.values(), *t.values()]
        return fields, [Eq(v.forward, v + 0.1 * div(t, shift=.5)),
                        Eq(t.forward, t + 0.1 * grad(v.forward, shift=-.5)),
                        src.inject(t.forward.diagonal(), expr=src),
                        rec.interpolate(expr=t[-1, -1] + t[0, 1])], src, rec
    update_p = Eq(p.forward, p + 0.1 * div(v.forward, shift=-.5))
    if case == 'into a staggered field':
        return fields, [update_v, src.inject(field=v.forward[0], expr=src), update_p,
                        rec.interpolate(expr=p)], src, rec
    expr = v[0] if case == 'from a staggered field' else div(v)
    return fields, [update_v, update_p, src.inject(field=p.forward, expr=src),
                    rec.interpolate(expr=expr)], src, rec


# sinc, and the divergence Devito's elastic model runs, in the slow run: the default
# run's time
@pytest.mark.parametrize('interpolation', [
    'linear', pytest.param('sinc', marks=pytest.mark.slow)])
@pytest.mark.parametrize('case', [
    'into a staggered field', 'from a staggered field',
    pytest.param('divergence', marks=pytest.mark.slow),
    pytest.param('tensor diagonal', marks=pytest.mark.slow)])
def test_sparse_operations_on_staggered_fields(case, interpolation, rng):
    """Devito positions an injection into a staggered field at that field's points,
    and interpolates at the nodes, averaging a staggered field there: each transposes
    at the other's positions (both were off by 1e-2 before). The tangent reproduces
    the primal of this linear program."""
    from devito import Operator
    fields, primal, src, rec = _staggered_sparse_program(case, interpolation)
    adjoints = {f: adjoint_function(f) for f in (*fields, src, rec)}
    apply = dict(time_m=0, time_M=6, dt=1.0)
    assert dot_test(primal, adjoints, {src: slice(None)}, apply=apply, rng=rng) < 1e-12
    src.data[:] = rng.standard_normal(src.data.shape)
    for f in fields:
        f.data[:] = 0
    Operator(primal).apply(**apply)
    tangents = {f: adjoint_function(f, name=f'{f.name}_d') for f in (*fields, src, rec)}
    tangents[src].data[:] = src.data
    TangentOperator(primal, tangents, primal=False).apply(**apply)
    assert np.abs(rec.data).max() > 0
    assert np.allclose(tangents[rec].data, rec.data, rtol=1e-13, atol=0)


# -- whole forward models --------------------------------------------------------------

# the highest orders in the slow run: the default run's time is spent elsewhere
@pytest.mark.parametrize('so', [2, 4, 8] + [pytest.param(so, marks=pytest.mark.slow)
                                            for so in (12, 16)])
def test_forward_model_dot(so, rng):
    """<F src, d> = <src, F^T d> for Devito's acoustic model (damping, physdomain,
    Ricker injection, receivers), with the primal's apply arguments."""
    p = acoustic_problem(so=so, save=False)
    u, src, rec = p['u'], p['src'], p['rec']
    adjoints = {u: adjoint_function(u), src: adjoint_function(src),
                rec: adjoint_function(rec)}
    err = dot_test(p['primal'], adjoints, {src: slice(None)}, seeds={u: slice(0, 0)},
                   apply=p['apply'], rng=rng, subs=p['subs'])
    assert err < 1e-11


def devito_solver(physics, ndim, so=4, tn=150.0):
    """Devito's own solver of ``physics`` on a small layered model, float64."""
    from examples.seismic import demo_model, setup_geometry
    shape, spacing = ((25, 21), (10.0, 8.0)) if ndim == 2 else \
        ((15, 13, 11), (10.0, 8.0, 9.0))
    kind, _, kernel = physics.partition(' ')
    preset = {'visco': 'layers-viscoacoustic', 'tti': 'layers-tti'}.get(
        kind, f'layers-{kind}')
    model = demo_model(preset, shape=shape, spacing=spacing, nbl=6, space_order=so,
                       dtype=np.float64)
    geometry = setup_geometry(model, tn)
    if kind == 'elastic':
        from examples.seismic.elastic import ElasticWaveSolver
        return ElasticWaveSolver(model, geometry, space_order=so)
    if kind == 'viscoelastic':
        from examples.seismic.viscoelastic import ViscoelasticWaveSolver
        return ViscoelasticWaveSolver(model, geometry, space_order=so)
    if kind == 'tti':
        from examples.seismic.tti import AnisotropicWaveSolver
        return AnisotropicWaveSolver(model, geometry, space_order=so, kernel=kernel)
    from examples.seismic.viscoacoustic import ViscoacousticWaveSolver
    return ViscoacousticWaveSolver(model, geometry, space_order=so, kernel=kernel,
                                   time_order=1)


# in the slow run: the default run's time (a tensor system with a source on its
# diagonal runs there: test_sparse_operations_on_staggered_fields)
STAGGERED = [pytest.param(*case, marks=pytest.mark.slow) for case in (
    ('elastic', 2), ('viscoelastic', 2), ('tti staggered', 2), ('visco sls', 2),
    ('visco kv', 2), ('visco maxwell', 2), ('elastic', 3), ('viscoelastic', 3))]


@pytest.mark.parametrize('physics, ndim', STAGGERED)
def test_devito_staggered_forward_models(physics, ndim, rng):
    """Devito's own staggered-grid forward Operators (vector and tensor equations,
    the harmonic average of ``mu``, sources on the stress diagonal, receivers of
    ``tau_yy`` and ``div(v)``): the dot test from the source to every receiver set."""
    from conftest import devito_forward
    solver = devito_solver(physics, ndim)
    expressions, kwargs, adjoints, src = devito_forward(solver)
    src.data[:] = rng.standard_normal(src.data.shape)
    model = solver.model
    apply = dict(dt=solver.dt, time_M=solver.geometry.nt - 2, **model.physical_params())
    assert dot_test(expressions, adjoints, {src: slice(None)}, apply=apply, rng=rng,
                    subs=kwargs.get('subs')) < 1e-11


def test_same_default_time_range():
    p = acoustic_problem(save=False)
    u, src, rec = p['u'], p['src'], p['rec']
    op = Operator(p['primal'], subs=p['subs'])
    adjoints = {u: adjoint_function(u), rec: adjoint_function(rec),
                src: adjoint_function(src)}
    aop = AdjointOperator(p['primal'], adjoints, subs=p['subs'])
    a, b = op.arguments(**p['apply']), aop.arguments(**p['apply'])
    assert (a['time_m'], a['time_M']) == (b['time_m'], b['time_M'])


# -- FWI gradient ----------------------------------------------------------------------

@pytest.fixture(scope='module')
def fwi():
    """Objective J(vp) = 1/2 ||F(vp) - d||^2 and its derived gradient dJ/dvp."""
    rng = np.random.default_rng(7)
    p = acoustic_problem(so=8, shape=(41, 41), nbl=10, tn=200.0)
    model, u, rec = p['model'], p['u'], p['rec']
    vp_true = model.vp.data.copy()
    op = Operator(p['primal'], subs=p['subs'])
    u.data[:] = 0
    op.apply(**p['apply'])
    d_obs = rec.data.copy()
    from scipy.ndimage import gaussian_filter
    vp0 = gaussian_filter(vp_true, 3)
    ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=8)
    vpb, recb = adjoint_function(model.vp), adjoint_function(rec)
    aop = AdjointOperator(p['primal'], {u: ub, model.vp: vpb, rec: recb}, subs=p['subs'])

    def objective(vp):
        model.vp.data[:] = vp
        u.data[:] = 0
        op.apply(**p['apply'])
        return 0.5 * np.sum((rec.data - d_obs) ** 2)

    def gradient(vp):
        objective(vp)
        recb.data[:] = rec.data - d_obs
        ub.data[:] = 0
        vpb.data[:] = 0
        aop.apply(**p['apply'])
        return vpb.data.copy()

    return dict(p, objective=objective, gradient=gradient, vp0=vp0, d_obs=d_obs,
                rng=rng, g=gradient(vp0))


def test_gradient_matches_finite_differences(fwi):
    vp0, g = fwi['vp0'], fwi['g']
    from scipy.ndimage import gaussian_filter
    dvp = gaussian_filter(fwi['rng'].standard_normal(vp0.shape), 2)
    h = 1e-5
    fd = (fwi['objective'](vp0 + h * dvp) - fwi['objective'](vp0 - h * dvp)) / (2 * h)
    assert abs(fd - np.vdot(g, dvp)) / abs(fd) < 1e-7


def test_gradient_taylor_slope(fwi):
    vp0, g = fwi['vp0'], fwi['g']
    dvp = fwi['rng'].standard_normal(vp0.shape) * 1e-2
    j0 = fwi['objective'](vp0)
    steps = [1.0, 0.5, 0.25, 0.125]
    errors = [abs(fwi['objective'](vp0 + h * dvp) - j0 - h * np.vdot(g, dvp))
              for h in steps]
    slopes = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(slopes - 2) < 0.1), slopes


def test_gradient_at_source_matches_finite_differences(fwi):
    """Where Devito's hand-written gradient drops d(dt**2/m)/dm, the derived one is
    exact: a perturbation localised at the source point."""
    vp0, g, model = fwi['vp0'], fwi['g'], fwi['model']
    nbl = model.nbl
    ix = tuple(int(round(c / h)) + nbl for c, h in
               zip(fwi['geometry'].src_positions[0], model.spacing, strict=True))
    dvp = np.zeros_like(vp0)
    dvp[ix] = 1.0
    J = fwi['objective']
    h = 1e-4  # fourth-order central difference: the source point is strongly nonlinear
    fd = (8 * (J(vp0 + h * dvp) - J(vp0 - h * dvp))
          - (J(vp0 + 2 * h * dvp) - J(vp0 - 2 * h * dvp))) / (12 * h)
    assert abs(fd - g[ix]) / abs(fd) < 1e-7


def test_gradient_agrees_with_devito_away_from_sources(fwi):
    from examples.seismic.acoustic import AcousticWaveSolver

    from examples.seismic import Receiver
    model, geometry, vp0, g = fwi['model'], fwi['geometry'], fwi['vp0'], fwi['g']
    fwi['objective'](vp0)
    residual = Receiver(name='residual', grid=model.grid, time_range=geometry.time_axis,
                        coordinates=geometry.rec_positions)
    residual.data[:] = fwi['rec'].data - fwi['d_obs']
    solver = AcousticWaveSolver(model, geometry, space_order=8)
    grad_m, _ = solver.gradient(residual, u=fwi['u'], vp=model.vp)
    devito = grad_m.data * (-2.0 / vp0 ** 3)  # dJ/dvp = dJ/dm * dm/dvp
    away = np.ones(g.shape, dtype=bool)
    ix = [int(round(c / h)) + model.nbl for c, h in
          zip(geometry.src_positions[0], model.spacing, strict=True)]
    away[ix[0] - 2:ix[0] + 3, ix[1] - 2:ix[1] + 3] = False
    assert np.abs(devito - g)[away].max() <= 3e-9 * np.abs(g).max()


def test_unsaved_wavefield_is_an_error():
    p = acoustic_problem(save=False)
    model, u, rec = p['model'], p['u'], p['rec']
    with pytest.raises(AdjointError, match=r"field `u`.*save=nt"):
        AdjointOperator(p['primal'], {u: adjoint_function(u), rec: adjoint_function(rec),
                                      model.vp: adjoint_function(model.vp)},
                        subs=p['subs'])


# -- tangent (Born) --------------------------------------------------------------------

def test_born_adjoint_pair(fwi):
    """<J dvp, d> = <dvp, J^T d>: TangentOperator and AdjointOperator are a pair."""
    model, u, rec, rng = fwi['model'], fwi['u'], fwi['rec'], fwi['rng']
    vp0 = fwi['vp0']
    du = TimeFunction(name='du', grid=model.grid, time_order=2, space_order=8)
    dvp, drec = adjoint_function(model.vp, 'dvp'), adjoint_function(rec, 'drec')
    born = TangentOperator(fwi['primal'], {u: du, model.vp: dvp, rec: drec},
                           subs=fwi['subs'])
    model.vp.data[:] = vp0
    u.data[:] = 0
    dvp.data[:] = rng.standard_normal(dvp.shape)
    born.apply(**fwi['apply'])
    d = rng.standard_normal(drec.data.shape)
    forward = np.vdot(drec.data, d)
    ub = TimeFunction(name='ub2', grid=model.grid, time_order=2, space_order=8)
    vpb, recb = adjoint_function(model.vp, 'vpb2'), adjoint_function(rec, 'recb2')
    recb.data[:] = d
    AdjointOperator(fwi['primal'], {u: ub, model.vp: vpb, rec: recb},
                    subs=fwi['subs']).apply(**fwi['apply'])  # u holds the trajectory
    assert abs(forward - np.vdot(dvp.data, vpb.data)) / abs(forward) < 1e-11


def test_born_matches_finite_differences(fwi):
    model, u, rec, rng = fwi['model'], fwi['u'], fwi['rec'], fwi['rng']
    vp0 = fwi['vp0']
    du = TimeFunction(name='du3', grid=model.grid, time_order=2, space_order=8)
    dvp, drec = adjoint_function(model.vp, 'dvp3'), adjoint_function(rec, 'drec3')
    direction = rng.standard_normal(vp0.shape)
    op = Operator(fwi['primal'], subs=fwi['subs'])

    def data(h):
        model.vp.data[:] = vp0 + h * direction
        u.data[:] = 0
        op.apply(**fwi['apply'])
        return rec.data.copy()

    fd = (data(1e-5) - data(-1e-5)) / 2e-5
    model.vp.data[:] = vp0
    u.data[:] = 0
    dvp.data[:] = direction
    TangentOperator(fwi['primal'], {u: du, model.vp: dvp, rec: drec},
                    subs=fwi['subs']).apply(**fwi['apply'])
    assert np.linalg.norm(drec.data - fd) / np.linalg.norm(fd) < 1e-7
