"""seismic.py: derived solvers for every ``examples.seismic`` physics that derives
(the staggered TTI too), from Devito's own solvers, and the adjoint of a solver's
Operator keyed by names.

Per physics: the derived adjoint and Born pair dot-test (float64), the gradient of
every parameter against 4th-order central differences, each parameter on its own,
the derived ``jacobian_adjoint`` against Devito's hand-written one where Devito has a
working one, and the adjoint of ``solver.op_fwd(save=True)`` itself. The acoustic
solver runs in the default run (but for the comparisons with Devito's and with a
checkpointed run); the others, each a few Operators more to compile, in the slow
run."""

import numpy as np
import pytest
from devito import Function

from devito_perforad import AdjointOperator, adjoint_function
from devito_perforad.seismic import derived_solver

SHAPE, SPACING, NBL, SO, TN = (27, 23), (10.0, 8.0), 6, 4, 150.0


def _acoustic():
    from examples.seismic.acoustic import AcousticWaveSolver

    from examples.seismic import demo_model, setup_geometry
    model = demo_model('layers-isotropic', shape=SHAPE, spacing=SPACING, nbl=NBL,
                       space_order=SO, dtype=np.float64)
    return AcousticWaveSolver(model, setup_geometry(model, TN), space_order=SO)


def _tti(kernel):
    def make():
        from examples.seismic.tti import AnisotropicWaveSolver

        from examples.seismic import demo_model, setup_geometry
        model = demo_model('layers-tti', shape=SHAPE, spacing=SPACING, nbl=NBL,
                           space_order=SO, dtype=np.float64)
        # anisotropic and tilted where the waves travel (the top layer is isotropic)
        model.epsilon.data_with_halo[:] += 0.15
        model.delta.data_with_halo[:] += 0.05
        model.theta.data_with_halo[:] += 0.4
        return AnisotropicWaveSolver(model, setup_geometry(model, TN), space_order=SO,
                                     kernel=kernel)
    return make


def _visco(kernel):
    def make():
        from examples.seismic.viscoacoustic import ViscoacousticWaveSolver

        from examples.seismic import demo_model, setup_geometry
        model = demo_model('layers-viscoacoustic', shape=SHAPE, spacing=SPACING,
                           nbl=NBL, space_order=SO, dtype=np.float64)
        return ViscoacousticWaveSolver(model, setup_geometry(model, TN), space_order=SO,
                                       kernel=kernel, time_order=2)
    return make


def _self_adjoint():
    from examples.seismic.self_adjoint import SaIsoAcousticWaveSolver, setup_w_over_q

    from examples.seismic import SeismicModel, setup_geometry
    vp, b = np.full(SHAPE, 1.5), np.full(SHAPE, 1.0)
    vp[:, SHAPE[1] // 2:], b[:, SHAPE[1] // 2:] = 2.2, 0.6
    model = SeismicModel(origin=(0.0, 0.0), shape=SHAPE, vp=vp, b=b, spacing=SPACING,
                         nbl=NBL, space_order=SO, dtype=np.float64,
                         bcs=lambda f, n: setup_w_over_q(f, 2 * np.pi * 0.010, 0.1,
                                                         1000.0, n, sigma=0))
    return SaIsoAcousticWaveSolver(model, setup_geometry(model, TN), space_order=SO)


# physics -> (solver, its parameters, whether Devito's jacobian_adjoint is its exact
# transpose: None where it does not run, or is of another model)
PHYSICS = {
    'acoustic': (_acoustic, ('vp',), True),
    'TTI centred': (_tti('centered'), ('vp', 'epsilon', 'delta', 'theta'), True),
    # Devito's staggered TTI solver keeps its particle velocities buffered even with
    # save=True: its gradients run the forward in bounded memory (u=None); Devito's
    # jacobian is of the centred kernel
    'TTI staggered': (_tti('staggered'), ('vp', 'epsilon', 'delta', 'theta'), None),
    'visco-acoustic SLS': (_visco('sls'), ('vp', 'b', 'qp'), False),
    'visco-acoustic KV': (_visco('kv'), ('vp', 'b', 'qp'), None),
    'visco-acoustic Maxwell': (_visco('maxwell'), ('vp', 'b', 'qp'), None),
    'self-adjoint iso': (_self_adjoint, ('vp', 'b'), True),
}


@pytest.fixture(scope='module', params=[
    pytest.param(n, marks=() if n == 'acoustic' else pytest.mark.slow) for n in PHYSICS])
def physics(request):
    """A Devito solver, its derived solver, a random source and receiver data."""
    make, params, exact = PHYSICS[request.param]
    solver = make()
    rng = np.random.default_rng(3)
    src, y = solver.geometry.src, solver.geometry.rec
    src.data[:] = rng.standard_normal(src.data.shape)
    y.data[:] = rng.standard_normal(y.data.shape)
    return dict(name=request.param, solver=solver, ds=derived_solver(solver), src=src,
                y=y, params=params, exact=exact, rng=rng,
                saves=request.param != 'TTI staggered')


def _saved(p):
    """The wavefields a saved forward run returns; None where they are not all the
    forward model needs (then the gradients run it themselves)."""
    if not p['saves']:
        return None
    return tuple(f for f in p['ds'].forward(save=True)[1:-1] if f is not None)


def _dot(a, b, c, d):
    return abs(np.vdot(a, b) - np.vdot(c, d)) / abs(np.vdot(a, b))


def test_adjoint_is_exact(physics):
    """``adjoint``: the transpose of ``forward`` from the sources to the receivers,
    returned in the places of Devito's solver's own ``adjoint``."""
    p = physics
    rec = p['ds'].forward(src=p['src'])[0].data.copy()
    srca, *wavefields, summary = p['ds'].adjoint(p['y'])
    assert srca.name == 'srca' and np.array_equal(srca.coordinates.data,
                                                  p['src'].coordinates.data)
    assert any(w is not None for w in wavefields) and hasattr(summary, 'globals')
    assert _dot(rec, p['y'].data, p['src'].data, srca.data) < 1e-11


def test_born_pair_is_exact(physics):
    """``jacobian`` and ``jacobian_adjoint``: an exact pair, in the solver's own
    parameter (``m`` or ``vp``)."""
    p = physics
    dm = Function(name='dm', grid=p['solver'].model.grid)
    dm.data[:] = p['rng'].standard_normal(dm.data.shape)
    drec = p['ds'].jacobian(dm)[0].data.copy()
    saved = _saved(p)
    if saved is None:
        g, _ = p['ds'].jacobian_adjoint(p['y'], *p['ds'].forward(save=True)[1:-1],
                                        checkpointing=True)
    else:
        g, _ = p['ds'].jacobian_adjoint(p['y'], *saved)
    assert _dot(drec, p['y'].data, dm.data, g.data) < 1e-11


def test_every_parameter_gradient(physics):
    """``gradient`` of ``<F(m), y>`` with respect to every parameter, each on its
    own against a 4th-order central difference of Devito's own ``forward``."""
    p = physics
    solver, model = p['solver'], p['solver'].model
    dt = solver.dt
    grads = p['ds'].gradient(p['y'], _saved(p), params=p['params'])
    for name in p['params']:
        m = getattr(model, name)
        m0 = m.data.copy()
        dm = p['rng'].standard_normal(m0.shape) * 0.01 * np.abs(m0).mean()

        def objective(h, m=m, m0=m0, dm=dm):
            m.data[:] = m0 + h * dm
            # the step held: the solver's own follows max(vp), in rounded steps
            return np.vdot(solver.forward(dt=dt)[0].data, p['y'].data)

        h = 1e-3
        J = objective
        fd = (8 * (J(h) - J(-h)) - (J(2 * h) - J(-2 * h))) / (12 * h)
        m.data[:] = m0
        ad = np.vdot(dm, grads[name].data)
        assert abs(fd - ad) / abs(ad) < 1e-7, (name, abs(fd - ad) / abs(ad))


@pytest.mark.slow  # also for the acoustic solver: the default run's time
def test_against_devitos_jacobian_adjoint(physics):
    """Where Devito's hand-written ``jacobian_adjoint`` is the exact transpose of its
    Born operator (acoustic, TTI centred, self-adjoint), the derived one equals it;
    Devito's visco-acoustic SLS gradient is derived from the continuous equations and
    differs (KV and Maxwell: Devito's own does not run)."""
    p = physics
    if p['exact'] is None:
        pytest.skip("Devito's jacobian_adjoint does not run for this kernel, or is "
                    "of the centred one")
    saved = [f for f in p['ds'].forward(save=True)[1:-1] if f is not None]
    derived, _ = p['ds'].jacobian_adjoint(p['y'], *saved)
    devito = p['solver'].jacobian_adjoint(p['y'], *saved)[0]
    difference = np.linalg.norm(devito.data - derived.data) / np.linalg.norm(devito.data)
    assert (difference < 1e-11) == p['exact'], difference


@pytest.mark.slow  # also for the acoustic solver: the default run's time
def test_gradient_without_a_saved_wavefield(physics):
    """``u=None``: the forward runs inside, with checkpointing; the same gradient."""
    p = physics
    if not p['saves']:
        pytest.skip('no saved forward run to compare with')
    saved = tuple(f for f in p['ds'].forward(save=True)[1:-1] if f is not None)
    name = p['params'][-1]
    with_u = p['ds'].gradient(p['y'], saved, params=(name,))[name].data.copy()
    without = p['ds'].gradient(p['y'], None, params=(name,))[name].data
    assert np.linalg.norm(without - with_u) < 1e-12 * np.linalg.norm(with_u)


def test_the_solvers_operator_keyed_by_names(physics):
    """``AdjointOperator(solver.op_fwd(save=True), {...names...})``: the Operator
    Devito's solver built, passed as it is; the same gradient as the derived
    solver's."""
    p = physics
    if not p['saves']:
        pytest.skip('its saved forward run does not save every field it needs')
    solver = p['solver']
    saved = tuple(f for f in p['ds'].forward(save=True)[1:-1] if f is not None)
    reference = p['ds'].gradient(p['y'], saved, params=('vp',))['vp'].data
    op = solver.op_fwd(save=True)
    vpb, recb = adjoint_function(solver.model.vp), adjoint_function(p['y'])
    recb.data[:] = p['y'].data
    saved = p['ds']._saved   # every wavefield the forward saved, by name
    adjoints = {name: adjoint_function(f) for name, f in saved.items()}
    aop = AdjointOperator(op, {**adjoints, 'vp': vpb, 'rec': recb})
    takes = {q.name for q in aop.parameters}   # (Devito refuses other arguments)
    aop.apply(dt=solver.dt, time_M=solver.geometry.nt - 2,
              **{k: v for k, v in {**saved, 'src': solver.geometry.src}.items()
                 if k in takes})
    assert np.linalg.norm(vpb.data - reference) < 1e-12 * np.linalg.norm(reference)


# -- vector and tensor wavefields: elastic, viscoelastic, first-order visco-acoustic --

# physics -> the parameters of its gradients; the model's own or, for the Lamé
# parametrised elastic models, the velocities too
VECTOR_PHYSICS = {
    'elastic': ('vp', 'vs', 'b'),
    'elastic lame': ('lam', 'mu', 'b'),
    'viscoelastic': ('vp', 'vs', 'b', 'qp', 'qs'),
    'visco sls': ('vp', 'b', 'qp'),
    'visco kv': ('vp', 'b', 'qp'),
    'visco maxwell': ('vp', 'b', 'qp'),
}


@pytest.fixture(scope='module', params=[pytest.param(n, marks=pytest.mark.slow)
                                        for n in VECTOR_PHYSICS])
def vector_physics(request):
    """A Devito solver of vector and tensor wavefields (Devito's own, from its
    ``examples.seismic``), its derived solver, a random source and data for every
    receiver set."""
    from test_seismic import devito_solver
    solver = devito_solver(request.param.replace(' lame', ''), 2, so=SO, tn=TN)
    rng = np.random.default_rng(5)
    src = solver.geometry.src
    src.data[:] = rng.standard_normal(src.data.shape)
    ds = derived_solver(solver)
    nrec = len(ds._fields(False)['receivers'])
    ys = tuple(rng.standard_normal(solver.geometry.rec.data.shape) for _ in range(nrec))
    return dict(name=request.param, solver=solver, ds=ds, src=src, ys=ys, rng=rng,
                params=VECTOR_PHYSICS[request.param])


def _data(p, out):
    return sum(np.vdot(r.data, y) for r, y in zip(out[:len(p['ys'])], p['ys'],
                                                   strict=True))


def test_vector_adjoint_is_exact(vector_physics):
    """``adjoint``: from the data of every receiver set (``rec1``: ``tau_yy``,
    ``rec2``: ``div(v)``) to the source, the exact transpose; a vector's or tensor's
    adjoint returned as its components."""
    p = vector_physics
    forward = _data(p, p['ds'].forward(src=p['src']))
    srca, *wavefields, _ = p['ds'].adjoint(*p['ys'])
    assert any(isinstance(w, tuple) for w in wavefields)
    assert abs(forward - np.vdot(p['src'].data, srca.data)) < 1e-11 * abs(forward)


def _lame_model_setter(model, name):
    """Setting ``vp``, ``vs`` or ``b`` (at fixed velocities) of a model that holds
    ``lam``, ``mu`` and ``b``."""
    lam, mu, b = (getattr(model, n).data.copy() for n in ('lam', 'mu', 'b'))
    v0 = dict(vp=np.sqrt(b * (lam + 2 * mu)), vs=np.sqrt(b * mu), b=b)

    def set_to(value):
        v = {**v0, name: value}
        model.b.data[:] = v['b']
        model.lam.data[:] = (v['vp'] ** 2 - 2 * v['vs'] ** 2) / v['b']
        model.mu.data[:] = v['vs'] ** 2 / v['b']
    return v0[name], set_to


def test_vector_every_parameter_gradient(vector_physics):
    """``gradient`` with respect to every parameter, each on its own against a
    4th-order central difference of Devito's own ``forward``. The elastic models
    hold ``lam``, ``mu``: by the velocities, the chain rule at the model; ``mu``'s
    harmonic average (Devito's ``SafeInv``) differentiated. ``lam`` and ``mu`` are
    perturbed in proportion, as ``mu`` is zero in the water."""
    p = vector_physics
    solver, model = p['solver'], p['solver'].model
    out = p['ds'].forward(save=True, src=p['src'])
    saved = tuple(f for f in out[len(p['ys']):-1] if f is not None)
    grads = p['ds'].gradient(p['ys'], saved, params=p['params'])
    dt = solver.dt
    lame = 'lam' in model.physical_parameters and 'lam' not in p['params']
    for name in p['params']:
        if lame and name in ('vp', 'vs', 'b'):
            m0, set_to = _lame_model_setter(model, name)
        else:
            m = getattr(model, name)
            m0 = m.data.copy()

            def set_to(value, m=m):
                m.data[:] = value
        scale = np.abs(m0) if name in ('lam', 'mu') else np.abs(m0).mean()
        dm = p['rng'].standard_normal(m0.shape) * 0.01 * scale

        def objective(h, set_to=set_to, m0=m0, dm=dm):
            set_to(m0 + h * dm)
            return _data(p, p['ds'].forward(src=p['src'], dt=dt))

        h, J = 1e-3, objective
        fd = (8 * (J(h) - J(-h)) - (J(2 * h) - J(-2 * h))) / (12 * h)
        set_to(m0)
        ad = np.vdot(dm, grads[name].data)
        assert abs(fd - ad) < 1e-7 * abs(ad), (name, abs(fd - ad) / abs(ad))


def test_against_devitos_hand_written_adjoint(vector_physics):
    """Devito's first-order visco-acoustic solvers have a hand-written ``adjoint``:
    its dot test is off by percents, the derived one's is not (the dot test decides;
    the difference is reported in docs/performance.md)."""
    p = vector_physics
    solver = p['solver']
    if not p['name'].startswith('visco '):
        pytest.skip('Devito has no adjoint of this model')
    d = p['ds'].forward(src=p['src'])[0].data.copy()
    rec = solver.geometry.rec
    rec.data[:] = p['ys'][0]
    forward = np.vdot(d, rec.data)
    derived = p['ds'].adjoint(rec)[0].data.copy()
    devitos = solver.adjoint(rec)[0].data.copy()
    assert abs(forward - np.vdot(p['src'].data, derived)) < 1e-11 * abs(forward)
    assert abs(forward - np.vdot(p['src'].data, devitos)) > 1e-3 * abs(forward)


def test_vector_born_pair_is_exact(vector_physics):
    """``jacobian`` and ``jacobian_adjoint`` of every parameter at once: an exact
    pair; for the elastic solvers, which have none in Devito, by parameter name."""
    p = vector_physics
    ds, model = p['ds'], p['solver'].model
    if not p['name'].startswith('visco '):
        dm = {name: p['rng'].standard_normal(model.grid.shape) for name in p['params']}
        born = ds.jacobian(dm, src=p['src'])
        out = ds.forward(save=True, src=p['src'])
        saved = tuple(f for f in out[len(p['ys']):-1] if f is not None)
        grads, _ = ds.jacobian_adjoint(p['ys'], saved, params=p['params'])
        pairs = [(dm[n], grads[n].data) for n in p['params']]
    else:  # Devito's own jacobian: in m
        dm = Function(name='dm', grid=model.grid)
        dm.data[:] = p['rng'].standard_normal(dm.data.shape)
        born = ds.jacobian(dm, src=p['src'])
        out = ds.forward(save=True, src=p['src'])
        g, _ = ds.jacobian_adjoint(p['ys'][0], out[1])
        pairs = [(dm.data, g.data)]
    forward = _data(p, born)
    backward = sum(np.vdot(a, b) for a, b in pairs)
    assert abs(forward - backward) < 1e-11 * abs(forward)


def test_keyword_overrides_as_devitos_solvers_take_them(physics):
    """``vp=`` (a Function of another model) and ``src=`` given to the methods, as
    Devito's solvers take them: the same results as with that model and source."""
    p = physics
    solver, ds = p['solver'], p['ds']
    if p['name'] != 'acoustic':
        pytest.skip('one physics is enough for the keyword plumbing')
    vp2 = Function(name='vp', grid=solver.model.grid, space_order=solver.model.vp.
                   space_order)
    vp2.data[:] = solver.model.vp.data * 1.05
    dt = solver.dt
    rec, u, _ = ds.forward(save=True, vp=vp2, src=p['src'], dt=dt)
    given = ds.gradient(p['y'], u, vp=vp2, dt=dt)['vp'].data.copy()
    vp0 = solver.model.vp.data.copy()
    solver.model.vp.data[:] = vp2.data
    try:
        rec2, u2, _ = ds.forward(save=True, src=p['src'], dt=dt)
        reference = ds.gradient(p['y'], u2, dt=dt)['vp'].data
    finally:
        solver.model.vp.data[:] = vp0
    assert np.array_equal(rec.data, rec2.data)
    assert np.linalg.norm(given - reference) <= 1e-12 * np.linalg.norm(reference)
