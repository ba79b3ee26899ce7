"""Benchmark the derived adjoint and gradient against the primal and Devito's
hand-written operators, in one process.

Each case builds its Operator once, compiles it (timed separately), warms up with one
run, then reports the median of ``--repeats`` runs for each thread count. Results go to
``--out`` as ``results.md`` (a markdown table with ratios) and ``results.png``.

Run from the repository root::

    python benchmarks/run.py                      # 2D acoustic 841^2, so=8, 1350 steps
    python benchmarks/run.py --threads 1 2 4 8    # on a larger machine
    python benchmarks/run.py --problem 3d         # 161^3, so=8, 300 steps

Not yet covered (see the README's performance section): a scatter-form adjoint, JAX and
deepwave.
"""

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np
from devito import Operator, TimeFunction, configuration

from devito_perforad import AdjointOperator, adjoint_function

configuration['log-level'] = 'ERROR'
configuration['language'] = 'openmp'  # every operator, Devito's own included

HAND_GRADIENT = "Devito's gradient"
PROBLEMS = {
    '2d': dict(shape=(801, 801), nbl=20, so=8, nt=1350),
    '3d': dict(shape=(141, 141, 141), nbl=10, so=8, nt=300),
    'paper': dict(shape=(4_000_000,), nt=100),  # 1D sizes; the 3D wave uses 160^3
}


def paper_cases(shape, nt, **_):
    """The PerforAD paper's stencils (1D wave, 3D wave, 1D Burgers): primal and
    derived adjoint, float64 (tests/test_paper.py checks them against NumPy)."""
    import sympy
    from devito import Eq, Grid

    def wave(n, ndim, c):
        grid = Grid(shape=(n,) * ndim, dtype=np.float64)
        u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
        lap = sum(u.shift(d, d.spacing) + u.shift(d, -d.spacing) - 2 * u
                  for d in grid.dimensions)
        return u, [Eq(u.forward, 2 * u - u.backward + c * lap)]

    def burgers(n):
        grid = Grid(shape=(n,), dtype=np.float64)
        x = grid.dimensions[0]
        u = TimeFunction(name='u', grid=grid, space_order=2, save=nt + 2)
        up, um = u.shift(x, x.spacing), u.shift(x, -x.spacing)
        upwind = sympy.Max(u, 0) * (u - um) + sympy.Min(u, 0) * (up - u)
        return u, [Eq(u.forward, u - 0.2 * upwind + 0.05 * (up + um - 2 * u))]

    # Static OpenMP scheduling for both (AdjointOperator's default): Devito would pick
    # schedule(dynamic, 1) for the Burgers primal, which is far slower on long 1D loops.
    kw = dict(opt=('advanced', {'par-dynamic-work': np.inf}))
    steps = dict(time_m=1, time_M=nt)
    for label, (u, primal) in [('1D wave', wave(shape[0], 1, 0.3)),
                               ('3D wave', wave(160, 3, 0.1)),
                               ('1D Burgers', burgers(shape[0] // 4))]:
        ub = adjoint_function(u)
        yield (f'{label} primal', lambda p=primal: Operator(p, **kw), steps)
        yield (f'{label} derived adjoint',
               lambda p=primal, u=u, ub=ub: AdjointOperator(p, {u: ub}, **kw), steps)


def setup(shape, nbl, so, nt, dtype=np.float32):
    """Devito's acoustic model with one source and a line of receivers."""
    from examples.seismic.acoustic.operators import iso_stencil

    from examples.seismic import AcquisitionGeometry, demo_model

    spacing = (10.0,) * len(shape)
    model = demo_model('layers-isotropic', shape=shape, spacing=spacing, nbl=nbl,
                       space_order=so, dtype=dtype, nlayers=4)
    extent = [(n - 1) * h for n, h in zip(shape, spacing, strict=True)]
    dt = model.critical_dt
    src_coords = np.array([[e / 2 for e in extent[:-1]] + [20.0]])
    nrec = shape[0]
    rec_coords = np.zeros((nrec, len(shape)))
    rec_coords[:, 0] = np.linspace(0, extent[0], nrec)
    rec_coords[:, 1:-1] = extent[1] / 2
    rec_coords[:, -1] = 30.0
    geometry = AcquisitionGeometry(model, rec_coords, src_coords, 0.0, (nt - 1) * dt,
                                   f0=0.010, src_type='Ricker')
    return model, geometry, iso_stencil


def cases(model, geometry, iso_stencil, so):
    """(name, build, apply kwargs) for every operator compared; ``build()`` makes the
    Operator, so that its construction is timed with its compilation."""
    from examples.seismic.acoustic import AcousticWaveSolver

    grid, s = model.grid, model.grid.stepping_dim.spacing
    nt = geometry.nt
    kw = dict(subs=model.spacing_map, opt='advanced')

    src, rec = geometry.src, geometry.rec  # each access makes a new object: once

    def forward(u):
        return (iso_stencil(u, model, 'OT2')
                + src.inject(field=u.forward, expr=src * s ** 2 / model.m)
                + rec.interpolate(expr=u))

    u = TimeFunction(name='u', grid=grid, time_order=2, space_order=so)
    usave = TimeFunction(name='usave', grid=grid, time_order=2, space_order=so, save=nt)
    ub = TimeFunction(name='ub', grid=grid, time_order=2, space_order=so)
    recb = adjoint_function(rec)
    recb.data[:] = np.random.default_rng(0).standard_normal(recb.data.shape)
    vpb = adjoint_function(model.vp)
    dt = model.critical_dt
    solver = AcousticWaveSolver(model, geometry, space_order=so)
    v = TimeFunction(name='v', grid=grid, time_order=2, space_order=so)
    grad = adjoint_function(model.vp, 'grad')
    srca = geometry.new_src(name='srca', src_type=None)
    steps = dict(dt=dt, time_m=1, time_M=nt - 2)
    yield 'primal', lambda: Operator(forward(u), name='Forward', **kw), steps
    yield ('derived adjoint',
           lambda: AdjointOperator(forward(u), {u: ub, rec: recb}, **kw), steps)
    yield ('derived gradient',
           lambda: AdjointOperator(forward(usave), {usave: ub, rec: recb, model.vp: vpb},
                                   **kw), steps)
    yield ("Devito's adjoint", solver.op_adj,
           dict(rec=recb, v=v, srca=srca, vp=model.vp, **steps))
    yield ("Devito's gradient", lambda: solver.op_grad(save=True),
           dict(rec=recb, v=v, u=usave, grad=grad, vp=model.vp, **steps))


def measure(build, kwargs, threads, repeats):
    t0 = time.perf_counter()
    op = build()
    _ = op.cfunction  # JIT compile (or load from Devito's cache)
    compile_time = time.perf_counter() - t0
    timings = {}
    for n in threads:
        op.apply(nthreads=n, **kwargs)  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            op.apply(nthreads=n, **kwargs)
            runs.append(time.perf_counter() - t0)
        timings[n] = float(np.median(runs))
    return compile_time, timings


def report(problem, rows, threads, out):
    base = {n: rows[0][2][n] for n in threads}
    hand = {r[0]: r for r in rows}
    paper = 'derived adjoint' not in hand
    if paper:  # pairs: each adjoint against its own primal
        for i in range(0, len(rows), 2):
            base_i = rows[i][2]
            rows[i + 1] = rows[i + 1][:2] + ({n: rows[i + 1][2][n] for n in threads},
                                             rows[i + 1][3], base_i)
            rows[i] = rows[i][:4] + (base_i,)
    lines = [f"## {problem}", "",
             "| operator | build + compile (s) | " + " | ".join(f"{n} thr (s) | x primal"
                                                      for n in threads) + " |",
             "|---|---|" + "---|---|" * len(threads)]
    for name, compile_time, timings, _rss, *own in rows:
        ref = own[0] if own else base
        cells = " | ".join(f"{timings[n]:.3f} | {timings[n] / ref[n]:.2f}"
                           for n in threads)
        lines.append(f"| {name} | {compile_time:.1f} | {cells} |")
    n = threads[-1]
    if paper:
        lines.append("")
    else:
        lines += ["", f"At {n} threads: derived adjoint / primal = "
              f"{hand['derived adjoint'][2][n] / base[n]:.2f}; derived gradient / "
              f"Devito's gradient = "
              f"{hand['derived gradient'][2][n] / hand[HAND_GRADIENT][2][n]:.2f}.", ""]
    name = 'results_paper' if paper else 'results'
    (out / f'{name}.md').write_text("\n".join(lines))
    print("\n".join(lines))
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [r[0] for r in rows]
    width = 0.8 / len(threads)
    for i, n in enumerate(threads):
        ax.bar(np.arange(len(rows)) + i * width, [r[2][n] for r in rows], width,
               label=f'{n} threads')
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, names, rotation=20, ha='right')
    ax.set_ylabel('time (s)')
    ax.set_title(f'{problem}: median run time')
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / f'{name}.png', dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--problem', choices=list(PROBLEMS), default='2d')
    parser.add_argument('--threads', type=int, nargs='+',
                        default=[1, min(2, os.cpu_count())])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--shape', type=int, nargs='+', help='override the grid shape')
    parser.add_argument('--nt', type=int, help='override the number of time steps')
    parser.add_argument('--out', type=Path, default=Path('benchmarks/results'))
    args = parser.parse_args()
    spec = dict(PROBLEMS[args.problem])
    if args.shape:
        spec['shape'] = tuple(args.shape)
    if args.nt:
        spec['nt'] = args.nt
    args.out.mkdir(parents=True, exist_ok=True)
    if args.problem == 'paper':
        builders = list(paper_cases(**spec))
    else:
        model, geometry, iso = setup(**spec)
        builders = list(cases(model, geometry, iso, spec['so']))
    rows = []
    for name, build, kwargs in builders:
        compile_time, timings = measure(build, kwargs, args.threads, args.repeats)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append((name, compile_time, timings, rss))
        print(f"{name}: compile {compile_time:.1f} s, " +
              ", ".join(f"{n} thr {t:.3f} s" for n, t in timings.items()), flush=True)
    label = "PerforAD paper stencils" if args.problem == "paper" else "acoustic"
    report(f"{args.problem} {label} {spec}", rows, args.threads, args.out)


if __name__ == '__main__':
    main()
