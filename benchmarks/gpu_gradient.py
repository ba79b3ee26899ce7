"""Run the derived acoustic gradient on an NVIDIA GPU and compare it with the CPU.

Needs a machine with an NVIDIA GPU and a compiler Devito can offload with: NVIDIA's
``nvc`` for ``--language openacc`` (the default) or an offloading ``clang`` for
``--language openmp``. Run from the repository root::

    python benchmarks/gpu_gradient.py --compiler nvc

It builds the same gradient twice, with ``platform='nvidiaX'`` and on the CPU with
OpenMP, runs both on the same model and data, and prints the relative difference and
both run times.
"""

import argparse
import time

import numpy as np
from devito import Operator, TimeFunction, configuration

from devito_perforad import AdjointOperator, adjoint_function

configuration['log-level'] = 'ERROR'


def gradient(model, geometry, iso_stencil, so, d_obs, **target):
    """dJ/dvp for J = 1/2 ||F(vp) - d_obs||^2, with operators built for ``target``."""
    grid, s = model.grid, model.grid.stepping_dim.spacing
    src, rec = geometry.src, geometry.rec
    u = TimeFunction(name='u', grid=grid, time_order=2, space_order=so, save=geometry.nt)
    ub = TimeFunction(name='ub', grid=grid, time_order=2, space_order=so)
    primal = (iso_stencil(u, model, 'OT2')
              + src.inject(field=u.forward, expr=src * s ** 2 / model.m)
              + rec.interpolate(expr=u))
    vpb, recb = adjoint_function(model.vp), adjoint_function(rec)
    fwd = Operator(primal, subs=model.spacing_map, **target)
    adj = AdjointOperator(primal, {u: ub, model.vp: vpb, rec: recb},
                          subs=model.spacing_map, **target)
    t0 = time.perf_counter()
    fwd.apply(dt=model.critical_dt)
    recb.data[:] = rec.data - d_obs
    adj.apply(dt=model.critical_dt)
    return vpb.data.copy(), time.perf_counter() - t0


def main():
    from examples.seismic.acoustic.operators import iso_stencil

    from examples.seismic import AcquisitionGeometry, demo_model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--language', default='openacc', choices=['openacc', 'openmp'])
    parser.add_argument('--compiler', default='nvc')
    parser.add_argument('--shape', type=int, nargs=2, default=[401, 401])
    parser.add_argument('--space-order', type=int, default=8)
    args = parser.parse_args()
    so = args.space_order
    model = demo_model('layers-isotropic', shape=tuple(args.shape), spacing=(10., 10.),
                       nbl=20, space_order=so, dtype=np.float32)
    extent = (args.shape[0] - 1) * 10.0
    geometry = AcquisitionGeometry(
        model, np.array([[x, 30.] for x in np.linspace(0, extent, args.shape[0])]),
        np.array([[extent / 2, 20.]]), 0., 1500., f0=0.010, src_type='Ricker')
    d_obs = np.zeros_like(geometry.rec.data)
    cpu, t_cpu = gradient(model, geometry, iso_stencil, so, d_obs,
                          opt=('advanced', {'openmp': True}))
    gpu, t_gpu = gradient(model, geometry, iso_stencil, so, d_obs, platform='nvidiaX',
                          language=args.language, compiler=args.compiler)
    diff = np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu)
    print(f"CPU {t_cpu:.2f} s, GPU {t_gpu:.2f} s, relative difference {diff:.2e}")


if __name__ == '__main__':
    main()
