"""The ``physics`` problem of ``run.py``: the propagators of Devito's ``examples.seismic``
with nested derivatives, each in a group of its own.

Per physics: Devito's forward operator (the primal, its expressions built by Devito's
own stencil functions, nothing copied), the adjoint derived from those expressions,
and Devito's hand-written adjoint operator where there is one:

- visco-acoustic SLS, KV and Maxwell at time order 2 (``viscoacoustic.operators``);
- the self-adjoint variable-density iso model (``self_adjoint.operators``);
- a variable-density acoustic ``(b*u.dx).dx + (b*u.dy).dy``: Devito has no adjoint of
  it; the derived adjoint is compared with its primal and with the same adjoint
  stencil written by hand (``D^T(b D^T(c ub))`` with Devito's transposed
  derivatives), a speed reference.
"""

import numpy as np
from devito import NODE, Eq, Operator, TimeFunction

from devito_perforad import AdjointOperator, adjoint_function
from devito_perforad.fields import adjoint_functions

__all__ = ['physics_cases', 'gradient_cases', 'staggered_cases', 'visco_problem',
           'self_adjoint_problem', 'variable_density_problem', 'tti_problem',
           'staggered_problem', 'PROBLEMS', 'PARAMETERS', 'STAGGERED']

PARAMETERS = {'visco-acoustic SLS': ('vp', 'b', 'qp'),
              'visco-acoustic KV': ('vp', 'b', 'qp'),
              'visco-acoustic Maxwell': ('vp', 'b', 'qp'),
              'self-adjoint iso': ('vp', 'b'), 'variable density': ('vp', 'b'),
              'TTI centred': ('vp', 'epsilon', 'delta', 'theta')}

def _spacing(shape, spacing):
    if np.iterable(spacing):
        return tuple(map(float, spacing))
    return (float(spacing),) * len(shape)


def _geometry(model, nt, f0=0.010, tn=None):
    """A Ricker source of peak frequency ``f0`` (kHz) at 20 m depth, a line of
    receivers at 30 m; ``tn`` (ms), or ``nt`` steps of the critical ``dt``."""
    from examples.seismic import AcquisitionGeometry
    extent = [(n - 1) * h for n, h in zip(model.shape, model.spacing, strict=True)]
    src = np.array([[e / 2 for e in extent[:-1]] + [20.0]])
    rec = np.zeros((model.shape[0], model.dim))
    rec[:, :-1] = [e / 2 for e in extent[:-1]]
    rec[:, 0] = np.linspace(0, extent[0], model.shape[0])
    rec[:, -1] = 30.0
    tn = (nt - 1) * model.critical_dt if tn is None else tn
    return AcquisitionGeometry(model, rec, src, 0.0, tn, f0=f0, src_type='Ricker')


def visco_problem(kernel, shape, nbl, so, nt=None, dtype=np.float32, save=False,
                  spacing=10.0, f0=0.010, tn=None):
    """Devito's visco-acoustic model and forward expressions (time order 2), the
    wavefields saved at every step with ``save``.

    Returns
    -------
    model, geometry, expressions, adjoints, devito_adjoint
        ``adjoints`` maps every field of the expressions to a new adjoint field;
        ``devito_adjoint()`` builds Devito's hand-written adjoint Operator (its
        gradient operator with ``save``).

    Every problem takes the same keywords: ``shape`` and ``nbl`` (points), ``so``
    (space order), ``nt`` (steps of the critical ``dt``) or ``tn`` (ms), ``spacing``
    (m, one or per dimension), ``f0`` (kHz, the source's peak frequency; the
    visco-acoustic relaxation times and the self-adjoint model's attenuation depend
    on it), ``dtype`` and ``save``.
    """
    from examples.seismic.viscoacoustic import operators

    from examples.seismic import demo_model

    model = demo_model('layers-viscoacoustic', space_order=so, shape=shape, nbl=nbl,
                       dtype=dtype, spacing=_spacing(shape, spacing))
    geometry = _geometry(model, nt, f0, tn)
    p = TimeFunction(name='p', grid=model.grid, time_order=2, space_order=so,
                     staggered=NODE, save=geometry.nt if save else None)
    eqn = operators.kernels[kernel](model, geometry, p, save=save)
    src, rec = operators.src_rec(p, model, geometry)
    expressions = eqn + [src, rec]
    adjoints = _adjoints(eqn, [src, rec])

    def devito_adjoint():
        if save:  # its hand-written jacobian_adjoint (GradientOperator)
            return operators.GradientOperator(model, geometry, space_order=so,
                                              kernel=kernel, time_order=2, save=True)
        return operators.AdjointOperator(model, geometry, space_order=so, kernel=kernel,
                                         time_order=2)
    return model, geometry, expressions, adjoints, devito_adjoint


def self_adjoint_problem(shape, nbl, so, nt=None, dtype=np.float32, save=False,
                         spacing=10.0, f0=0.010, tn=None):
    """Devito's self-adjoint variable-density iso model (``IsoFwdOperator``'s
    expressions), and its ``IsoAdjOperator`` (``IsoJacobianAdjOperator`` with
    ``save``)."""
    from examples.seismic.self_adjoint.operators import (
        IsoAdjOperator,
        IsoJacobianAdjOperator,
        iso_stencil,
    )
    from examples.seismic.self_adjoint.utils import setup_w_over_q

    from examples.seismic import SeismicModel

    vp = np.full(shape, 1.5, dtype=dtype)
    vp[:, shape[1] // 2:] = 2.5
    b = np.full(shape, 1.0, dtype=dtype)
    b[:, shape[1] // 2:] = 1 / 2.2
    model = SeismicModel(origin=(0.0,) * len(shape), shape=shape, vp=vp, b=b,
                         spacing=_spacing(shape, spacing), nbl=nbl, space_order=so,
                         dtype=dtype, bcs=lambda f, n: setup_w_over_q(
                             f, 2 * np.pi * f0, 0.1, 1000.0, n, sigma=0))
    geometry = _geometry(model, nt, f0, tn)
    u = TimeFunction(name='u', grid=model.grid, time_order=2, space_order=so,
                     save=geometry.nt if save else None)
    t = model.grid.time_dim
    src, rec = geometry.src, geometry.rec
    eqn = iso_stencil(u, model, forward=True)
    terms = [src.inject(field=u.forward, expr=src * t.spacing ** 2 * model.vp ** 2
                        / model.b), rec.interpolate(expr=u)]
    adjoints = _adjoints(eqn, terms)

    def devito_adjoint():
        if save:  # its hand-written jacobian_adjoint
            return IsoJacobianAdjOperator(model, geometry, space_order=so, save=True)
        return IsoAdjOperator(model, geometry, space_order=so)
    return model, geometry, eqn + terms, adjoints, devito_adjoint


def tti_problem(shape, nbl, so, nt=None, dtype=np.float32, save=False,
                spacing=10.0, f0=0.010, tn=None, anisotropic=False):
    """Devito's TTI model (``layers-tti``) and its centred forward expressions
    (``tti.operators.kernel_centered``, the source injected into both fields, the
    receivers interpolating ``u + v``), and its hand-written ``AdjointOperator``
    (``JacobianAdjOperator``, a gradient with respect to ``m``, with ``save``).

    ``layers-tti`` is isotropic in its top layer, where the source is. With
    ``anisotropic``, epsilon, delta and theta are smooth and non-zero everywhere,
    so that the waves feel every Thomsen parameter and the tilt.
    """
    from examples.seismic.tti import operators

    from examples.seismic import demo_model
    model = demo_model('layers-tti', space_order=so, shape=shape, nbl=nbl, dtype=dtype,
                       spacing=_spacing(shape, spacing))
    if anisotropic:
        _anisotropy(model)
    geometry = _geometry(model, nt, f0, tn)
    u, v = (TimeFunction(name=n, grid=model.grid, time_order=2, space_order=so,
                         save=geometry.nt if save else None) for n in 'uv')
    s, src, rec = model.grid.stepping_dim.spacing, geometry.src, geometry.rec
    eqn = operators.kernels[('centered', len(shape))](model, u, v)
    terms = [src.inject(field=(u.forward, v.forward), expr=src * s ** 2 / model.m),
             rec.interpolate(expr=u + v)]

    def devito_adjoint():
        if save:
            return operators.JacobianAdjOperator(model, geometry, space_order=so,
                                                 save=True)
        return operators.AdjointOperator(model, geometry, space_order=so)
    return model, geometry, eqn + terms, _adjoints(eqn, terms), devito_adjoint


def _anisotropy(model):
    """Smooth Thomsen parameters and tilt, non-zero everywhere (halo included)."""
    z = np.linspace(0.0, 1.0, model.epsilon.data_with_halo.shape[-1])
    x = np.linspace(0.0, 1.0, model.epsilon.data_with_halo.shape[0])[:, None]
    model.epsilon.data_with_halo[:] = 0.15 + 0.1 * z
    model.delta.data_with_halo[:] = 0.05 + 0.05 * z
    model.theta.data_with_halo[:] = 0.3 + 0.4 * x * z


def variable_density_problem(shape, nbl, so, nt=None, dtype=np.float32, save=False,
                             spacing=10.0, f0=0.010, tn=None):
    """A variable-density acoustic ``u.dt2 = vp**2 * ((b*u.dx).dx + (b*u.dy).dy)`` on
    Devito's visco-acoustic model (its ``b``), with a damping layer; its
    ``devito_adjoint()`` is the adjoint stencil written by hand (none with
    ``save``)."""
    from examples.seismic import demo_model
    model = demo_model('layers-viscoacoustic', space_order=so, shape=shape, nbl=nbl,
                       dtype=dtype, spacing=_spacing(shape, spacing))
    geometry = _geometry(model, nt, f0, tn)
    u = TimeFunction(name='u', grid=model.grid, time_order=2, space_order=so,
                     save=geometry.nt if save else None)
    s, b = model.grid.stepping_dim.spacing, model.b
    divergence = sum((b * u.diff(d)).diff(d) for d in model.grid.dimensions)
    eqn = [Eq(u.forward, (2 * u - (1 - model.damp) * u.backward
                          + s ** 2 * model.vp ** 2 * divergence) / (1 + model.damp))]
    src, rec = geometry.src, geometry.rec
    terms = [src.inject(field=u.forward, expr=src * s ** 2 * model.vp ** 2),
             rec.interpolate(expr=u)]

    def hand_written():
        """The adjoint's stencil written by hand with Devito's transposed derivatives,
        ``ub[t-1] = K (2 ub - (1 - damp) ub[t+1]) + sum_d D^T(b D^T(c ub))`` with
        ``K = 1/(1 + damp)``, ``c = dt**2 vp**2 K``: a speed reference for the
        derived adjoint (the same work, written as a person would)."""
        ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=so)
        k = 1 / (1 + model.damp)
        c = s ** 2 * model.vp ** 2 * k
        gathers = sum((b * (c * ub).diff(d).T).diff(d).T for d in model.grid.dimensions)
        srca, recb = geometry.new_src(name='srca', src_type=None), geometry.rec
        return Operator([Eq(ub.backward, k * (2 * ub - (1 - model.damp) * ub.forward)
                            + gathers),
                         recb.inject(field=ub.backward, expr=recb * s ** 2
                                     * model.vp ** 2 * k),
                         srca.interpolate(expr=ub)],
                        subs=model.spacing_map, name='HandWritten')
    return (model, geometry, eqn + terms, _adjoints(eqn, terms),
            None if save else hand_written)


def _adjoints(eqn, terms):
    fields = {e.lhs.function for e in eqn}
    sparse = [t.interpolator.sfunction for t in terms]
    adjoints = {f: adjoint_function(f) for f in sorted(fields, key=lambda f: f.name)}
    adjoints.update({s: adjoint_function(s) for s in sparse})
    return adjoints


def _primal_and_adjoint(group, model, expressions, adjoints, steps):
    """The cases of a group's primal and derived adjoint (``run.Case`` arguments)."""
    kw = dict(subs=model.spacing_map, opt='advanced')
    yield (group, 'primal',
           lambda: Operator(expressions, name='Forward', **kw), steps)
    yield (group, 'derived adjoint', lambda: AdjointOperator(expressions, adjoints, **kw),
           steps)


def physics_cases(shape, nbl, so, nt):
    """Per physics: the primal, the derived adjoint and Devito's adjoint.

    Yields
    ------
    (group, role, build, kwargs)
        The arguments of ``run.Case``.
    """
    for group, make in PROBLEMS.items():
        model, geometry, expressions, adjoints, devito_adjoint = make(
            shape=shape, nbl=nbl, so=so, nt=nt)
        steps = dict(dt=model.critical_dt, time_m=1, time_M=geometry.nt - 2)
        yield from _primal_and_adjoint(group, model, expressions, adjoints, steps)
        role = ("Devito's adjoint" if group != 'variable density'
                else 'hand-written adjoint')
        yield (group, role, devito_adjoint, steps)


PROBLEMS = {
    'visco-acoustic SLS': lambda **kw: visco_problem('sls', **kw),
    'visco-acoustic KV': lambda **kw: visco_problem('kv', **kw),
    'visco-acoustic Maxwell': lambda **kw: visco_problem('maxwell', **kw),
    'self-adjoint iso': self_adjoint_problem,
    'variable density': variable_density_problem,
    'TTI centred': tti_problem,
}


def gradient_cases(shape, nbl, so, nt):
    """Per physics: the primal, the derived gradient with respect to ``vp``, the one
    with respect to every parameter (:data:`PARAMETERS`), and Devito's hand-written
    gradient where there is one (``vp`` only). The wavefields are saved.

    Yields
    ------
    (group, role, build, kwargs)
        The arguments of ``run.Case``.
    """
    for group, make in PROBLEMS.items():
        params = PARAMETERS[group]
        model, geometry, expressions, adjoints, devito_gradient = make(
            shape=shape, nbl=nbl, so=so, nt=nt, save=True)
        kw = dict(subs=model.spacing_map, opt='advanced')
        steps = dict(dt=model.critical_dt, time_m=1, time_M=geometry.nt - 2)
        src = expressions[-2].interpolator.sfunction
        state = {f: fb for f, fb in adjoints.items() if f is not src}
        vp = {model.vp: adjoint_function(model.vp)}
        every = {getattr(model, p): adjoint_function(getattr(model, p)) for p in params}
        yield (group, 'primal',
               lambda e=expressions, kw=kw: Operator(e, name='Forward', **kw), steps)
        yield (group, 'derived gradient',
               lambda e=expressions, a={**state, **vp}, kw=kw: AdjointOperator(e, a,
                                                                              **kw),
               steps)
        yield (group, 'derived gradient, ' + ' '.join(params),
               lambda e=expressions, a={**state, **every}, kw=kw: AdjointOperator(
                   e, a, **kw), steps)
        if devito_gradient is not None:
            yield (group, "Devito's gradient", devito_gradient, steps)


# -- staggered grids: vector and tensor wavefields ---------------------------------------

def staggered_problem(physics, shape, nbl, so, nt=None, dtype=np.float32, spacing=10.0,
                      f0=0.010, tn=None):
    """Devito's own staggered-grid solver of ``physics`` (``'elastic'``,
    ``'TTI staggered'``, ``'visco-acoustic SLS/KV/Maxwell, order 1'``), the
    expressions of its forward Operator (recorded as Devito built it), an adjoint
    for every field, and Devito's hand-written adjoint where it has one (``None``:
    Devito has no adjoint of the elastic model).

    Returns
    -------
    model, geometry, expressions, adjoints, devito_adjoint
    """
    from devito_perforad.devito_compat import operator_inputs
    from examples.seismic import demo_model
    kw = dict(space_order=so, shape=shape, nbl=nbl, dtype=dtype,
              spacing=_spacing(shape, spacing))
    devito_adjoint = None
    if physics == 'elastic':
        from examples.seismic.elastic import ElasticWaveSolver
        model = demo_model('layers-elastic', **kw)
        solver = ElasticWaveSolver(model, _geometry(model, nt, f0, tn), space_order=so)
    elif physics == 'TTI staggered':
        from examples.seismic.tti import AnisotropicWaveSolver
        from examples.seismic.tti.operators import AdjointOperator as DevitosAdjoint
        model = demo_model('layers-tti', **kw)
        _anisotropy(model)
        solver = AnisotropicWaveSolver(model, _geometry(model, nt, f0, tn),
                                       space_order=so, kernel='staggered')

        def devito_adjoint():
            return DevitosAdjoint(model, solver.geometry, space_order=so,
                                  kernel='staggered')
    else:
        from examples.seismic.viscoacoustic import ViscoacousticWaveSolver
        from examples.seismic.viscoacoustic.operators import (
            AdjointOperator as DevitosAdjoint,
        )
        kernel = physics.split()[1].split(',')[0].lower()
        model = demo_model('layers-viscoacoustic', **kw)
        solver = ViscoacousticWaveSolver(model, _geometry(model, nt, f0, tn),
                                         space_order=so, kernel=kernel, time_order=1)

        def devito_adjoint():
            return DevitosAdjoint(model, solver.geometry, space_order=so, kernel=kernel,
                           time_order=1)
    expressions, _ = operator_inputs(solver.op_fwd(False))
    return model, solver.geometry, expressions, adjoint_functions(expressions), \
        devito_adjoint


STAGGERED = ('elastic', 'TTI staggered', 'visco-acoustic SLS, order 1',
             'visco-acoustic KV, order 1', 'visco-acoustic Maxwell, order 1')


def staggered_cases(shape, nbl, so, nt, groups=STAGGERED):
    """Per staggered-grid physics: the primal, the derived adjoint and Devito's
    hand-written adjoint where there is one.

    Yields
    ------
    (group, role, build, kwargs)
        The arguments of ``run.Case``.
    """
    for group in groups:
        model, geometry, expressions, adjoints, devito_adjoint = staggered_problem(
            group, shape=shape, nbl=nbl, so=so, nt=nt)
        steps = dict(dt=model.critical_dt, time_m=0, time_M=geometry.nt - 2)
        yield from _primal_and_adjoint(group, model, expressions, adjoints, steps)
        if devito_adjoint is not None:
            yield (group, "Devito's adjoint", devito_adjoint, steps)
