"""JAX baseline: the same 2D acoustic stencil written with array slices, forward and
``jax.grad`` (reverse mode through ``lax.scan``), timed like ``benchmarks/run.py``.

Optional (``pip install jax``). Run from the repository root::

    python benchmarks/jax_baseline.py            # 841^2, so=8, 1350 steps, float32

``benchmarks/run.py`` measures the same functions (:func:`functions`) next to the
Devito operators when JAX is installed.

The stencil matches the benchmark's model: an 8th-order Laplacian, a damping layer and
a point source; the objective is half the squared norm of a line of receivers, and
``jax.grad`` differentiates it with respect to the squared slowness.
"""

import argparse
import time

import numpy as np


def functions(n, nt):
    """The JAX forward model and its ``jax.grad``, jitted, and the model they take.

    Parameters
    ----------
    n : int
        Grid points per side, absorbing layer included.
    nt : int
        Time steps.

    Returns
    -------
    dict, jax.Array
        ``{'forward': f, 'gradient': g}`` (functions of the squared slowness ``m``)
        and ``m``.
    """
    import jax
    import jax.numpy as jnp
    h, dt = 10.0, 1.0
    w = np.array([-1 / 560, 8 / 315, -1 / 5, 8 / 5, -205 / 72, 8 / 5, -1 / 5, 8 / 315,
                  -1 / 560], dtype=np.float32) / h ** 2
    r = 4
    pad = r

    def laplacian(u):
        up = jnp.pad(u, pad)
        out = 0.0
        for k in range(-r, r + 1):
            out = out + w[k + r] * (up[pad + k:pad + k + n, pad:pad + n]
                                    + up[pad:pad + n, pad + k:pad + k + n])
        return out

    damp = np.zeros((n, n), np.float32)
    ramp = np.linspace(1, 0, 20, dtype=np.float32) ** 2 * 0.05
    damp[:20] += ramp[:, None]
    damp[-20:] += ramp[::-1, None]
    damp[:, :20] += ramp[None, :]
    damp[:, -20:] += ramp[None, ::-1]
    f0, t = 0.010, np.arange(nt, dtype=np.float32) * dt
    arg = (np.pi * f0 * (t - 1 / f0)) ** 2
    wavelet = jnp.asarray((1 - 2 * arg) * np.exp(-arg), jnp.float32)
    isrc = (n // 2, 22)

    def forward(m):
        def step(carry, src):
            u, u_prev = carry
            u_next = ((2 * u - u_prev) * m / dt ** 2 + damp * u / dt + laplacian(u)) / (
                m / dt ** 2 + damp / dt)
            u_next = u_next.at[isrc].add(src * dt ** 2 / m[isrc])
            return (u_next, u), u_next[:, 23]

        zero = jnp.zeros((n, n), jnp.float32)
        _, rec = jax.lax.scan(step, (zero, zero), wavelet)
        return rec

    def objective(m):
        return 0.5 * jnp.sum(forward(m) ** 2)

    m = jnp.full((n, n), 1 / 1.5 ** 2, jnp.float32)
    return {'forward': jax.jit(forward), 'gradient': jax.jit(jax.grad(objective))}, m


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--n', type=int, default=841)
    parser.add_argument('--nt', type=int, default=1350)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    fns, m = functions(args.n, args.nt)
    for name, fn in fns.items():
        fn(m).block_until_ready()  # compile and warm up
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fn(m).block_until_ready()
            runs.append(time.perf_counter() - t0)
        print(f"JAX {name}: median {np.median(runs):.3f} s over {args.repeats} runs",
              flush=True)


if __name__ == '__main__':
    main()
