"""Full-waveform inversion with automatically derived adjoints: any of Devito's seismic
physics, several parameters at once, shots on a Dask cluster, resumable.

A complete, small 2D FWI:

* **physics** (``--physics``): Devito's own ``examples.seismic`` solvers, acoustic,
  TTI (centred), visco-acoustic (SLS), elastic or viscoelastic, each wrapped by
  :func:`devito_perforad.seismic.derived_solver`, which derives the exact adjoint of
  the solver's forward Operator. Devito itself has no elastic or viscoelastic adjoint;
* **parameters** (``--params``, by default ``vp`` for acoustic, ``vp,vs`` for elastic,
  ...): the true model holds one disc per inverted parameter (a fast ``vp`` disc
  in the middle of a 1 km x 1 km model, with ``vs``, ``qp``, ``epsilon``, ...
  discs above and below it); every other parameter is the same constant in the true
  and the initial model, and the initial model is the constant background;
* **acquisition**: a cross-well transmission experiment, ``--shots`` Ricker sources in
  a well on the left, a receiver per grid point down a well on the right. The misfit
  sums every receiver set the solver records (the elastic solvers record two), each
  normalised by its observed data: ``J = 1/2 sum_sets ||F(m) - d||^2 / ||d||^2``;
* **observed data**: modelled with the same solver on the true model;
* **scaling**: the inversion variables are ``(m - m0) / s``, each parameter in units
  of the width ``s`` of its bounds (km/s and quality factors alike span about one
  unit), and the misfit is taken relative to the initial one: L-BFGS-B then moves
  each parameter by its own sensitivity;
* **gradient**: ``derived_solver(...).gradient(residuals, wavefields, params=...)``,
  one adjoint sweep per shot; the gradient is tapered to zero next to the wells (where
  it is singular) and the absorbing layer keeps the initial model. With
  ``--checkpointing`` the wavefields stay buffered and are recomputed from Revolve
  snapshots (bounded memory);
* **shots on Dask** (``dask.distributed``): by default a ``LocalCluster`` with
  ``--workers`` processes (as many as cores, at most one per shot); ``--scheduler
  ADDRESS`` uses a running cluster instead; ``--workers 0`` runs the shots in this
  process. Each worker builds its solver and operators once and keeps them; an
  evaluation sends the model and gets one misfit and gradient per shot back, summed
  here in shot order, so that every worker count gives the same result. A worker that
  dies is replaced by Dask and its shots are rerun;
* **resumable** (``--state DIR``): every misfit-and-gradient evaluation is kept and,
  after each iteration, written atomically to ``DIR/state.npz`` with the model and the
  misfit history. ``--resume`` replays the stored evaluations into L-BFGS-B, which
  retraces its steps exactly, and goes on from the last completed iteration: the
  result is the one of an uninterrupted run. (``--checkpointing`` is another thing:
  Revolve's memory-bounded gradients.)

The arguments are checked before anything is built: a bad one stops the script with a
one-line message and exit status 2; too few grid points per wavelength or a ``--tn``
too short for the wavelet to cross the model only warn. Should a misfit or gradient
ever be NaN or inf, the script stops with a message on stderr and exit status 1, and
writes no figures.

The script prints a line per iteration (misfit, the model error of each parameter
relative to the initial model's, evaluations, seconds per iteration), the progress of
the shots of each evaluation on a terminal, and writes PNG figures into ``--out``:
per parameter the true, initial and inverted models and the first gradient (the maps
mark the sources, red stars, and receivers, black triangles; the gradient's colour
scale is symmetric about zero), and the misfit and model-error curves.

In the cross-well (transmission) geometry the waves cross the model roughly
horizontally and the gradient follows the source-receiver wavepaths: the first
gradient is a band through the discs from well to well that fans out towards the ends
of the wells, so a short inversion smears the discs horizontally between the wells,
with bands of the opposite sign above and below them; the gradient is singular at the
wells, hence the taper, which keeps the model next to them at the initial one.

Run it from the repository root (needs SciPy, Matplotlib and Dask: ``pip install
-e ".[examples]"``)::

    python examples/seismic/fwi.py                      # acoustic vp, about 1 minute
    python examples/seismic/fwi.py --physics elastic --params vp,vs
    python examples/seismic/fwi.py --state run1         # then, if it was stopped:
    python examples/seismic/fwi.py --state run1 --resume
    python examples/seismic/fwi.py --shape 41 41 --nbl 10 --shots 3 --iterations 3 \\
        --tn 400 --out /tmp/fwi_tiny
"""

import argparse
import importlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from devito import SparseTimeFunction, configuration
from scipy.optimize import minimize

from devito_perforad.seismic import derived_solver
from devito_perforad.shots import ShotPool
from examples.seismic import AcquisitionGeometry, SeismicModel

configuration['log-level'] = 'WARNING'


@dataclass(frozen=True)
class Parameter:
    """A model parameter: its background (the initial model), its value in the true
    model's disc, the bounds of the inversion and its unit."""
    background: float
    disc: float
    bounds: tuple
    unit: str


@dataclass(frozen=True)
class Physics:
    """A Devito solver (``module:class`` of ``examples.seismic``, with keyword
    arguments), the parameters its model holds, those inverted by default, and the
    boundary Devito's solver needs."""
    solver: str
    parameters: tuple
    default: tuple
    bcs: str = 'damp'
    options: tuple = ()


PARAMETERS = {
    'vp': Parameter(2.5, 3.0, (1.4, 3.2), 'km/s'),       # bounds: --vmin, --vmax
    'vs': Parameter(1.2, 1.5, (0.6, 1.8), 'km/s'),
    'b': Parameter(1.0, 0.8, (0.5, 1.5), 'cm³/g'),        # buoyancy, 1 / density
    'qp': Parameter(100., 30., (10., 200.), ''),
    'qs': Parameter(70., 20., (10., 150.), ''),
    'epsilon': Parameter(0.1, 0.25, (0., 0.4), ''),
    'delta': Parameter(0.05, 0.15, (0., 0.3), ''),
    'theta': Parameter(0., 0.6, (-1., 1.), 'rad'),
}
PHYSICS = {
    'acoustic': Physics('acoustic:AcousticWaveSolver', ('vp',), ('vp',)),
    'tti': Physics('tti:AnisotropicWaveSolver', ('vp', 'epsilon', 'delta', 'theta'),
                   ('vp', 'epsilon')),
    'visco': Physics('viscoacoustic:ViscoacousticWaveSolver', ('vp', 'b', 'qp'),
                     ('vp', 'qp'), bcs='mask'),
    'elastic': Physics('elastic:ElasticWaveSolver', ('vp', 'vs', 'b'), ('vp', 'vs')),
    'viscoelastic': Physics('viscoelastic:ViscoelasticWaveSolver',
                            ('vp', 'vs', 'b', 'qp', 'qs'), ('vp', 'vs')),
}
VP_INITIAL = PARAMETERS['vp'].background  # km/s: the initial model's vp
VP_DISC = PARAMETERS['vp'].disc           # km/s: the true model's disc, its maximum
MIN_POINTS = 11   # grid points per direction: wells 2 points in from either side, a
#                   disc of radius int(0.15 * 11) = 1 point
# The paragraph on the cross-well artefacts, printed with the figures.
CROSSWELL = ' '.join(__doc__[__doc__.index('In the cross-well'):]
                     .split('\n\n')[0].split())
# The arguments the figures' description holds for.
SETUP = ('shape', 'spacing', 'nbl', 'space_order', 'shots', 'iterations', 'tn', 'f0',
         'vmin', 'vmax', 'physics', 'params')
# The arguments a stored run must share with the one that resumes it.
RUN = ('shape', 'spacing', 'nbl', 'space_order', 'shots', 'tn', 'f0', 'vmin', 'vmax',
       'physics', 'params', 'dtype', 'checkpointing')
RICKER_FMAX = 2.5  # highest frequency that matters, in f0: the Ricker amplitude
#                    spectrum is down to 3 % of its peak there


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--physics', choices=sorted(PHYSICS), default='acoustic',
                        help="Devito's solver (default: acoustic)")
    parser.add_argument('--params', default=None,
                        help='the parameters inverted, comma-separated (default: vp for '
                        'acoustic, vp,epsilon for tti, vp,qp for visco, vp,vs for '
                        'elastic and viscoelastic)')
    parser.add_argument('--shape', type=int, nargs=2, default=(101, 101),
                        help='physical grid points (x, z)')
    parser.add_argument('--spacing', type=float, default=10., help='grid spacing in m')
    parser.add_argument('--nbl', type=int, default=20,
                        help='absorbing-layer width in grid points')
    parser.add_argument('--space-order', type=int, default=8)
    parser.add_argument('--shots', type=int, default=9, help='number of shots')
    parser.add_argument('--iterations', type=int, default=30,
                        help='L-BFGS-B iterations')
    parser.add_argument('--tn', type=float, default=1000., help='recording time in ms')
    parser.add_argument('--f0', type=float, default=0.010,
                        help='Ricker peak frequency in kHz')
    parser.add_argument('--vmin', type=float, default=1.4, help='lower bound, km/s')
    parser.add_argument('--vmax', type=float, default=3.2, help='upper bound, km/s')
    parser.add_argument('--out', default='fwi_output', help='folder for the figures')
    parser.add_argument('--workers', type=int, default=None,
                        help='Dask workers of the local cluster (default: one per core, '
                        'at most one per shot); 0: the shots in this process')
    parser.add_argument('--scheduler', default=None, metavar='ADDRESS',
                        help="a running Dask scheduler's address (tcp://host:8786), "
                        'instead of a local cluster')
    parser.add_argument('--state', default=None, metavar='DIR',
                        help='folder the run is kept in after each iteration')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run kept in --state')
    parser.add_argument('--checkpointing', action='store_true',
                        help='buffered wavefields + Revolve checkpointing')
    parser.add_argument('--dtype', choices=('float32', 'float64'), default='float32',
                        help='precision of the model, wavefields and data')
    args = parser.parse_args(argv)
    check_args(parser, args)
    # the notes printed with the figures describe the default set-up only
    args.default_setup = all(getattr(args, k) == parser.get_default(k) for k in SETUP)
    args.params = tuple(args.params.split(',')) if args.params else \
        PHYSICS[args.physics].default
    if args.workers is None:
        args.workers = max(1, min(os.cpu_count() or 1, args.shots))
    return args


def check_args(parser, args):
    """Stop, with argparse's one-line error and exit status 2, on an argument the
    script cannot run with; warn (on stderr) about one it would run poorly with.

    Arithmetic only: it runs before any model or operator is built.
    """
    def need(ok, message):
        if not ok:
            parser.error(message)

    def positive(name, value, unit):
        need(math.isfinite(value) and value > 0,
             f"{name} must be a positive number of {unit} (got {value:g})")

    physics = PHYSICS[args.physics]
    params = args.params.split(',') if args.params else physics.default
    unknown = [p for p in params if p not in physics.parameters]
    need(not unknown and len(set(params)) == len(params),
         f"--params {args.params} names {', '.join(unknown) or 'a parameter twice'}: "
         f"the {args.physics} model inverts {', '.join(physics.parameters)}")
    for name in ('shots', 'iterations'):
        value = getattr(args, name)
        need(value >= 1, f"--{name} must be at least 1 (got {value})")
    need(args.workers is None or args.workers >= 0,
         f"--workers must be 0 (the shots in this process) or more (got {args.workers})")
    need(not (args.scheduler and args.workers is not None),
         "--workers and --scheduler exclude each other: a running cluster has its "
         "workers")
    need(args.state is not None or not args.resume,
         "--resume continues the run kept in --state DIR; give --state")
    need(args.state is None or not os.path.exists(args.state)
         or os.path.isdir(args.state),
         f"--state {args.state} is a file; give a folder (created if missing)")
    if args.state is not None and not args.resume:
        need(not os.path.exists(os.path.join(args.state, 'state.npz')),
             f"--state {args.state} holds a run already: add --resume to continue it, "
             "or give another folder")
    if args.resume:
        need(os.path.exists(os.path.join(args.state, 'state.npz')),
             f"--state {args.state} holds no run to resume (no state.npz)")
    so = args.space_order
    need(so >= 2 and so % 2 == 0,
         f"--space-order must be even and at least 2 (got {so}): Devito's stencils "
         "are centred, of that order")
    need(args.nbl >= 0,
         f"--nbl must be 0 (no absorbing layer) or more (got {args.nbl})")
    smallest = max(MIN_POINTS, 2 * so + 1)
    need(min(args.shape) >= smallest,
         f"--shape must have at least {smallest} points in each direction with "
         f"--space-order {so} (got {' '.join(map(str, args.shape))}): 2 * space order "
         f"+ 1 for the stencil and at least {MIN_POINTS} for the wells and the disc")
    # sources evenly down the left well, over 80 % of its depth: one grid point apart
    # at least, or they would stack
    most = int(0.8 * (args.shape[1] - 1)) + 1
    need(args.shots <= most,
         f"--shots {args.shots} is more than the {most} grid points of the source well "
         f"(80 % of --shape's {args.shape[1]} in depth): the sources would stack; use at "
         f"most {most} shots or a deeper --shape")
    need(not os.path.exists(args.out) or os.path.isdir(args.out),
         f"--out {args.out} is a file; give a folder for the figures (created if "
         "missing)")
    positive('--spacing', args.spacing, 'metres')
    positive('--tn', args.tn, 'milliseconds')
    positive('--f0', args.f0, 'kHz')
    positive('--vmin', args.vmin, 'km/s')
    positive('--vmax', args.vmax, 'km/s')
    need(args.vmin < args.vmax,
         f"--vmin {args.vmin:g} km/s must be below --vmax {args.vmax:g} km/s")
    # The time step is Devito's critical one for vp = vmax (see Shots): stable for
    # every vp <= vmax, and so for the observed data exactly when VP_DISC <= vmax.
    need(args.vmax >= VP_DISC,
         f"--vmax {args.vmax:g} km/s is below the true model's maximum velocity "
         f"{VP_DISC:.1f} km/s: the time step chosen for vp <= vmax would be unstable for "
         f"the observed data; raise --vmax to at least {VP_DISC:.1f}")
    need(args.vmin <= VP_INITIAL <= args.vmax,
         f"the initial model, {VP_INITIAL:g} km/s, lies outside the bounds [--vmin, "
         f"--vmax] = [{args.vmin:g}, {args.vmax:g}] km/s; choose bounds that contain it")

    # Warnings: the run goes ahead.
    slowest = min([args.vmin, *(PARAMETERS['vs'].bounds[:1] if 'vs' in params else ())])
    wavelength = slowest / (RICKER_FMAX * args.f0)   # m, shortest the model may hold
    if wavelength / args.spacing < 5:
        print(f"{parser.prog}: warning: {wavelength / args.spacing:.1f} grid points per "
              f"minimum wavelength (lowest velocity / ({RICKER_FMAX:g} --f0) = "
              f"{wavelength:.0f} m at --spacing {args.spacing:g} m), fewer than 5: "
              "expect numerical dispersion; lower --spacing or --f0, or raise --vmin",
              file=sys.stderr)
    arrival = 1 / args.f0 + (args.shape[0] - 5) * args.spacing / VP_DISC   # ms
    if args.tn < arrival:
        print(f"{parser.prog}: warning: --tn {args.tn:g} ms ends before the peak of the "
              f"wavelet (emitted at 1 / f0 = {1 / args.f0:g} ms) can reach the receiver "
              f"well (about {arrival:.0f} ms): the data hold little signal; raise --tn",
              file=sys.stderr)


def bounds(args, name):
    """The bounds of parameter ``name`` (vp's are --vmin and --vmax)."""
    return (args.vmin, args.vmax) if name == 'vp' else PARAMETERS[name].bounds


def well_taper(shape, spacing, src_x, rec_x, width=60.):
    """1 in the domain, 0 within ``width / 3`` m of the source and receiver wells,
    with a cosine ramp over the next ``2 width / 3`` m."""
    x = np.arange(shape[0]) * spacing
    dist = np.minimum(np.abs(x - src_x), np.abs(x - rec_x))
    ramp = np.clip((dist - width / 3) / (2 * width / 3), 0., 1.)
    taper = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.broadcast_to(taper[:, None], shape).copy()


def models(shape, physics, params):
    """The initial and true values of every parameter of ``physics`` (physical
    domain): the backgrounds, and one disc per inverted parameter, down the middle
    between the wells (one disc: in the centre, of radius 0.15 of the model)."""
    initial = {p: np.full(shape, PARAMETERS[p].background) for p in physics.parameters}
    true = {p: v.copy() for p, v in initial.items()}
    n = len(params)
    r = min(0.15 * min(shape), 0.4 * shape[1] / (n + 1))
    x, z = np.ogrid[:shape[0], :shape[1]]
    for k, p in enumerate(params):
        cx, cz = shape[0] / 2, shape[1] * (k + 1) / (n + 1) if n > 1 else shape[1] / 2
        true[p][(x - cx)**2 + (z - cz)**2 <= int(r)**2] = PARAMETERS[p].disc
    return initial, true


def seismic_model(args, values, nbl=None):
    """Devito's ``SeismicModel`` holding ``values`` (physical domain)."""
    physics = PHYSICS[args.physics]
    values = dict(values)
    shape = values['vp'].shape
    return SeismicModel(
        origin=(0., 0.), spacing=(args.spacing,) * 2, shape=shape,
        space_order=args.space_order, nbl=args.nbl if nbl is None else nbl,
        dtype=getattr(np, args.dtype), bcs=physics.bcs, vp=values.pop('vp'), **values)


def solver_class(physics):
    module, name = physics.solver.split(':')
    return getattr(importlib.import_module(f'examples.seismic.{module}'), name)


class Shots:
    """Everything one process needs to model shots: the model, the acquisition and
    the derived solver, whose operators are built the first time they run and kept
    (``solver=False``: the model and the acquisition only).

    :meth:`misfit_gradient` evaluates any model of the inverted parameters.
    """

    def __init__(self, args, solver=True):
        import warnings

        from devito import configuration  # Devito's own, on a Dask worker too
        from sympy.utilities.exceptions import SymPyDeprecationWarning
        configuration['log-level'] = 'WARNING'
        # Devito's elastic solvers build matrices of equations, which SymPy warns about
        warnings.filterwarnings('ignore', category=SymPyDeprecationWarning)
        self.args = args
        self.physics = physics = PHYSICS[args.physics]
        nbl = args.nbl
        self.shape = shape = tuple(args.shape)
        spacing = (args.spacing,) * 2
        self.extent = tuple((n - 1) * h for n, h in zip(shape, spacing, strict=True))
        self.inner = (slice(nbl, nbl + shape[0]), slice(nbl, nbl + shape[1]))
        self.initial, self.true = models(shape, physics, args.params)

        # Cross-well geometry: sources down the left well, receivers down the right.
        self.src_x, self.rec_x = 2 * spacing[0], self.extent[0] - 2 * spacing[0]
        self.src_coords = np.zeros((args.shots, 2))
        self.src_coords[:, 0] = self.src_x
        self.src_coords[:, 1] = np.linspace(0.1 * self.extent[1], 0.9 * self.extent[1],
                                            args.shots)
        self.nrec = shape[1]
        self.rec_coords = rec_coords = np.zeros((self.nrec, 2))
        rec_coords[:, 0] = self.rec_x
        rec_coords[:, 1] = np.linspace(0., self.extent[1], self.nrec)
        self.dt = self.stable_dt()
        self.nt = int(math.ceil(args.tn / self.dt)) + 1   # Devito's TimeAxis
        if not solver:
            return

        self.model = model = seismic_model(args, self.initial)
        geometry = AcquisitionGeometry(model, rec_coords, self.src_coords[:1], 0.,
                                       args.tn, f0=args.f0, src_type='Ricker')
        geometry.resample(self.dt)
        self.nt = geometry.nt
        self.solver = derived_solver(solver_class(physics)(
            model, geometry, space_order=args.space_order, **dict(physics.options)))
        self.src = geometry.src
        self.lame = 'lam' in model.physical_parameters
        self.values = {p: v.copy() for p, v in self.initial.items()}

    def stable_dt(self):
        """Devito's time step for the fastest model the bounds allow (vp = --vmax,
        the largest vs and epsilon), from a model of a few points: stable for every
        model the optimiser may try, and for the true one."""
        args, physics = self.args, self.physics
        fastest = {p: PARAMETERS[p].background for p in physics.parameters}
        for p in ('vp', 'vs', 'epsilon'):
            if p in fastest:
                fastest[p] = bounds(args, p)[1]
        n = 2 * args.space_order + 1
        model = seismic_model(args, {p: np.full((n, n), v) for p, v in fastest.items()},
                              nbl=0)
        point = np.array([[args.spacing * (n // 2)] * 2])
        geometry = AcquisitionGeometry(model, point, point, 0., args.tn, f0=args.f0,
                                       src_type='Ricker')
        return float(solver_class(physics)(model, geometry, space_order=args.space_order,
                                           **dict(physics.options)).dt)

    def assign(self, values):
        """Set the model's physical domain to ``values`` (parameter -> array), the
        Lamé parameters from the velocities and buoyancy where the model holds them."""
        self.values.update(values)
        v, inner = self.values, self.inner
        fields = dict(v)
        if self.lame:
            fields = {'lam': (v['vp']**2 - 2 * v['vs']**2) / v['b'],
                      'mu': v['vs']**2 / v['b'], 'b': v['b'],
                      **{p: v[p] for p in ('qp', 'qs') if p in v}}
        for name, value in fields.items():
            getattr(self.model, name).data[inner] = value

    def forward(self, shot):
        """The receiver data of ``shot`` (a plain array per receiver set) and the
        wavefields the gradient needs."""
        self.src.coordinates.data[:] = self.src_coords[shot]
        out = self.solver.forward(src=self.src, save=not self.args.checkpointing,
                                  dt=self.dt)
        recs = [o for o in out if isinstance(o, SparseTimeFunction)]
        fields = tuple(o for o in out[len(recs):-1] if o is not None)
        return [np.array(r.data) for r in recs], fields

    def observed(self, shot):
        """Receiver data of ``shot`` in the true model (plain arrays: Data do not
        pickle)."""
        self.assign(self.true)
        return self.forward(shot)[0]

    def misfit_gradient(self, x, shot, d_obs, weights):
        """Misfit and gradient (the inverted parameters' physical domains, one vector)
        of ``shot`` for the model ``x`` (the same)."""
        params = self.args.params
        self.assign({p: v.reshape(self.shape) for p, v in
                     zip(params, np.split(x, len(params)), strict=True)})
        data, fields = self.forward(shot)
        residuals = [w * (d - o) for d, o, w in zip(data, d_obs, weights, strict=True)]
        J = 0.5 * sum(w * float(np.sum((d.astype(np.float64) - o)**2))
                      for d, o, w in zip(data, d_obs, weights, strict=True))
        ckp = self.args.checkpointing
        grads = self.solver.gradient(residuals, None if ckp else fields, params=params,
                                     checkpointing=ckp, src=self.src, dt=self.dt)
        return J, np.concatenate([grads[p].data[self.inner].astype(np.float64).ravel()
                                  for p in params])


class Pool:
    """The shots of an evaluation, in this process (``--workers 0``), on a local Dask
    cluster or on the one at ``--scheduler``, with a :class:`Shots` per worker, built
    once; the results in shot order."""

    def __init__(self, args):
        self.pool = ShotPool(Shots, (args,), workers=args.workers,
                             scheduler=args.scheduler)
        self.where, self.shots = self.pool.where, self.pool.local

    def run(self, method, tasks, label=None):
        """``Shots.method(*task)`` for each task; with ``label``, the shots' progress
        on a terminal."""
        def show(done):
            print(f'\r  {label}: shot {done}/{len(tasks)}', end='', flush=True)

        progress = label is not None and sys.stdout.isatty()
        results = self.pool.run(method, tasks, show if progress else None)
        if progress:
            print('\r' + ' ' * 40 + '\r', end='', flush=True)
        return results

    def close(self):
        self.pool.close()


class Evaluations:
    """Every misfit-and-gradient evaluation of the run, by model; with a ``folder``,
    written after each iteration, atomically, with the model and the misfit history
    (``state.npz``), and read back on ``resume``.

    L-BFGS-B asks for the same models again when it is run again from the same start,
    so the stored evaluations replay its steps exactly.
    """

    def __init__(self, folder, args, resume):
        self.folder, self.known = folder, {}
        self.setup = json.dumps({k: getattr(args, k) for k in RUN}, sort_keys=True,
                                default=list)
        self.models, self.misfits, self.gradients = [], [], []
        if resume:
            with np.load(os.path.join(folder, 'state.npz')) as state:
                if str(state['setup']) != self.setup:
                    raise StateError(folder, json.loads(str(state['setup'])),
                                     json.loads(self.setup))
                for x, J, g in zip(state['models'], state['misfits'],
                                   state['gradients'], strict=True):
                    self.add(x, float(J), g)
        self.stored = len(self.models)

    def get(self, x):
        return self.known.get(x.tobytes())

    def add(self, x, misfit, gradient):
        self.known[x.tobytes()] = (misfit, gradient)
        self.models.append(x.copy())
        self.misfits.append(misfit)
        self.gradients.append(gradient)

    def save(self, model, history, errors):
        if self.folder is None:
            return
        os.makedirs(self.folder, exist_ok=True)
        path = os.path.join(self.folder, 'state.npz')
        part = path + '.part.npz'
        np.savez(part, setup=self.setup, model=model, history=history, errors=errors,
                 models=np.array(self.models), misfits=np.array(self.misfits),
                 gradients=np.array(self.gradients))
        os.replace(part, path)   # atomic: the last state stays whole if stopped here


class StateError(RuntimeError):
    """The run kept in ``--state`` was made with other settings."""

    def __init__(self, folder, stored, given):
        differ = ', '.join(f'--{k.replace("_", "-")} {stored[k]} (now {given[k]})'
                           for k in stored if stored[k] != given.get(k))
        super().__init__(f"--state {folder} holds a run with {differ}: resume it with "
                         "the same settings, or give another folder")


class NonFiniteMisfitError(RuntimeError):
    """A misfit or gradient evaluation gave NaN or inf (the wavefield blew up)."""

    def __init__(self, evaluation, misfit):
        super().__init__(
            f"misfit/gradient evaluation {evaluation} is not finite (J = {misfit:g}): "
            "the wavefield blew up. Check the time step (every velocity, the true "
            "model's included, must be <= --vmax, for which dt is chosen) and the "
            "source frequency --f0 against --spacing; no figures written")
        self.evaluation = evaluation


class NoIterationError(RuntimeError):
    """L-BFGS-B stopped before its first iteration: nothing to invert."""

    def __init__(self, reason):
        super().__init__(
            f"L-BFGS-B stopped before its first iteration ({reason}): the data hold "
            "too little misfit to invert. Raise --tn so that the waves reach the "
            "receivers; no figures written")


def ratio(a, b):
    return a / b if b else float('nan')


def main(argv=None):
    args = parse_args(argv)   # exits with status 2 on a bad argument
    tstart = time.perf_counter()
    try:
        store = Evaluations(args.state, args, args.resume)
        pool = Pool(args)
        try:
            return invert(args, pool, pool.shots or Shots(args, solver=False), store,
                          tstart)
        finally:
            pool.close()
    except (NonFiniteMisfitError, NoIterationError, StateError) as err:
        print(f"fwi.py: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


def invert(args, pool, shots, store, tstart):
    """Observed data, the inversion, the report and the figures; return the misfit
    and model-error histories, the models (true, initial, inverted and the first
    gradient, by parameter) and the figures' paths."""
    shape, params, n = shots.shape, args.params, shots.shape[0] * shots.shape[1]
    print(f"{args.physics.capitalize()} model {shape} + {args.nbl} absorbing points, "
          f"space order {args.space_order}, inverting {', '.join(params)}; "
          f"{args.shots} shots, {shots.nrec} receivers, nt = {shots.nt}, "
          f"dt = {shots.dt:.4g} ms, shots in {pool.where}"
          f"{', checkpointing' if args.checkpointing else ''}")
    if store.stored:
        print(f"resuming: {store.stored} stored evaluations from {args.state}")

    # --- Observed data: the same solver on the true model.
    tic = time.perf_counter()
    d_obs = pool.run('observed', [(s,) for s in range(args.shots)], 'observed data')
    # each receiver set counts by its share of the observed data
    weights = [1 / max(sum(float(np.sum(d[k].astype(np.float64)**2)) for d in d_obs),
                       1e-300) for k in range(len(d_obs[0]))]
    print(f"Observed data for {args.shots} shots ({len(weights)} receiver set(s)) in "
          f"{time.perf_counter() - tic:.1f} s (the first shots build the operators)")

    # --- The misfit, its gradient, and the inversion variables.
    mask = well_taper(shape, args.spacing, shots.src_x, shots.rec_x).ravel()
    m0 = np.concatenate([shots.initial[p].ravel() for p in params])
    true = np.concatenate([shots.true[p].ravel() for p in params])

    def evaluate(m):
        """Misfit and tapered gradient of the model ``m`` (physical domain, the
        inverted parameters one after the other)."""
        stored = store.get(m)
        if stored is None:
            label = f'evaluation {len(store.models) + 1}'
            parts = pool.run('misfit_gradient',
                             [(m, s, d_obs[s], weights) for s in range(args.shots)],
                             label)
            J = sum(J for J, _ in parts)
            g = sum(g for _, g in parts) * np.tile(mask, len(params))
            if not (np.isfinite(J) and np.isfinite(np.sum(g))):   # NaN/inf propagate
                raise NonFiniteMisfitError(len(store.models) + 1, J)
            store.add(m, J, g)
            stored = (J, g)
        return stored

    def errors(m):
        """Each parameter's model error, relative to the initial model's."""
        return [ratio(np.linalg.norm((m - true)[k * n:(k + 1) * n]),
                      np.linalg.norm((m0 - true)[k * n:(k + 1) * n]))
                for k in range(len(params))]

    J0, g0 = evaluate(m0)
    if J0 == 0:
        raise NoIterationError('the initial model fits the data: zero misfit')
    # each parameter in units of its bounds' width (see docs/fwi.md)
    scale = np.repeat([np.ptp(bounds(args, p)) for p in params], n)
    lower = np.concatenate([np.full(n, bounds(args, p)[0]) for p in params])
    upper = np.concatenate([np.full(n, bounds(args, p)[1]) for p in params])

    def objective(x):
        """The misfit relative to the initial one, for L-BFGS-B's tolerances."""
        J, g = evaluate(m0 + scale * x)
        return J / J0, scale * g / J0

    history, model_errors = [J0], [errors(m0)]
    last = {'time': time.perf_counter(), 'evals': len(store.models)}
    names = ' '.join(f'{"err " + p:>11}' for p in params)
    print(f"\n{'iter':>4} {'misfit':>12} {'J/J0':>8} {names} {'evals':>6} "
          f"{'s/iter':>7}")
    print(f"{0:4d} {J0:12.5e} {1.:8.4f} " + ' '.join(f'{e:11.4f}' for e in errors(m0))
          + f" {len(store.models):6d} {'':>7}", flush=True)

    def callback(intermediate_result):
        m = m0 + scale * intermediate_result.x
        history.append(float(intermediate_result.fun) * J0)
        model_errors.append(errors(m))
        now = time.perf_counter()
        replayed = len(store.models) <= store.stored
        seconds = 'stored' if replayed else f'{now - last["time"]:7.1f}'
        last['time'] = now
        store.save(m, history, model_errors)   # before the line: what it shows is kept
        print(f"{len(history) - 1:4d} {history[-1]:12.5e} {ratio(history[-1], J0):8.4f} "
              + ' '.join(f'{e:11.4f}' for e in model_errors[-1])
              + f" {len(store.models):6d} {seconds:>7}", flush=True)

    result = minimize(objective, np.zeros_like(m0), jac=True, method='L-BFGS-B',
                      callback=callback,
                      bounds=list(zip((lower - m0) / scale, (upper - m0) / scale,
                                      strict=True)),
                      options={'maxiter': args.iterations, 'maxfun': 4 * args.iterations})
    if result.nit == 0:
        raise NoIterationError(result.message)
    m = m0 + scale * result.x
    store.save(m, history, model_errors)

    print(f"\nL-BFGS-B: {result.nit} iterations, {len(store.models)} misfit/gradient "
          f"evaluations ({result.message})")
    print(f"initial misfit = {history[0]:.12e}")
    print(f"final misfit = {history[-1]:.12e} (reduced by a factor "
          f"{ratio(history[0], history[-1]):.1f})")
    for k, p in enumerate(params):
        part = slice(k * n, (k + 1) * n)
        e0, e1 = (np.linalg.norm((x - true)[part]) / np.linalg.norm(true[part])
                  for x in (m0, m))
        print(f"relative model error ||{p} - {p}_true|| / ||{p}_true||: "
              f"initial = {e0:.4f}, final = {e1:.4f}")
    split = {name: dict(zip(params, x.reshape(len(params), *shape), strict=True))
             for name, x in (('true', true), ('initial', m0), ('inverted', m),
                             ('gradient', g0))}
    files = plot_results(args.out, shots, split, history, model_errors)
    print(f"figures written: {', '.join(files)}")
    if args.default_setup:
        print(f"about the figures: {CROSSWELL}")
    print(f"total time {time.perf_counter() - tstart:.1f} s")
    return dict(history=history, errors=model_errors, models=split, figures=files)


def plot_results(out, shots, maps, history, model_errors):
    """The PNG figures; return their paths. Every map marks the sources (red stars)
    and about a dozen receivers (black triangles)."""
    import matplotlib
    import matplotlib.ticker
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays

    src_coords, rec_coords = shots.src_coords, shots.rec_coords
    with matplotlib.rc_context({'font.size': 10}):   # examples.seismic sets 16
        os.makedirs(out, exist_ok=True)
        box = [0., shots.extent[0], shots.extent[1], 0.]
        step = max(1, round(len(rec_coords) / 12))   # about a dozen receivers shown

        def draw_map(name, title, data, label, **imshow):
            fig = Figure(figsize=(5, 4.4))
            ax = fig.subplots()
            im = ax.imshow(data.T, extent=box, **imshow)
            ax.plot(*src_coords.T, '*', color='red', mec='white', mew=0.6, ms=11,
                    label=f'sources ({len(src_coords)})')
            ax.plot(*rec_coords[::step].T, 'v', color='black', mec='white', mew=0.5, ms=6,
                    label=f'receivers ({len(rec_coords)}, 1 in {step} shown)'
                    if step > 1 else f'receivers ({len(rec_coords)})')
            ax.set(xlabel='x (m)', ylabel='depth (m)', xlim=box[:2], ylim=box[2:])
            ax.set_title(title)
            ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8,
                      frameon=False)
            fig.colorbar(im, ax=ax, label=label)
            files.append(os.path.join(out, f'{name}.png'))
            fig.savefig(files[-1], dpi=100, bbox_inches='tight')

        files = []
        for p in maps['true']:
            unit = f' ({PARAMETERS[p].unit})' if PARAMETERS[p].unit else ''
            values = [maps[k][p] for k in ('true', 'initial', 'inverted')]
            lim = (min(v.min() for v in values), max(v.max() for v in values))
            for kind, data in zip(('true', 'initial', 'inverted'), values, strict=True):
                draw_map(f'{p}_{kind}', f'{kind.capitalize()} model: {p}', data,
                         f'{p}{unit}', vmin=lim[0], vmax=lim[1], cmap='viridis')
            # J = 1/2 sum(residual**2 / data**2): no unit
            clip = float(np.abs(maps['gradient'][p]).max()) or 1.
            draw_map(f'{p}_gradient', f'First gradient by {p} (tapered at the wells)',
                     maps['gradient'][p], f'dJ/d{p} (per {PARAMETERS[p].unit or "unit"})',
                     vmin=-clip, vmax=clip, cmap='seismic')

        fig = Figure(figsize=(10, 3.5), layout='constrained')
        ax, bx = fig.subplots(1, 2)
        ax.semilogy(range(len(history)), history, 'o-')
        ax.set(title='Data misfit', xlabel='iteration',
               ylabel='J = ½ Σ residual² / data²')
        for k, p in enumerate(maps['true']):
            bx.plot(range(len(model_errors)), [e[k] for e in model_errors], 'o-',
                    label=p)
        bx.set(title='Model error', xlabel='iteration',
               ylabel='||m - m_true|| / ||m_initial - m_true||')
        bx.legend()
        for a in (ax, bx):
            a.grid(True, which='both', alpha=0.3)
            a.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        files.append(os.path.join(out, 'misfit.png'))
        fig.savefig(files[-1], dpi=100, bbox_inches='tight')
    return files


if __name__ == '__main__':
    main()
