"""Run the derived acoustic gradient on an NVIDIA GPU and compare it with the CPU.

Needs a machine with an NVIDIA GPU and a compiler Devito can offload with: NVIDIA's
``nvc`` for ``--language openacc`` (the default), an offloading ``clang`` for
``--language openmp``, or gcc with its nvptx offload compiler (``--compiler
gnu-offload``, see :class:`GNUOffloadCompiler`). Run from the repository root::

    python benchmarks/gpu_gradient.py --compiler nvc

It builds the same gradient twice, with ``platform='nvidiaX'`` and on the CPU with
OpenMP, runs both on the same model and data, and prints the relative difference and
both run times.

``--prebuilt DIR`` keeps the GPU operators' shared objects in ``DIR``, named by a hash
of their C code, and loads them from there when present. The offloaded objects can so
be built on one machine (one with gcc's offload compiler) and run on another (one with
the GPU), as ``benchmarks/gpu_device_check.sh`` does.
"""

import argparse
import ctypes
import hashlib
import os
import shutil
import sys
import time
import types
from pathlib import Path

import numpy as np
from devito import Operator, TimeFunction, configuration
from devito.arch import NvidiaDevice
from devito.arch.compiler import GNUCompiler, compiler_registry

from devito_perforad import AdjointOperator, adjoint_function

configuration['log-level'] = 'ERROR'


class GNUOffloadCompiler(GNUCompiler):
    """gcc with OpenMP offloading to NVIDIA GPUs (``-foffload=nvptx-none``).

    Devito 4.8.23 offloads OpenMP only through clang, aomp or nvc; gcc offloads the
    same ``omp target`` code once its nvptx offload compiler is installed (Debian's
    ``gcc-12-offload-nvptx``). ``GCC_OFFLOAD_ROOT`` names a folder into which that
    package (with ``nvptx-tools``) was unpacked, when it is not installed system-wide.
    For a CPU platform it is plain gcc.

    The host code is built for ``x86-64-v3`` rather than ``native``, so that a shared
    object built here runs on another machine; ``PERFORAD_PREBUILT`` names a folder of
    such objects, keyed by a hash of their C code.
    """

    isa = 'sm_80'

    def __init_finalize__(self, **kwargs):
        platform = kwargs.get('platform', configuration['platform'])
        super().__init_finalize__(**kwargs)
        self.cflags = ['-march=x86-64-v3' if f == '-march=native' else f
                       for f in self.cflags if f != '-mprefer-vector-width=512']
        if not isinstance(platform, NvidiaDevice):
            return
        self.ldflags += ['-foffload=nvptx-none',
                         f'-foffload-options=nvptx-none=-misa={self.isa} -lm']
        root = os.environ.get('GCC_OFFLOAD_ROOT')
        if root:
            self.ldflags.append(f'-B{root}/usr/lib/gcc/x86_64-linux-gnu/'
                                f'{self.version.major}/')
            os.environ['PATH'] = f"{root}/usr/bin:{os.environ['PATH']}"

    def jit_compile(self, soname, code):
        store = os.environ.get('PERFORAD_PREBUILT')
        if not store:
            return super().jit_compile(soname, code)
        prebuilt = Path(store, hashlib.sha1(code.encode()).hexdigest()[:20] + '.so')
        target = self.get_jit_dir().joinpath(f'{soname}{self.so_ext}')
        if prebuilt.exists():
            if not target.exists():
                # a new file, never copied over: the process may have a target loaded
                shutil.copyfile(prebuilt, f'{target}.part')
                os.replace(f'{target}.part', target)
            return False, str(prebuilt)
        print(f"no prebuilt {prebuilt}: compiling {soname}", flush=True)
        recompiled, src_file = super().jit_compile(soname, code)  # or Devito's cache
        prebuilt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, prebuilt)
        return recompiled, src_file


compiler_registry['gnu-offload'] = GNUOffloadCompiler


def offload_devices():
    """How many offload devices the process's OpenMP runtime sees."""
    try:
        return ctypes.CDLL('libgomp.so.1').omp_get_num_devices()
    except OSError:
        return None


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
    times = []
    for _ in range(2):  # a warm-up (device set-up, PTX compilation), then the timed run
        for f in (u, ub, vpb):
            f.data[:] = 0
        t0 = time.perf_counter()
        fwd.apply(dt=model.critical_dt)
        t1 = time.perf_counter()
        recb.data[:] = rec.data - d_obs
        adj.apply(dt=model.critical_dt)
        times = [t1 - t0, time.perf_counter() - t1]
    return vpb.data.copy(), times


def main():
    try:
        import scipy  # noqa: F401
    except ImportError:
        # examples.seismic imports scipy.interpolate at the top, to resample wavelets,
        # which this script never does: a GPU machine may lack scipy
        sys.modules['scipy'] = types.ModuleType('scipy')
        sys.modules['scipy'].interpolate = types.ModuleType('scipy.interpolate')
    from examples.seismic.acoustic.operators import iso_stencil

    from examples.seismic import AcquisitionGeometry, demo_model
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--language', default='openacc', choices=['openacc', 'openmp'])
    parser.add_argument('--compiler', default='nvc')
    parser.add_argument('--shape', type=int, nargs=2, default=[401, 401])
    parser.add_argument('--space-order', type=int, default=8)
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float64'])
    parser.add_argument('--prebuilt', help='folder of prebuilt GPU shared objects')
    args = parser.parse_args()
    if args.prebuilt:
        os.environ['PERFORAD_PREBUILT'] = os.path.abspath(args.prebuilt)
    so = args.space_order
    model = demo_model('layers-isotropic', shape=tuple(args.shape), spacing=(10., 10.),
                       nbl=20, space_order=so, dtype=np.dtype(args.dtype).type)
    extent = (args.shape[0] - 1) * 10.0
    geometry = AcquisitionGeometry(
        model, np.array([[x, 30.] for x in np.linspace(0, extent, args.shape[0])]),
        np.array([[extent / 2, 20.]]), 0., 1500., f0=0.010, src_type='Ricker')
    d_obs = np.zeros_like(geometry.rec.data)
    cpu_target = {'opt': ('advanced', {'openmp': True})}
    if args.compiler == 'gnu-offload':
        # Built like the GPU code, for a generic AVX2 CPU, so it can be prebuilt too
        cpu_target.update(platform='hsw', language='openmp', compiler='gnu-offload')
    cpu, t_cpu = gradient(model, geometry, iso_stencil, so, d_obs, **cpu_target)
    gpu, t_gpu = gradient(model, geometry, iso_stencil, so, d_obs, platform='nvidiaX',
                          language=args.language, compiler=args.compiler)
    diff = np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu)
    print(f"OpenMP offload devices: {offload_devices()}")
    for name, (t_fwd, t_adj) in (('CPU', t_cpu), ('GPU', t_gpu)):
        print(f"{name}: primal {t_fwd:.2f} s, derived adjoint with gradient "
              f"{t_adj:.2f} s ({t_adj / t_fwd:.2f}x)")
    print(f"gradient, GPU vs CPU: relative difference {diff:.2e}")


if __name__ == '__main__':
    main()
