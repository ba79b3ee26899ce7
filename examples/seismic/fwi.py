"""Full-waveform inversion with an automatically derived adjoint.

A complete, small 2D acoustic FWI:

* **true model**: Devito's ``circle-isotropic`` preset (a 3.0 km/s disc in a 2.5 km/s
  background, 1 km x 1 km at the default size), with an absorbing layer of ``nbl``
  points;
* **acquisition**: a cross-well transmission experiment, ``--shots`` Ricker sources in
  a well on the left, 101 receivers in a well on the right;
* **observed data**: computed with the forward operator on the true model (the
  inversion never sees the true model otherwise);
* **initial model**: constant 2.5 km/s;
* **forward operator**: Devito's acoustic stencil (``examples.seismic.acoustic``),
  source injection and receiver interpolation, with the wavefield saved in time;
* **gradient**: the adjoint of those very equations w.r.t. ``vp``, derived by
  :class:`devito_perforad.AdjointOperator`; one adjoint sweep per shot, the shots'
  gradients summed. With ``--checkpointing`` the wavefield stays buffered and is
  recomputed from Revolve snapshots (bounded memory). The checkpointed gradient is the
  same up to rounding: the saved and the buffered adjoints are different Operators,
  whose float32 arithmetic rounds differently, so that float32 misfits part from the
  fifth or sixth digit after a few iterations; with ``--dtype float64`` they agree to
  about twelve digits;
* **shots in parallel**: ``--workers N`` spreads the shots over N processes, each
  with its own copy of the model and operators (built once per process), and sums
  their misfits and gradients. Each process may itself be an MPI job (Devito's domain
  decomposition) in a larger set-up: shots parallelise across groups of ranks, the
  domain within a group;
* **optimiser**: ``scipy.optimize.minimize(method='L-BFGS-B')`` on the ``vp`` of the
  physical domain, bounded to ``[--vmin, --vmax]`` km/s, for ``--iterations``
  iterations. The gradient is tapered to zero next to the source and receiver wells
  (where it is singular) and the absorbing layer is kept at the initial model.

Both operators are compiled once per process and reused for every shot and every
iteration. The time step is Devito's critical one for the true model scaled by
``max(vp_true) / vmax``: stable for every ``vp <= --vmax`` the optimiser may try, and
for the observed data, which is why ``--vmax`` may not be below the true model's
3.0 km/s.

The arguments are checked before anything is built: a bad one (``--shots 0``, ``--vmax``
below 3.0, ``--vmin >= --vmax``, an odd ``--space-order``, a ``--shape`` too small for
the stencil, ...) stops the script with a one-line message and exit status 2; too few
grid points per wavelength (for ``--vmin`` and 2.5 ``--f0``) or a ``--tn`` too short for
the wavelet to cross the model only warn. Should a misfit or gradient ever be NaN or inf,
the script stops with a message on stderr and exit status 1, and writes no figures.

The script prints the misfit and elapsed time at every iteration and the relative
model error ``||vp - vp_true|| / ||vp_true||`` before and after, and writes
PNG figures (true, initial and inverted models, the first gradient, the misfit curve)
into ``--out``; the maps mark the sources (red stars) and receivers (black triangles),
the gradient's colour scale is symmetric about zero (blue: raising vp lowers the
misfit).

In this cross-well (transmission) geometry the waves cross the model roughly
horizontally and the gradient follows the source-receiver wavepaths: the first gradient
is a band of negative values through the disc from well to well that fans out towards
the ends of the wells, so a short inversion (a few iterations) smears the disc
horizontally between the wells, with low-velocity bands above and below it, and the
default one still leaves low-velocity streaks and ripples around it; the gradient is
singular at the wells, hence the taper, which keeps the model next to them at the
initial 2.5 km/s.

Run it from the repository root (needs SciPy and Matplotlib)::

    python examples/seismic/fwi.py                      # about 1 minute on 2 cores
    python examples/seismic/fwi.py --workers 2          # two processes, 1 thread each
    python examples/seismic/fwi.py --shape 41 41 --nbl 10 --shots 3 --iterations 3 \\
        --tn 400 --out /tmp/fwi_tiny
"""

import argparse
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from devito import Operator, TimeFunction, configuration
from examples.seismic.acoustic.operators import iso_stencil
from scipy.optimize import minimize

from devito_perforad import AdjointOperator, adjoint_function
from examples.seismic import AcquisitionGeometry, demo_model

configuration['log-level'] = 'WARNING'

VP_INITIAL = 2.5  # km/s: the initial model, and the true model's background
VP_DISC = 3.0     # km/s: the true model's disc, its maximum velocity
MIN_POINTS = 11   # grid points per direction: wells 2 points in from either side, a
#                   disc of radius int(0.15 * 11) = 1 point
# The paragraph on the cross-well artefacts, printed with the figures.
CROSSWELL = ' '.join(__doc__[__doc__.index('In this cross-well'):]
                     .split('\n\n')[0].split())
# The arguments the figures' description holds for.
SETUP = ('shape', 'spacing', 'nbl', 'space_order', 'shots', 'iterations', 'tn', 'f0',
         'vmin', 'vmax')
RICKER_FMAX = 2.5  # highest frequency that matters, in f0: the Ricker amplitude
#                    spectrum is down to 3 % of its peak there


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
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
    parser.add_argument('--workers', type=int, default=1,
                        help='processes the shots are spread over')
    parser.add_argument('--checkpointing', action='store_true',
                        help='buffered wavefield + Revolve checkpointing')
    parser.add_argument('--dtype', choices=('float32', 'float64'), default='float32',
                        help='precision of the model, wavefields and data')
    args = parser.parse_args(argv)
    check_args(parser, args)
    # the notes printed with the figures describe the default set-up only
    args.default_setup = all(getattr(args, k) == parser.get_default(k) for k in SETUP)
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

    for name in ('shots', 'iterations', 'workers'):
        value = getattr(args, name)
        need(value >= 1, f"--{name} must be at least 1 (got {value})")
    so = args.space_order
    need(so >= 2 and so % 2 == 0,
         f"--space-order must be even and at least 2 (got {so}): Devito's acoustic "
         "stencil is a centred Laplacian of that order")
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
    # The time step is Devito's critical one for the true model, scaled by
    # max(vp_true) / vmax (see Shots): stable for every vp <= vmax, and so for the
    # observed data exactly when max(vp_true) = VP_DISC <= vmax.
    need(args.vmax >= VP_DISC,
         f"--vmax {args.vmax:g} km/s is below the true model's maximum velocity "
         f"{VP_DISC:.1f} km/s: the time step chosen for vp <= vmax would be unstable for "
         f"the observed data; raise --vmax to at least {VP_DISC:.1f}")
    need(args.vmin <= VP_INITIAL <= args.vmax,
         f"the initial model, {VP_INITIAL:g} km/s, lies outside the bounds [--vmin, "
         f"--vmax] = [{args.vmin:g}, {args.vmax:g}] km/s; choose bounds that contain it")

    # Warnings: the run goes ahead.
    wavelength = args.vmin / (RICKER_FMAX * args.f0)   # m, shortest the model may hold
    if wavelength / args.spacing < 5:
        print(f"{parser.prog}: warning: {wavelength / args.spacing:.1f} grid points per "
              f"minimum wavelength (--vmin / ({RICKER_FMAX:g} --f0) = "
              f"{wavelength:.0f} m at --spacing {args.spacing:g} m), fewer than 5: "
              "expect numerical dispersion; lower --spacing or --f0, or raise --vmin",
              file=sys.stderr)
    arrival = 1 / args.f0 + (args.shape[0] - 5) * args.spacing / VP_DISC   # ms
    if args.tn < arrival:
        print(f"{parser.prog}: warning: --tn {args.tn:g} ms ends before the peak of the "
              f"wavelet (emitted at 1 / f0 = {1 / args.f0:g} ms) can reach the receiver "
              f"well (about {arrival:.0f} ms): the data hold little signal; raise --tn",
              file=sys.stderr)


def well_taper(shape, spacing, src_x, rec_x, width=60.):
    """1 in the domain, 0 within ``width / 3`` m of the source and receiver wells,
    with a cosine ramp over the next ``2 width / 3`` m."""
    x = np.arange(shape[0]) * spacing
    dist = np.minimum(np.abs(x - src_x), np.abs(x - rec_x))
    ramp = np.clip((dist - width / 3) / (2 * width / 3), 0., 1.)
    taper = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.broadcast_to(taper[:, None], shape).copy()


def plot_results(out, extent, vp_true, vp0, vp_inv, grad0, history, src_coords,
                 rec_coords):
    """The PNG figures; return their paths. Every map marks the sources (red stars)
    and about a dozen receivers (black triangles)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    with matplotlib.rc_context({'font.size': 10}):   # examples.seismic sets 16
        os.makedirs(out, exist_ok=True)
        box = [0., extent[0], extent[1], 0.]
        step = max(1, round(len(rec_coords) / 12))   # about a dozen receivers shown

        def draw_map(name, title, data, label, **imshow):
            fig, ax = plt.subplots(figsize=(5, 4.4))
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
            plt.close(fig)

        files = []
        vlim = (min(vp_true.min(), vp_inv.min()), max(vp_true.max(), vp_inv.max()))
        for name, title, data in [('model_true', 'True model', vp_true),
                                  ('model_initial', 'Initial model', vp0),
                                  ('model_inverted', 'Inverted model', vp_inv)]:
            draw_map(name, title, data, 'vp (km/s)', vmin=vlim[0], vmax=vlim[1],
                     cmap='viridis')
        # J = 1/2 sum(residual**2), the receiver data in arbitrary units (a.u.)
        clip = float(np.abs(grad0).max()) or 1.
        draw_map('gradient_first', 'First gradient (tapered at the wells)', grad0,
                 'dJ/dvp (a.u.² per km/s)', vmin=-clip, vmax=clip, cmap='seismic')

        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.semilogy(range(len(history)), history, 'o-')
        ax.set(title='Misfit', xlabel='iteration', ylabel='J = ½ Σ residual² (a.u.²)')
        ax.grid(True, which='both', alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        files.append(os.path.join(out, 'misfit.png'))
        fig.savefig(files[-1], dpi=100, bbox_inches='tight')
        plt.close(fig)
    return files


class Shots:
    """Everything one process needs to model shots: the model, the acquisition and
    the primal and adjoint operators, built and compiled once (``operators=False``:
    the model and the acquisition only).

    The observed data are modelled in the true model; ``vp`` is then set to the
    initial model, and :meth:`misfit_gradient` evaluates any physical-domain ``vp``.
    """

    def __init__(self, args, nthreads, operators=True):
        self.args = args
        so, nbl = args.space_order, args.nbl
        self.shape = shape = tuple(args.shape)
        spacing = (args.spacing,) * 2
        self.extent = tuple((n - 1) * h for n, h in zip(shape, spacing, strict=True))
        self.inner = (slice(nbl, nbl + shape[0]), slice(nbl, nbl + shape[1]))
        self.model = model = demo_model(
            'circle-isotropic', shape=shape, spacing=spacing, nbl=nbl, space_order=so,
            vp_circle=VP_DISC, vp_background=VP_INITIAL, r=int(0.15 * min(shape)),
            dtype=getattr(np, args.dtype))
        self.vp_true = model.vp.data.copy()  # padded; for the observed data only

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
        geometry = AcquisitionGeometry(model, rec_coords, self.src_coords[:1], 0.,
                                       args.tn, f0=args.f0, src_type='Ricker')
        # A time step stable for every model the optimiser may try (vp <= vmax):
        # Devito's critical dt for the true model, scaled by max(vp_true) / vmax. It
        # holds for the observed data too as max(vp_true) <= vmax (check_args).
        self.dt = float(model.critical_dt) * float(model.vp.data.max()) / args.vmax
        geometry.resample(self.dt)
        self.nt = nt = geometry.nt
        if not operators:  # the model and acquisition only (for the parent process)
            return

        # --- The primal equations, and the two operators built from them.
        save = None if args.checkpointing else nt
        self.u = u = TimeFunction(name='u', grid=model.grid, time_order=2,
                                  space_order=so, save=save)
        self.src, self.rec = src, rec = geometry.src, geometry.rec
        s = model.grid.stepping_dim.spacing
        primal = (iso_stencil(u, model, 'OT2')
                  + src.inject(field=u.forward, expr=src * s**2 / model.m)
                  + rec.interpolate(expr=u))
        self.op = Operator(primal, subs=model.spacing_map)
        self.ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=so)
        self.vpb, self.recb = adjoint_function(model.vp), adjoint_function(rec)
        self.aop = AdjointOperator(primal, {u: self.ub, model.vp: self.vpb,
                                            rec: self.recb},
                                   checkpointing=args.checkpointing,
                                   subs=model.spacing_map)
        _ = self.op.cfunction                 # compile now (Devito compiles lazily)
        _ = (self.aop.reverse if args.checkpointing else self.aop).cfunction
        # OpenMP operators (DEVITO_LANGUAGE=openmp) take a thread count
        openmp = any(p.name == 'nthreads' for p in self.op.parameters)
        self.threads = dict(nthreads=nthreads) if openmp else {}

    def forward(self, shot):
        self.src.coordinates.data[:] = self.src_coords[shot]
        self.u.data[:] = 0.
        self.op.apply(dt=self.dt, **self.threads)

    def observed(self, shots):
        """Receiver data of ``shots`` in the true model; leaves vp at the initial
        model."""
        self.model.vp.data[:] = self.vp_true
        data = []
        for shot in shots:
            self.forward(shot)
            data.append(np.array(self.rec.data))  # a plain array: Data do not pickle
        self.model.vp.data[:] = VP_INITIAL
        return data

    def misfit_gradient(self, x, shots, d_obs):
        """Misfit and dJ/dvp (physical domain) of ``shots`` for the physical-domain
        vp ``x``."""
        self.model.vp.data[self.inner] = x.reshape(self.shape)
        J, g = 0., np.zeros(self.shape)
        for shot, data in zip(shots, d_obs, strict=True):
            self.forward(shot)
            res = self.rec.data - data
            J += 0.5 * float(np.sum(res.astype(np.float64)**2))
            self.recb.data[:] = res
            self.vpb.data[:] = 0.
            self.ub.data[:] = 0.
            if self.args.checkpointing:
                self.u.data[:] = 0.  # it reruns the primal from the initial state
            self.aop.apply(dt=self.dt, **self.threads)
            g += self.vpb.data[self.inner]
        return J, g


_shots = None


def _start(args, nthreads):
    global _shots
    _shots = Shots(args, nthreads)


def _observed(shots):
    return _shots.observed(shots)


def _misfit_gradient(x, shots, d_obs):
    return _shots.misfit_gradient(x, shots, d_obs)


class Pool:
    """The shots spread over ``workers`` processes (in this process if 1)."""

    def __init__(self, args):
        self.workers = max(1, args.workers)
        nthreads = max(1, (os.cpu_count() or 1) // self.workers)
        self.groups = [list(range(args.shots))[i::self.workers]
                       for i in range(self.workers)]
        self.groups = [g for g in self.groups if g]
        if self.workers == 1:
            _start(args, nthreads)
            self.executor = None
        else:
            import multiprocessing
            self.executor = ProcessPoolExecutor(
                len(self.groups), mp_context=multiprocessing.get_context('spawn'),
                initializer=_start, initargs=(args, nthreads))

    def map(self, func, *per_group):
        if self.executor is None:
            return [func(*a) for a in zip(*per_group, strict=True)]
        # every worker builds its own operators; one task per worker, in step
        return list(self.executor.map(func, *per_group))

    def observed(self):
        data = self.map(_observed, self.groups)
        return dict(pair for g, d in zip(self.groups, data, strict=True)
                    for pair in zip(g, d, strict=True))

    def misfit_gradient(self, x, d_obs):
        parts = self.map(_misfit_gradient, [x] * len(self.groups), self.groups,
                         [[d_obs[s] for s in g] for g in self.groups])
        return sum(J for J, _ in parts), sum(g for _, g in parts)

    def close(self):
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)


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
    # with workers, this process needs only the model and the acquisition (plots)
    local = Shots(args, 1, operators=False) if args.workers > 1 else None
    pool = Pool(args)
    try:
        return invert(args, pool, local or _shots, tstart)
    except (NonFiniteMisfitError, NoIterationError) as err:
        print(f"fwi.py: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        pool.close()


def invert(args, pool, shots, tstart):
    """Observed data, the inversion, the report and the figures."""
    shape, nbl = shots.shape, args.nbl
    print(f"Model {shape} + {nbl} absorbing points, space order {args.space_order}, "
          f"{args.shots} shots, {shots.nrec} receivers, nt = {shots.nt}, "
          f"dt = {shots.dt:.4g} ms, {len(pool.groups)} process(es)"
          f"{', checkpointing' if args.checkpointing else ''}")
    print(f"Forward and adjoint operators built and compiled in "
          f"{time.perf_counter() - tstart:.1f} s")

    # --- Observed data: the same forward operator on the true model.
    tic = time.perf_counter()
    d_obs = pool.observed()
    print(f"Observed data for {args.shots} shots in {time.perf_counter() - tic:.1f} s")

    # --- Initial model and the inversion.
    vp_true = shots.vp_true
    vp_init = np.full(vp_true.shape, VP_INITIAL, dtype=vp_true.dtype)
    mask = well_taper(shape, args.spacing, shots.src_x, shots.rec_x)
    stats = {'evals': 0, 'last': None}

    def objective(x):
        """Misfit and gradient for the physical-domain vp ``x`` (flattened, km/s)."""
        J, g = pool.misfit_gradient(x, d_obs)
        stats['evals'] += 1
        if not (np.isfinite(J) and np.isfinite(np.sum(g))):   # NaN/inf propagate
            raise NonFiniteMisfitError(stats['evals'], J)
        stats['last'] = (x.copy(), J)
        return J, (mask * g).ravel()

    x0 = vp_init[shots.inner].astype(np.float64).ravel()
    J0, g0 = objective(x0)
    history = [J0]
    print(f"\n{'iter':>4} {'misfit':>12} {'J/J0':>8} {'evals':>6} {'elapsed (s)':>12}")
    print(f"{0:4d} {J0:12.5e} {1.:8.4f} {stats['evals']:6d} "
          f"{time.perf_counter() - tstart:12.1f}")

    def callback(xk):
        xl, Jl = stats['last']
        J = Jl if np.array_equal(xk, xl) else objective(xk)[0]
        history.append(J)
        print(f"{len(history) - 1:4d} {J:12.5e} {ratio(J, J0):8.4f} {stats['evals']:6d} "
              f"{time.perf_counter() - tstart:12.1f}", flush=True)

    result = minimize(objective, x0, jac=True, method='L-BFGS-B', callback=callback,
                      bounds=[(args.vmin, args.vmax)] * x0.size,
                      options={'maxiter': args.iterations, 'maxfun': 4 * args.iterations})
    vp_inv = result.x.reshape(shape)
    if result.nit == 0:
        raise NoIterationError(result.message)

    true_phys, init_phys = vp_true[shots.inner], vp_init[shots.inner]
    err0 = np.linalg.norm(init_phys - true_phys) / np.linalg.norm(true_phys)
    err1 = np.linalg.norm(vp_inv - true_phys) / np.linalg.norm(true_phys)
    print(f"\nL-BFGS-B: {result.nit} iterations, {stats['evals']} misfit/gradient "
          f"evaluations ({result.message})")
    print(f"initial misfit = {history[0]:.12e}")
    print(f"final misfit = {history[-1]:.12e} (reduced by a factor "
          f"{ratio(history[0], history[-1]):.1f})")
    print(f"relative model error ||vp - vp_true|| / ||vp_true||: initial = {err0:.4f}, "
          f"final = {err1:.4f}")
    files = plot_results(args.out, shots.extent, true_phys, init_phys, vp_inv,
                         g0.reshape(shape), history, shots.src_coords,
                         shots.rec_coords)
    print(f"figures written: {', '.join(files)}")
    if args.default_setup:
        print(f"about the figures: {CROSSWELL}")
    print(f"total time {time.perf_counter() - tstart:.1f} s")
    return history, (err0, err1)


if __name__ == '__main__':
    main()
