"""Variable-density acoustics: a propagator that is *not* self-adjoint.

The pressure form of the variable-density acoustic wave equation,

    u_tt = vp**2 rho div(b grad u) + q,      b = 1 / rho,

is discretised with the usual second-order leapfrog in time and staggered (half-point)
first derivatives of order ``space_order`` in space::

    u[t+1] = 2 u[t] - u[t-1] + dt**2 K A u[t] + dt**2 K S^T src[t]
    rec[t] = R u[t]

with ``K = vp**2 rho`` (the bulk modulus, a diagonal), ``A = D^T B D`` (symmetric),
``S^T`` the source injection and ``R`` the receiver interpolation. ``K A`` is not
symmetric where ``K`` varies, so the propagator is not self-adjoint: the exact adjoint
runs ``A K``, not ``K A``, backwards in time.

The script builds the forward operator (a Ricker point source at the surface,
receivers in a vertical well through the heterogeneities) and the adjoint three ways:

1. **derived**: :class:`devito_perforad.AdjointOperator` applied to the primal
   equations, nothing else;
2. **self-adjoint assumption**: the forward stencil reused as its own adjoint, run
   backwards in time, with the exact transposes of the injection and interpolation
   (receiver data injected, ``dt**2 K`` times the wavefield read at the source);
3. **symmetrised by hand**: the forward stencil reused again, but with the weight
   ``K`` moved from the source to the receivers. This one is exact too, because
   ``K A`` happens to be self-adjoint in the ``1/K``-weighted inner product
   (``K (A K) = (K A) K``); knowing such a weight takes an analysis of the
   discretisation that the derived adjoint does not need (and for many propagators,
   e.g. with non-conservative or anisotropic terms, no such weight exists).

For each, it prints the dot test ``|<F x, y> - <x, F^T y>| / max(|<F x, y>|,
|<x, F^T y>|)`` with random source data ``x`` and random receiver data ``y``, on a
homogeneous model (where ``K`` is constant and all three are exact) and on a
heterogeneous one. Everything is float64: exact adjoints show round-off (~1e-13 or
smaller); the self-adjoint assumption shows an O(0.1) error on the heterogeneous model.

Only Devito and NumPy are needed. Run it from the repository root::

    python examples/seismic/nonselfadjoint.py
    python examples/seismic/nonselfadjoint.py --shape 31 31 --tn 150 --space-order 4
"""

import argparse
import time

import numpy as np
from devito import (
    Eq,
    Function,
    Grid,
    Operator,
    SparseTimeFunction,
    TimeFunction,
    configuration,
)

from devito_perforad import AdjointOperator, adjoint_function

configuration['log-level'] = 'WARNING'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--shape', type=int, nargs=2, default=(101, 101),
                        help='grid points (x, z)')
    parser.add_argument('--spacing', type=float, default=10., help='grid spacing in m')
    parser.add_argument('--space-order', type=int, default=8)
    parser.add_argument('--tn', type=float, default=600., help='final time in ms')
    parser.add_argument('--f0', type=float, default=0.015,
                        help='Ricker peak frequency in kHz')
    parser.add_argument('--cfl', type=float, default=0.3,
                        help='dt = cfl * spacing / max(vp)')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def ricker(t, f0):
    """Ricker wavelet of peak frequency ``f0`` (kHz) at times ``t`` (ms)."""
    r = np.pi * f0 * (t - 1. / f0)
    return (1. - 2. * r**2) * np.exp(-r**2)


def heterogeneous(grid):
    """A layer and two Gaussian anomalies in vp (km/s) and in rho (g/cm^3).

    The density anomaly sits elsewhere than the velocity one, so that ``rho`` is not a
    function of ``vp``; both the density step and the dense body cross the well.
    """
    nx, nz = grid.shape
    x, z = np.meshgrid(np.linspace(0., 1., nx), np.linspace(0., 1., nz), indexing='ij')
    vp = 1.5 + 0.8 / (1. + np.exp(-(z - 0.6) * 40.))                    # smooth layer
    vp += 0.5 * np.exp(-((x - 0.35)**2 + (z - 0.4)**2) / 0.01)           # fast lens
    rho = 1.0 + 0.6 / (1. + np.exp(-(z - 0.45) * 40.))                  # density step
    rho += 0.8 * np.exp(-((x - 0.7)**2 + (z - 0.3)**2) / 0.008)         # dense body
    return vp, rho


def main(argv=None):
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    so = args.space_order
    shape = tuple(args.shape)
    extent = tuple((n - 1) * args.spacing for n in shape)
    grid = Grid(shape=shape, extent=extent, dtype=np.float64)
    x, z = grid.dimensions
    s = grid.stepping_dim.spacing

    vp = Function(name='vp', grid=grid, space_order=so)
    rho = Function(name='rho', grid=grid, space_order=so)
    b = Function(name='b', grid=grid, space_order=so)
    vp_het, rho_het = heterogeneous(grid)

    # Time axis from a CFL number safe for the heterogeneous model.
    dt = args.cfl * args.spacing / vp_het.max()
    nt = int(np.ceil(args.tn / dt)) + 1
    time_values = np.arange(nt) * dt

    # A surface source and receivers in a vertical well (a VSP).
    src = SparseTimeFunction(name='src', grid=grid, npoint=1, nt=nt)
    src.coordinates.data[:] = [0.25 * extent[0], 2 * args.spacing]
    nrec = shape[1] - 4
    rec = SparseTimeFunction(name='rec', grid=grid, npoint=nrec, nt=nt)
    rec.coordinates.data[:, 0] = 0.7 * extent[0]
    rec.coordinates.data[:, 1] = np.linspace(2 * args.spacing,
                                             extent[1] - 2 * args.spacing, nrec)

    def stencil(f):
        """``f[t+1] = 2 f[t] - f[t-1] + dt**2 K A f[t]``, staggered A = D^T B D,
        written for a forward (``f.forward``) or a backward (``f.backward``) sweep."""
        hx, hz = x.spacing / 2, z.spacing / 2
        div_b_grad = ((b * f.dx(x0=x + hx)).dx(x0=x - hx)
                      + (b * f.dy(x0=z + hz)).dy(x0=z - hz))
        return 2 * f + s**2 * vp**2 * rho * div_b_grad

    # --- Primal.
    u = TimeFunction(name='u', grid=grid, time_order=2, space_order=so)
    K = vp**2 * rho
    primal = [Eq(u.forward, stencil(u) - u.backward),
              src.inject(field=u.forward, expr=src * s**2 * K),
              rec.interpolate(expr=u)]
    # Explicit time bounds, identical for every operator below.
    apply = {'time_m': 1, 'time_M': nt - 2, 'dt': dt}

    tic = time.perf_counter()
    op = Operator(primal)

    # --- 1. The exact adjoint, derived from the primal equations.
    ub = adjoint_function(u)
    srcb, recb = adjoint_function(src), adjoint_function(rec)
    adjoints = {'derived (devito-perforad)':
                (AdjointOperator(primal, {u: ub, src: srcb, rec: recb}), ub)}

    # --- 2. The self-adjoint assumption: the forward stencil run backwards in time,
    # with the exact transposes of the injection (-> interpolation) and interpolation
    # (-> injection): w[t-1] = 2 w[t] - w[t+1] + dt**2 K A w[t] + R^T recb[t],
    # srcb[t] = dt**2 S K w[t].
    w = TimeFunction(name='w', grid=grid, time_order=2, space_order=so)
    naive = [Eq(w.backward, stencil(w) - w.forward),
             recb.inject(field=w.backward, expr=recb),
             srcb.interpolate(expr=w * s**2 * K)]
    adjoints['self-adjoint assumption'] = (Operator(naive), w)

    # --- 3. The same, with the weight K moved to the receivers: exact, since
    # K A is self-adjoint in the 1/K inner product.
    symmetrised = [Eq(w.backward, stencil(w) - w.forward),
                   recb.inject(field=w.backward, expr=recb * s**2 * K),
                   srcb.interpolate(expr=w)]
    adjoints['forward stencil, symmetrised by hand'] = (Operator(symmetrised), w)
    for o in [op] + [a for a, _ in adjoints.values()]:
        _ = o.cfunction                         # compile now (Devito compiles lazily)
    print(f"Grid {shape}, space order {so}, nt = {nt}, dt = {dt:.4g} ms, {nrec} "
          f"receivers; 4 operators built and compiled in "
          f"{time.perf_counter() - tic:.1f} s")

    def forward(xsrc):
        src.data[:] = xsrc
        rec.data[:] = 0.
        u.data[:] = 0.
        op.apply(**apply)
        if not np.all(np.isfinite(rec.data)):
            raise RuntimeError("forward propagation is unstable: lower --cfl")
        return rec.data.copy()

    def adjoint(aop, field, yrec):
        recb.data[:] = yrec
        srcb.data[:] = 0.
        field.data[:] = 0.
        aop.apply(**apply)
        return srcb.data.copy()

    models = {'homogeneous': (np.full(shape, 2.0), np.full(shape, 1.5)),
              'heterogeneous': (vp_het, rho_het)}
    results = {}
    for label, (vp_data, rho_data) in models.items():
        vp.data[:] = vp_data
        rho.data[:] = rho_data
        b.data[:] = 1. / rho_data
        # A shot with the Ricker wavelet, as a sanity check of the forward model.
        d = forward(ricker(time_values, args.f0)[:, None])
        print(f"\n{label} model: vp in [{vp_data.min():.2f}, {vp_data.max():.2f}] km/s, "
              f"rho in [{rho_data.min():.2f}, {rho_data.max():.2f}] g/cm^3, "
              f"max |shot record| = {np.abs(d).max():.3e}")
        xs = rng.standard_normal(src.data.shape)
        yr = rng.standard_normal(rec.data.shape)
        fwd = np.vdot(forward(xs), yr)
        print(f"  <F x, y> = {fwd:+.16e}")
        for name, (aop, field) in adjoints.items():
            adj = np.vdot(xs, adjoint(aop, field, yr))
            err = abs(fwd - adj) / max(abs(fwd), abs(adj))
            results[label, name] = err
            print(f"  {name:<38} <x, F^T y> = {adj:+.16e}   "
                  f"dot test relative error = {err:.3e}")
    print("\nK A is not its own transpose: reusing it backwards in time is exact only "
          "with the\nweight K moved to the receivers (K A is self-adjoint in the 1/K "
          "inner product).\nThe derived adjoint needs no such analysis.")
    return results


if __name__ == '__main__':
    main()
