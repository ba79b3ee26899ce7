"""Adjoint and FWI gradient of Devito's acoustic propagator, derived automatically.

The forward model is the isotropic acoustic wave equation of Devito's seismic examples
(``examples.seismic.acoustic``: second order in time, ``space_order`` in space, an
absorbing (damping) layer of ``nbl`` points, a Ricker point source injected into the
wavefield and a line of receivers interpolating it)::

    m u_tt - laplace(u) + damp u_t = q,    m = 1 / vp**2,    d = P_r u

The primal equations are handed, exactly as they are given to ``devito.Operator``, to
:class:`devito_perforad.AdjointOperator`, which builds the exact discrete adjoint. The
script then checks it two ways and prints the results:

1. **Dot test** of the linear map ``F: src -> rec`` (``vp`` fixed)::

       |<F x, y> - <x, F^T y>| / max(|<F x, y>|, |<x, F^T y>|)

   with random source data ``x`` and random receiver data ``y``; the adjoint map is
   ``{u: ub, src: srcb, rec: recb}``. In float64 it is at round-off level (~1e-15).

2. **Taylor test** of the FWI gradient ``g = dJ/dvp`` of the least-squares misfit
   ``J(vp) = 1/2 ||F(vp) - d_obs||^2``, with ``d_obs`` computed on a layered model and
   ``vp`` a smoothed version of it. The adjoint map is ``{u: ub, vp: vpb, rec: recb}``
   with the forward wavefield ``u`` saved at every time step (the gradient is nonlinear
   in ``vp`` and needs the forward trajectory). For a direction ``dvp`` and halving
   ``h`` the remainders::

       e0(h) = |J(vp + h dvp) - J(vp)|                  (first order:  slope ~1)
       e1(h) = |J(vp + h dvp) - J(vp) - h <g, dvp>|     (second order: slope ~2)

   are tabulated with their observed slopes ``log2(e(h) / e(h/2))``.

Run it from the repository root::

    python examples/seismic/acoustic_adjoint.py
    python examples/seismic/acoustic_adjoint.py --shape 31 31 --nbl 8 --tn 150

The operators are compiled once and reused for every evaluation.
"""

import argparse
import time

import numpy as np
from devito import Operator, TimeFunction, configuration
from examples.seismic.acoustic.operators import iso_stencil
from scipy.ndimage import gaussian_filter

from devito_perforad import AdjointOperator, adjoint_function
from examples.seismic import AcquisitionGeometry, demo_model

configuration['log-level'] = 'WARNING'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shape', type=int, nargs=2, default=(61, 61),
                        help='physical grid points (x, z)')
    parser.add_argument('--spacing', type=float, default=10.,
                        help='grid spacing in m')
    parser.add_argument('--nbl', type=int, default=20,
                        help='absorbing-layer width in grid points')
    parser.add_argument('--space-order', type=int, default=8)
    parser.add_argument('--tn', type=float, default=500.,
                        help='recording time in ms')
    parser.add_argument('--f0', type=float, default=0.015,
                        help='Ricker peak frequency in kHz')
    parser.add_argument('--steps', type=int, default=6,
                        help='number of step sizes in the Taylor test')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    so = args.space_order
    shape = tuple(args.shape)
    spacing = (args.spacing,) * 2

    # Layered "true" model; float64 so that the checks show round-off, not float32 noise.
    model = demo_model('layers-isotropic', shape=shape, spacing=spacing, nbl=args.nbl,
                       space_order=so, nlayers=3, dtype=np.float64)
    extent = [(n - 1) * h for n, h in zip(shape, spacing, strict=True)]
    src_coords = np.array([[0.5 * extent[0], 2 * spacing[1]]])
    nrec = shape[0]
    rec_coords = np.zeros((nrec, 2))
    rec_coords[:, 0] = np.linspace(0., extent[0], nrec)
    rec_coords[:, 1] = 2 * spacing[1]
    geometry = AcquisitionGeometry(model, rec_coords, src_coords, 0., args.tn,
                                   f0=args.f0, src_type='Ricker')
    dt = model.critical_dt
    nt = geometry.nt
    print(f"Grid {shape} + {args.nbl} absorbing points per side, space order {so}, "
          f"nt = {nt}, dt = {dt:.4g} ms")

    # --- Primal: the acoustic stencil, source injection and receiver interpolation.
    u = TimeFunction(name='u', grid=model.grid, time_order=2, space_order=so, save=nt)
    src, rec = geometry.src, geometry.rec
    s = model.grid.stepping_dim.spacing
    primal = (iso_stencil(u, model, 'OT2')
              + src.inject(field=u.forward, expr=src * s**2 / model.m)
              + rec.interpolate(expr=u))

    tic = time.perf_counter()
    op = Operator(primal, subs=model.spacing_map)
    # Buffered adjoint wavefield: the adjoint sweep needs only three time levels of ub.
    ub = TimeFunction(name='ub', grid=model.grid, time_order=2, space_order=so)
    srcb, recb = adjoint_function(src), adjoint_function(rec)
    vpb = adjoint_function(model.vp)
    # Adjoint of the linear map src -> rec (vp is a constant here: not in the map).
    aop_lin = AdjointOperator(primal, {u: ub, src: srcb, rec: recb},
                              subs=model.spacing_map)
    # Adjoint w.r.t. vp along the saved forward trajectory: the FWI gradient.
    aop_grad = AdjointOperator(primal, {u: ub, model.vp: vpb, rec: recb},
                               subs=model.spacing_map)
    for o in (op, aop_lin, aop_grad):
        _ = o.cfunction                         # compile now (Devito compiles lazily)
    print(f"Forward and two adjoint operators built and compiled in "
          f"{time.perf_counter() - tic:.1f} s")

    # --- 1. Dot test <F x, y> = <x, F^T y>.
    x = rng.standard_normal(src.data.shape)
    y = rng.standard_normal(rec.data.shape)
    src.data[:] = x
    u.data[:] = 0.
    op.apply(dt=dt)
    fwd = np.vdot(rec.data, y)
    recb.data[:] = y
    ub.data[:] = 0.
    srcb.data[:] = 0.
    aop_lin.apply(dt=dt)
    adj = np.vdot(x, srcb.data)
    err = abs(fwd - adj) / max(abs(fwd), abs(adj))
    print("\nDot test (src -> rec):")
    print(f"  <F x, y>   = {fwd:.16e}")
    print(f"  <x, F^T y> = {adj:.16e}")
    print(f"  dot test relative error = {err:.3e}")

    # --- 2. Taylor test of the FWI gradient.
    src.data[:] = geometry.src.data        # back to the Ricker wavelet
    vp_true = model.vp.data.copy()
    u.data[:] = 0.
    op.apply(dt=dt)
    d_obs = rec.data.copy()
    vp0 = gaussian_filter(vp_true, sigma=4.)

    def objective(vp):
        model.vp.data[:] = vp
        u.data[:] = 0.
        op.apply(dt=dt)
        return 0.5 * np.sum((rec.data - d_obs)**2)

    def gradient(vp):
        """Misfit and its gradient w.r.t. the padded vp (forward then adjoint)."""
        J = objective(vp)
        recb.data[:] = rec.data - d_obs
        ub.data[:] = 0.
        vpb.data[:] = 0.
        aop_grad.apply(dt=dt)
        return J, vpb.data.copy()

    J0, g = gradient(vp0)
    # A smooth random perturbation, O(1) km/s at its largest.
    dvp = gaussian_filter(rng.standard_normal(vp0.shape), sigma=3.)
    dvp /= np.abs(dvp).max()
    gdv = np.vdot(g, dvp)
    print("\nTaylor test of the FWI gradient, J(vp) = 1/2 ||F(vp) - d_obs||^2:")
    print(f"  J(vp0) = {J0:.6e},  <g, dvp> = {gdv:.6e}")
    print(f"  {'h':>10} {'e0 = |dJ|':>14} {'slope':>6} {'e1 = |dJ - h<g,dvp>|':>22} "
          f"{'slope':>6}")
    h = 1e-3
    prev = None
    slopes = []
    for _ in range(args.steps):
        dJ = objective(vp0 + h * dvp) - J0
        e0, e1 = abs(dJ), abs(dJ - h * gdv)
        if prev is None:
            s0 = s1 = ''
        else:
            r0, r1 = np.log2(prev[0] / e0), np.log2(prev[1] / e1)
            slopes.append(r1)
            s0, s1 = f"{r0:6.3f}", f"{r1:6.3f}"
        print(f"  {h:10.3e} {e0:14.6e} {s0:>6} {e1:22.6e} {s1:>6}")
        prev = (e0, e1)
        h /= 2
    print(f"  observed second-order slopes: {' '.join(f'{r:.3f}' for r in slopes)}")
    print(f"  mean second-order slope = {np.mean(slopes):.3f} (expected 2)")
    return err, slopes


if __name__ == '__main__':
    main()
