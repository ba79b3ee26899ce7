"""Peak memory and time of the FWI gradient: saved wavefield against checkpointing.

Each case runs in its own process (peak RSS is a per-process high-water mark): the
primal and the derived gradient w.r.t. vp on the 2D acoustic model of ``run.py``,
either with ``save=nt`` or with ``AdjointOperator(..., checkpointing=True)`` (Revolve,
buffered wavefield). The gradients are compared, and a table goes to
``benchmarks/results/checkpointing.md``.

Run from the repository root::

    python benchmarks/checkpointing.py                 # 401^2 + 20, so=8, 2000 steps
    python benchmarks/checkpointing.py --n 201 --nt 500 --checkpoints 5 20
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / 'results'


def run_case(n, nt, checkpoints, gradient_file):
    """One gradient in this process; prints a JSON line with its figures."""
    from devito import Operator, TimeFunction, configuration
    from run import setup

    from devito_perforad import AdjointOperator, adjoint_function
    configuration['log-level'] = 'ERROR'
    model, geometry, iso_stencil = setup((n, n), 20, 8, nt)
    grid, s = model.grid, model.grid.stepping_dim.spacing
    src, rec = geometry.src, geometry.rec
    save = geometry.nt if checkpoints is None else None
    u = TimeFunction(name='u', grid=grid, time_order=2, space_order=8, save=save)
    primal = (iso_stencil(u, model, 'OT2')
              + src.inject(field=u.forward, expr=src * s ** 2 / model.m)
              + rec.interpolate(expr=u))
    ub = TimeFunction(name='ub', grid=grid, time_order=2, space_order=8)
    recb, vpb = adjoint_function(rec), adjoint_function(model.vp)
    recb.data[:] = np.random.default_rng(0).standard_normal(recb.data.shape)
    adjoints = {u: ub, rec: recb, model.vp: vpb}
    kw = dict(subs=model.spacing_map, opt='advanced')
    steps = dict(dt=model.critical_dt, time_m=1, time_M=geometry.nt - 2)
    t0 = time.perf_counter()
    if checkpoints is None:
        Operator(primal, **kw).apply(**steps)
        AdjointOperator(primal, adjoints, **kw).apply(**steps)
    else:
        AdjointOperator(primal, adjoints, checkpointing=True, n_checkpoints=checkpoints,
                        **kw).apply(**steps)
    seconds = time.perf_counter() - t0  # includes building and compiling both operators
    np.save(gradient_file, vpb.data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    print(json.dumps(dict(seconds=seconds, peak_mib=peak,
                          wavefield_mib=u._data.nbytes / 2 ** 20)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=401)
    parser.add_argument('--nt', type=int, default=2000)
    parser.add_argument('--checkpoints', type=int, nargs='+', default=[10, 40])
    parser.add_argument('--case', help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case is not None:
        cp = None if args.case == 'saved' else int(args.case)
        return run_case(args.n, args.nt, cp, OUT / f'.grad_{args.case}.npy')
    OUT.mkdir(exist_ok=True)
    rows = []
    for case in ['saved'] + [str(c) for c in args.checkpoints]:
        command = [sys.executable, __file__, '--case', case, '--n', str(args.n),
                   '--nt', str(args.nt)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        grad = np.load(OUT / f'.grad_{case}.npy')
        rows.append((case, figures, grad))
        print(case, figures, flush=True)
    reference = rows[0][2]
    lines = [f"## FWI gradient, saved wavefield vs checkpointing ({args.n + 40}^2 incl. "
             f"layer, so=8, {args.nt} steps, float32)", '',
             '| run | peak RSS (MiB) | wavefield storage (MiB) | time incl. build (s) '
             '| max rel. difference to saved |', '|---|---|---|---|---|']
    for case, f, grad in rows:
        label = ('saved (save=nt)' if case == 'saved'
                 else f'checkpointing, {case} snapshots')
        diff = np.abs(grad - reference).max() / np.abs(reference).max()
        lines.append(f"| {label} | {f['peak_mib']:.0f} | {f['wavefield_mib']:.0f} | "
                     f"{f['seconds']:.1f} | {diff:.1e} |")
    (OUT / 'checkpointing.md').write_text('\n'.join(lines) + '\n')
    for case, *_ in rows:
        (OUT / f'.grad_{case}.npy').unlink()
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
