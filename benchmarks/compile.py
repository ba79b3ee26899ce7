"""JIT compile times of every Devito operator of the benchmarks, each compiled several
times from an empty cache.

``benchmarks/run.py`` compiles each operator once, under whatever load the machine has
at that moment; a compile takes 0.1-2 s, so one slow spell moves its ratio by more than
the target's margin. This script compiles each operator ``--repeats`` times (default
3), each time into a new, empty Devito JIT cache, and reports the median: code
generation, the C compiler and loading, as in ``run.py``. The operators are those of
``run.py`` at its ``--quick`` sizes: the generated code is the same at every size
but for constants.

Run from the repository root::

    python benchmarks/compile.py                 # 2d, 3d and the paper's stencils
    python benchmarks/compile.py --problem 2d --repeats 5

writes ``benchmarks/results/compile.md`` (``--out`` to change the directory).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import run

__all__ = ['compile_times', 'rows']


def compile_times(case, repeats):
    """Seconds of up to ``repeats`` real JIT compiles of ``case``'s operator.

    Devito's hand-written operators come from a solver that keeps the Operator it built
    (``AcousticWaveSolver.op_adj``): that one is compiled once only.
    """
    times, seen = [], None
    for _ in range(repeats):
        run.fresh_jit_cache()
        op, _, seconds, cached = run.compile_op(case.build)
        if op is seen:
            break
        assert not cached, f'{case.name}: found in a fresh JIT cache'
        times.append(seconds)
        seen = op
    return times


def rows(problem, repeats):
    """Table rows for the Devito operators of ``problem`` (not the outside peers)."""
    cases, _ = run.problem_cases(problem, dict(run.QUICK[problem]))
    out, primal = [], {}
    for case in cases:
        if case.role in run.PEERS:
            continue
        times = compile_times(case, repeats)
        median = float(np.median(times))
        if case.role == 'primal':
            primal[case.group] = median
        ratio = median / primal[case.group] if case.group in primal else float('nan')
        out.append([case.name, f'{median:.3f}', f'{ratio:.2f}',
                    ' '.join(f'{t:.3f}' for t in times)])
        print(f'{case.name}: {median:.3f} s ({ratio:.2f}x the primal)', flush=True)
    return out


HEAD = ['operator', 'JIT compile, median (s)', 'x primal', 'each compile (s)']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--problem', nargs='+', choices=list(run.PROBLEMS),
                        default=list(run.PROBLEMS))
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--out', type=Path, default=Path('benchmarks/results'))
    args = parser.parse_args(argv)
    run.warm_up_compiler()
    text = ['# JIT compile times', '',
            f'Made by `python benchmarks/compile.py` (package at {run.revision()}; '
            f'`{run.configuration["compiler"].cc}` with Devito\'s flags; load average '
            f'{run.load()} at the start). Each operator compiled {args.repeats} times, '
            'each time from an empty JIT cache (Devito\'s hand-written operators once: '
            'their solver keeps the Operator it built); the ratio is of the medians.',
            '']
    for problem in args.problem:
        text += [f'## {problem}', '', '| ' + ' | '.join(HEAD) + ' |',
                 '|' + '---|' * len(HEAD)]
        text += ['| ' + ' | '.join(r) + ' |' for r in rows(problem, args.repeats)] + ['']
    text.append(f'Load average {run.load()} at the end.')
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'compile.md').write_text('\n'.join(text) + '\n')
    print('\n'.join(text))


if __name__ == '__main__':
    sys.exit(main())
