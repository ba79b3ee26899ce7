"""deepwave baseline: the benchmark's 2D acoustic problem run with ``deepwave.scalar``,
forward and forward + backward (PyTorch autograd), timed like ``benchmarks/run.py``.

Optional (``pip install deepwave``, which pulls in ``torch``). Run from the repository
root::

    python benchmarks/deepwave_baseline.py       # 801^2 + 20-cell PML, 1350 steps

``benchmarks/run.py`` measures the same functions (:func:`functions`) next to the
Devito operators when deepwave is installed.

The velocity model is the benchmark's own: Devito's ``demo_model('layers-isotropic',
nlayers=4)`` (four flat layers, 1.5 to 3.5 km/s), whose interior is passed to deepwave
unchanged, and ``dt`` is that model's ``critical_dt``. One Ricker source (10 Hz, peak at
``1 / f0`` as in Devito) sits at the middle of the top at 20 m depth; 801 receivers lie
on a line at 30 m depth; float32; accuracy 8. The objective is half the squared norm of
the receiver data and the backward pass differentiates it with respect to the velocity.

How it differs from the Devito benchmark: deepwave surrounds the 801^2 model with a
20-cell C-PML (auxiliary fields, more work per cell in the layer) where Devito uses a
20-point damping term, so both grids are 841^2 but the boundary physics differs. The
source and receivers sit on grid points (no interpolation), the source is not scaled by
``dt^2 / m``, and deepwave's default Courant number (0.6) would sub-step Devito's
``dt`` twice, so ``courant_number`` is raised to 0.78 (below its critical 0.784 for
accuracy 8) to keep exactly one internal step per sample, as Devito takes. The
gradient is with respect to the velocity (Devito's and JAX's are with respect to
the squared slowness); deepwave stores the whole forward wavefield history in memory.
"""

import argparse
import time
from pathlib import Path

import numpy as np


def setup(n, nbl):
    """The benchmark's velocity model (interior only, m/s) and dt (s)."""
    from devito import configuration

    from examples.seismic import demo_model
    configuration['log-level'] = 'ERROR'
    model = demo_model('layers-isotropic', shape=(n, n), spacing=(10.0, 10.0), nbl=nbl,
                       space_order=8, dtype=np.float32, nlayers=4)
    vp = np.array(model.vp.data[nbl:-nbl, nbl:-nbl]) * 1000  # km/s -> m/s; [x, z]
    return vp, float(model.critical_dt) / 1000  # ms -> s


def functions(n, nbl, nt, threads=None):
    """deepwave's forward model and its forward + backward on the benchmark's problem.

    Parameters
    ----------
    n : int
        Interior points per side.
    nbl : int
        PML width (cells).
    nt : int
        Time steps.
    threads : int, optional
        torch's thread count (default: the CPUs this process may run on).

    Returns
    -------
    dict
        ``{'forward': f, 'gradient': g}``, functions of no argument: the receiver data,
        and the gradient of half its squared norm with respect to the velocity.
    """
    import os

    import deepwave
    import torch
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    h, f0 = 10.0, 10.0
    vp, dt = setup(n, nbl)
    v0 = torch.from_numpy(vp)
    wavelet = deepwave.wavelets.ricker(f0, nt, dt, 1 / f0, dtype=torch.float32)
    src_amp = wavelet.reshape(1, 1, nt)
    src_loc = torch.tensor([[[n // 2, 2]]], dtype=torch.long)  # z = 20 m
    rec_loc = torch.zeros(1, n, 2, dtype=torch.long)
    rec_loc[0, :, 0] = torch.arange(n)
    rec_loc[0, :, 1] = 3  # z = 30 m

    def propagate(v):
        out = deepwave.scalar(v, h, dt, source_amplitudes=src_amp,
                              source_locations=src_loc, receiver_locations=rec_loc,
                              accuracy=8, pml_width=nbl, pml_freq=f0,
                              max_vel=float(vp.max()), courant_number=0.78)
        assert out.info.step_ratio == 1, out.info.step_ratio
        return out.receiver_amplitudes

    def forward():
        with torch.no_grad():
            return propagate(v0)

    def gradient():
        v = v0.clone().requires_grad_()
        loss = 0.5 * propagate(v).square().sum()
        loss.backward()
        return v.grad

    return {'forward': forward, 'gradient': gradient}


def main():
    import deepwave
    import torch
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=801, help='interior points per side')
    parser.add_argument('--nbl', type=int, default=20, help='PML width (cells)')
    parser.add_argument('--nt', type=int, default=1350)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', type=Path, default=Path('benchmarks/results'))
    args = parser.parse_args()
    n, nt = args.n, args.nt
    fns = functions(n, args.nbl, nt, args.threads)
    vp, dt = setup(n, args.nbl)
    print(f"deepwave {deepwave.__version__}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; dt = {dt * 1000:.3f} ms "
          f"(Devito's critical_dt), vp {vp.min():.0f}..{vp.max():.0f} m/s", flush=True)
    forward, gradient = fns['forward'], fns['gradient']

    cases = {'deepwave forward': forward, 'deepwave forward + backward': gradient}
    rows = []
    for name, fn in cases.items():
        fn()  # warm-up
        runs, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            runs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        rows.append((name, float(np.median(runs)), float(np.median(cpu))))
        print(f"{name}: median {rows[-1][1]:.3f} s over {args.repeats} runs "
              f"(CPU time {rows[-1][2]:.3f} s)", flush=True)

    lines = [f"## deepwave {deepwave.__version__} (torch {torch.__version__}): "
             f"2d acoustic {n}^2 + {args.nbl}-cell PML, accuracy 8, {nt} steps, float32, "
             f"dt = {dt * 1000:.3f} ms", "",
             f"| case | {args.threads} thr (s) | CPU time, all threads (s) |",
             "|---|---|---|"]
    lines += [f"| {name} | {t:.3f} | {c:.3f} |" for name, t, c in rows]
    lines += ["", f"forward + backward / forward = {rows[1][1] / rows[0][1]:.2f}", ""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'deepwave.md').write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == '__main__':
    main()
