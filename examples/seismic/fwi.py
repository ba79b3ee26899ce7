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
  recomputed from Revolve snapshots (bounded memory);
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
iteration.

The script prints the misfit and elapsed time at every iteration and the relative
model error ``||vp - vp_true|| / ||vp_true||`` before and after, and writes
PNG figures (true, initial and inverted models, the first gradient, the misfit curve)
into ``--out``. Run it from the repository root (needs SciPy and Matplotlib)::

    python examples/seismic/fwi.py                      # about 1 minute on 2 cores
    python examples/seismic/fwi.py --workers 2          # two processes, 1 thread each
    python examples/seismic/fwi.py --shape 41 41 --nbl 10 --shots 3 --iterations 3 \\
        --tn 400 --out /tmp/fwi_tiny
"""

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from devito import Operator, TimeFunction, configuration
from examples.seismic.acoustic.operators import iso_stencil
from scipy.optimize import minimize

from devito_perforad import AdjointOperator, adjoint_function
from examples.seismic import AcquisitionGeometry, demo_model

configuration['log-level'] = 'WARNING'


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
    return parser.parse_args(argv)


def well_taper(shape, spacing, src_x, rec_x, width=60.):
    """1 in the domain, 0 within ``width / 3`` m of the source and receiver wells,
    with a cosine ramp over the next ``2 width / 3`` m."""
    x = np.arange(shape[0]) * spacing
    dist = np.minimum(np.abs(x - src_x), np.abs(x - rec_x))
    ramp = np.clip((dist - width / 3) / (2 * width / 3), 0., 1.)
    taper = 0.5 - 0.5 * np.cos(np.pi * ramp)
    return np.broadcast_to(taper[:, None], shape).copy()


def plot_results(out, extent, vp_true, vp0, vp_inv, grad0, history):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    box = [0., extent[0], extent[1], 0.]
    vlim = (min(vp_true.min(), vp_inv.min()), max(vp_true.max(), vp_inv.max()))
    files = []
    for name, title, data in [('model_true', 'True model', vp_true),
                              ('model_initial', 'Initial model', vp0),
                              ('model_inverted', 'Inverted model', vp_inv)]:
        fig, ax = plt.subplots(figsize=(5, 4))
        im = ax.imshow(data.T, extent=box, vmin=vlim[0], vmax=vlim[1], cmap='jet')
        ax.set(title=title, xlabel='x (m)', ylabel='depth (m)')
        fig.colorbar(im, ax=ax, label='vp (km/s)')
        files.append(os.path.join(out, f'{name}.png'))
        fig.savefig(files[-1], dpi=100, bbox_inches='tight')
        plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    clip = np.abs(grad0).max() or 1.
    im = ax.imshow(grad0.T, extent=box, vmin=-clip, vmax=clip, cmap='seismic')
    ax.set(title='First gradient dJ/dvp', xlabel='x (m)', ylabel='depth (m)')
    fig.colorbar(im, ax=ax)
    files.append(os.path.join(out, 'gradient_first.png'))
    fig.savefig(files[-1], dpi=100, bbox_inches='tight')
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.semilogy(range(len(history)), history, 'o-')
    ax.set(title='Misfit', xlabel='iteration', ylabel='J')
    ax.grid(True, which='both', alpha=0.3)
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
            vp_circle=3.0, vp_background=2.5, r=int(0.15 * min(shape)),
            dtype=np.float32)
        self.vp_true = model.vp.data.copy()  # padded; for the observed data only

        # Cross-well geometry: sources down the left well, receivers down the right.
        self.src_x, self.rec_x = 2 * spacing[0], self.extent[0] - 2 * spacing[0]
        self.src_coords = np.zeros((args.shots, 2))
        self.src_coords[:, 0] = self.src_x
        self.src_coords[:, 1] = np.linspace(0.1 * self.extent[1], 0.9 * self.extent[1],
                                            args.shots)
        self.nrec = shape[1]
        rec_coords = np.zeros((self.nrec, 2))
        rec_coords[:, 0] = self.rec_x
        rec_coords[:, 1] = np.linspace(0., self.extent[1], self.nrec)
        geometry = AcquisitionGeometry(model, rec_coords, self.src_coords[:1], 0.,
                                       args.tn, f0=args.f0, src_type='Ricker')
        # A time step stable for every model the optimiser may try (vp <= vmax).
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
            data.append(self.rec.data.copy())
        self.model.vp.data[:] = 2.5
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


def main(argv=None):
    args = parse_args(argv)
    tstart = time.perf_counter()
    # with workers, this process needs only the model and the acquisition (plots)
    local = Shots(args, 1, operators=False) if args.workers > 1 else None
    pool = Pool(args)
    shots = local or _shots
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
    vp_init = np.full(vp_true.shape, 2.5, dtype=np.float32)
    mask = well_taper(shape, args.spacing, shots.src_x, shots.rec_x)
    stats = {'evals': 0, 'last': None}

    def objective(x):
        """Misfit and gradient for the physical-domain vp ``x`` (flattened, km/s)."""
        J, g = pool.misfit_gradient(x, d_obs)
        stats['evals'] += 1
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
        print(f"{len(history) - 1:4d} {J:12.5e} {J / J0:8.4f} {stats['evals']:6d} "
              f"{time.perf_counter() - tstart:12.1f}", flush=True)

    result = minimize(objective, x0, jac=True, method='L-BFGS-B', callback=callback,
                      bounds=[(args.vmin, args.vmax)] * x0.size,
                      options={'maxiter': args.iterations, 'maxfun': 4 * args.iterations})
    vp_inv = result.x.reshape(shape)

    true_phys, init_phys = vp_true[shots.inner], vp_init[shots.inner]
    err0 = np.linalg.norm(init_phys - true_phys) / np.linalg.norm(true_phys)
    err1 = np.linalg.norm(vp_inv - true_phys) / np.linalg.norm(true_phys)
    print(f"\nL-BFGS-B: {result.nit} iterations, {stats['evals']} misfit/gradient "
          f"evaluations ({result.message})")
    print(f"initial misfit = {history[0]:.5e}")
    print(f"final misfit = {history[-1]:.5e} (reduced by a factor "
          f"{history[0] / history[-1]:.1f})")
    print(f"relative model error ||vp - vp_true|| / ||vp_true||: initial = {err0:.4f}, "
          f"final = {err1:.4f}")
    files = plot_results(args.out, shots.extent, true_phys, init_phys, vp_inv,
                         g0.reshape(shape), history)
    print(f"figures written: {', '.join(files)}")
    print(f"total time {time.perf_counter() - tstart:.1f} s")
    return history, (err0, err1)


if __name__ == '__main__':
    main()
