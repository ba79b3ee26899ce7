"""Count the machine instructions of each operator's innermost loops in its time loop.

Run times on a shared machine move by more than the performance targets' margins, so this
script compares what does not move: the code the C compiler makes of each operator. It
compiles an operator's generated C to assembly with the operator's own compiler and flags
(``-S``; Devito's flags include ``-g``, so the assembly names the C line of every
instruction), finds the innermost loops, keeps those whose instructions come from grid
statements inside the time loop (not sparse operations), and reports, for each
statement's main loop:

- lanes: the grid points one iteration updates (vector register width over the element
  size; 1 for a scalar loop);
- instructions per iteration, and per grid point;
- memory reads, gathers (``vgather``: an access the compiler could not prove contiguous),
  stack operands (loop bounds, row pointers or spilled registers kept on the stack),
  masked operations.

A derived adjoint whose stencil loop matches the primal's in these numbers does the same
work per point in the same way (same vectorisation, no gathers); what is left
between their run times is memory traffic and the machine.

Run from the repository root::

    python benchmarks/loops.py                    # 2d, 3d and the paper's stencils
    python benchmarks/loops.py --problem 2d
    python benchmarks/loops.py --quick --out /tmp/loops   # tiny sizes (smoke test)

writes ``benchmarks/results/loops.md`` (``--out`` to change the directory).
"""

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import run

__all__ = ['InnerLoop', 'assembly', 'enclosing_loops', 'inner_loops', 'stencil_loops']

VECTOR_BYTES = {'zmm': 64, 'ymm': 32}  # xmm: also scalar floating point, not counted
LABEL = re.compile(r'^(\.L\w+):')
JUMP = re.compile(r'^\s+j\w+\s+(\.L\w+)')
LOC = re.compile(r'^\s+\.loc\s+(\d+)\s+(\d+)')
FILE = re.compile(r'^\s+\.file\s+(\d+)\s+"([^"]+)"')


@dataclass
class InnerLoop:
    """An innermost loop of the assembly.

    Attributes
    ----------
    lines : Counter
        C source lines of the loop's instructions (from ``.loc``), with counts.
    instructions : list of str
        The loop body, label to backward jump.
    """

    lines: Counter
    instructions: list

    @property
    def statement(self):
        """The C line most of the loop's instructions come from."""
        return self.lines.most_common(1)[0][0]

    @property
    def register(self):
        """Widest vector register the loop uses ('zmm', 'ymm', or '' for a scalar
        loop)."""
        return next((r for r in VECTOR_BYTES
                     if any(f'%{r}' in i for i in self.instructions)), '')

    def count(self, pattern):
        """Instructions matching the regular expression ``pattern``."""
        return sum(bool(re.search(pattern, i)) for i in self.instructions)

    @property
    def reads(self):
        """Instructions that read memory: a memory operand (``(...)``) before the
        last operand, which AT&T syntax makes the destination (``lea`` computes an
        address and reads nothing)."""
        def operands(instruction):
            parts, depth, current = [], 0, ''
            for ch in instruction.partition(' ')[2] if ' ' in instruction else '':
                depth += (ch == '(') - (ch == ')')
                if ch == ',' and depth == 0:
                    parts.append(current)
                    current = ''
                else:
                    current += ch
            return parts + [current]
        return sum(any('(' in op for op in operands(i.replace('\t', ' '))[:-1])
                   for i in self.instructions if not i.startswith('lea'))

    def lanes(self, itemsize):
        """Grid points per iteration for elements of ``itemsize`` bytes."""
        return VECTOR_BYTES.get(self.register, itemsize) // itemsize


def assembly(op):
    """Compile the generated C of ``op`` to assembly with its compiler and flags.

    Returns
    -------
    c, asm : str
        The C source and the assembly text.
    """
    compiler = op._compiler
    c = str(op.ccode)
    flags = [f for f in [*compiler.cflags, *compiler.ldflags] if f != '-shared']
    flags += [f'-I{d}' for d in compiler.include_dirs]
    flags += [f'-D{k}={v}' if v is not None else f'-D{k}'
              for k, v in getattr(compiler, 'defines', [])]
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp, 'op.c'), Path(tmp, 'op.s')
        src.write_text(c)
        subprocess.run([compiler.cc, *flags, '-S', '-o', out.name, src.name], cwd=tmp,
                       check=True, capture_output=True)
        return c, out.read_text()


def inner_loops(asm, source='op.c'):
    """The innermost loops of ``asm``: a label, the instructions up to a backward jump
    to it, and no other such loop inside.

    Parameters
    ----------
    asm : str
        Assembly from ``gcc -S -g``.
    source : str
        Name of the C file whose ``.loc`` lines count.

    Returns
    -------
    list of InnerLoop
    """
    text = asm.splitlines()
    files = {m.group(1) for m in map(FILE.match, text) if m and m.group(2) == source}
    labels, loops = {}, []
    for i, line in enumerate(text):
        if m := LABEL.match(line):
            labels[m.group(1)] = i
        elif (m := JUMP.match(line)) and labels.get(m.group(1), i) < i:
            start = labels[m.group(1)]
            loops.append((start, i))
    innermost = [(s, e) for s, e in loops if not any(
        s <= s2 and e2 <= e and (s2, e2) != (s, e) for s2, e2 in loops)]
    out = []
    for s, e in innermost:
        body = text[s:e + 1]
        lines = Counter(int(m.group(2)) for m in map(LOC.match, body)
                        if m and m.group(1) in files)
        instructions = [ln.strip() for ln in body if ln.startswith('\t')
                        and not ln.strip().startswith('.')]
        if lines:
            out.append(InnerLoop(lines, instructions))
    return out


def enclosing_loops(c):
    """The loop variables around each line of the C code ``c``.

    Returns
    -------
    list of tuple of str
        Entry ``i`` (0-based) holds the variables of the ``for`` loops that enclose
        line ``i + 1``, outermost first.
    """
    stack, pending, out = [], None, []
    for line in c.splitlines():
        text = line.strip()
        if m := re.match(r'for \(int (\w+)', text):
            pending = m.group(1)
        out.append(tuple(v for v, _ in stack) + ((pending,) if pending else ()))
        for ch in text:
            if ch == '{':
                stack.append((pending, True) if pending else ('', False))
                pending = None
            elif ch == '}' and stack:
                stack.pop()
    return [tuple(v for v in loops if v) for loops in out]


def top_counter_lines(c):
    """The lines (1-based) of the C code ``c`` inside an ``if (time >= ...)`` block:
    statements that run at the first counters of a backward run only (the pointwise
    return of a seed set aside; see ``devito_perforad.levels.Levels.seed_counters``)."""
    stack, pending, out = [], False, set()
    for i, line in enumerate(c.splitlines(), 1):
        text = line.strip()
        pending = pending or text.startswith('if (time >= ')
        if any(stack):
            out.add(i)
        for ch in text:
            if ch == '{':
                stack.append(pending)
                pending = False
            elif ch == '}' and stack:
                stack.pop()
    return out


def stencil_loops(op):
    """Per statement of ``op`` inside its time loop and outside sparse loops, its
    main loop: the innermost loop with the widest vector register (the vectorised
    body), and of those the shortest (not a remainder or a peeled copy), in source
    order. Statements that run at the first counters only (:func:`top_counter_lines`)
    are left out.

    Returns
    -------
    list of (str, InnerLoop)
        The statement's left-hand side in the C code (50 characters at most) and its
        loop.
    """
    c, asm = assembly(op)
    c_lines, around = c.splitlines(), enclosing_loops(c)
    once = top_counter_lines(c)
    width = {'zmm': 2, 'ymm': 1, '': 0}
    best = {}
    for loop in inner_loops(asm):
        line = loop.statement
        loops = around[line - 1]
        if line in once or ('time' not in loops or loops[-1] == 'time'
                or any(v.startswith(('p_', 'rp_')) for v in loops)):
            continue  # outside the time loop, the loop header, or a sparse operation
        key = (-width[loop.register], len(loop.instructions))
        if line not in best or key < best[line][0]:
            best[line] = (key, loop)
    return [(c_lines[line - 1].strip().split(' = ')[0].split(' += ')[0][:50], loop)
            for line, (_, loop) in sorted(best.items())]


def rows(problem, spec):
    """Table rows for the Devito operators of ``problem``: the cases built in-process
    (the primal, the derived operators, the scatter form and Devito's own)."""
    cases, _ = run.problem_cases(problem, spec)
    out = []
    for case in cases:
        if case.role in run.PEERS:
            continue
        op = case.build()
        itemsize = next(f.dtype().itemsize for f in op.input
                        if getattr(f, 'is_DiscreteFunction', False))
        loops = stencil_loops(op)
        for k, (lhs, loop) in enumerate(loops):
            n, lanes = len(loop.instructions), loop.lanes(itemsize)
            out.append([case.name if k == 0 else '', f'`{lhs}`',
                        loop.register or 'scalar', str(lanes), str(n),
                        f'{n / lanes:.1f}', str(loop.reads), str(loop.count('gather')),
                        str(loop.count(r'%rsp')), str(loop.count(r'\{%k'))])
        print(f'{case.name}: {len(loops)} loops', flush=True)
    return out


HEAD = ['operator', 'statement (left-hand side)', 'register', 'lanes',
        'instructions / iteration', 'per point', 'memory reads', 'gathers',
        'stack operands', 'masked']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--problem', nargs='+', choices=list(run.PROBLEMS),
                        default=list(run.PROBLEMS))
    parser.add_argument('--out', type=Path, default=Path('benchmarks/results'))
    parser.add_argument('--quick', action='store_true',
                        help="run.py's tiny sizes (a smoke test: the loops are the same "
                        'but for constants)')
    args = parser.parse_args(argv)
    text = ['# Innermost loops of the time loop, from the assembly', '',
            'Made by `python benchmarks/loops.py` (package at '
            f'{run.revision()}; `{run.configuration["compiler"].cc}` with Devito\'s '
            'flags). One row per grid statement in the time loop: its main loop '
            '(the widest vector registers; scalar where not vectorised). Sparse '
            'operations (injection, interpolation) are not listed. Several rows with '
            'one left-hand side are one update split into regions (an interior and '
            'its edges).', '']
    for problem in args.problem:
        spec = dict((run.QUICK if args.quick else run.PROBLEMS)[problem])
        text += [f'## {problem}', '', '| ' + ' | '.join(HEAD) + ' |',
                 '|' + '---|' * len(HEAD)]
        text += ['| ' + ' | '.join(r) + ' |' for r in rows(problem, spec)] + ['']
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / 'loops.md').write_text('\n'.join(text))
    print('\n'.join(text))


if __name__ == '__main__':
    sys.exit(main())
