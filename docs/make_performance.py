"""Write the figures of ``docs/performance.md`` from the benchmark results.

Every table and every line of figures in ``performance.md`` stands between
``<!-- generated: KEY -->`` and ``<!-- end generated -->``, and is made here from the
files in ``benchmarks/results/`` (the benchmarks write them): the document cannot
hold a figure its results do not. Regenerate after a benchmark run (from anywhere)::

    python docs/make_performance.py

``tests/test_notebooks.py::test_performance_doc_is_up_to_date`` fails while
``performance.md`` differs from what this script writes.
"""

import re
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS.parent / 'benchmarks' / 'results'
OUTPUT = DOCS / 'performance.md'
# the problems of the compile and loop tables: (label, section, operator prefix)
PROBLEMS = [('2D acoustic', '2d', ''), ('3D acoustic', '3d', ''),
            ('1D wave', 'paper', '1D wave '), ('3D wave', 'paper', '3D wave '),
            ('1D Burgers', 'paper', '1D Burgers ')]
PHYSICS = "physics propagators of Devito's examples.seismic"
STAGGERED = ("results_staggered.md",
             "staggered staggered-grid propagators of Devito's examples.seismic")
STAGGERED_3D = ("results_staggered_3d.md", "staggered-3d Devito's 3D elastic propagator")
BLOCK = re.compile(r'<!-- generated: (\S+) -->(\n?)(.*?)<!-- end generated -->', re.S)


# -- reading the results ---------------------------------------------------------

def sections(name):
    """``{title: (header, rows)}`` of the markdown tables of a result file, by the
    title of the ``##`` section they stand in (its words up to ``{`` or ``(``)."""
    out, title = {}, None
    for line in (RESULTS / name).read_text().splitlines():
        if line.startswith('## '):
            title = re.split(r' [{(]', line[3:])[0].strip()
        elif line.startswith('|') and not line.startswith('|---'):
            cells = [c.strip() for c in line.strip('|').split('|')]
            if title not in out:
                out[title] = (cells, [])
            else:
                out[title][1].append(cells)
    return out


def rows(name, title):
    """The rows of a section's table, each a dict by column (a repeated column name
    gets its position: ``x primal``, ``x primal 2``)."""
    header, body = sections(name)[title]
    keys, seen = [], {}
    for h in header:
        seen[h] = seen.get(h, 0) + 1
        keys.append(h if seen[h] == 1 else f'{h} {seen[h]}')
    return {r[0]: dict(zip(keys, r, strict=True)) for r in body if r[0]}


def ratios(name):
    """``{(group, ratio): 'median [low-high]'}`` from a result file's bullet lines
    (``- group (at 2 threads): a / b = 1.01 [0.89-1.06]; ...``)."""
    out = {}
    for line in (RESULTS / name).read_text().splitlines():
        m = re.match(r'- (.+?) \(at \d threads?\): (.*)', line)
        if m:
            for part in m.group(2).rstrip('.').split('; '):
                key, _, value = part.partition(' = ')
                out[(m.group(1), key)] = value
    return out


def notes(name, phrase):
    """The bullet lines of a result file that contain ``phrase``."""
    return [line[2:] for line in (RESULTS / name).read_text().splitlines()
            if line.startswith('- ') and phrase in line]


def table(header, body):
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    return '\n'.join(lines + ['| ' + ' | '.join(map(str, r)) + ' |' for r in body])


# -- the blocks -------------------------------------------------------------------

def acoustic(name, title):
    """Times at 1 and 2 threads, ratios to the primal, of one acoustic problem."""
    labels = {'scatter adjoint': "scatter adjoint (`mode='scatter'`)"}
    body = [(labels.get(op, op), r['1 thr (s)'], r['x primal'], r['2 thr (s)'],
             r['x primal 2']) for op, r in rows(name, title).items()]
    text = table(['operator', '1 thread (s)', 'x primal', '2 threads (s)', 'x primal'],
                 body)
    r = ratios(name)
    pairs = [("derived adjoint / Devito's adjoint", "derived adjoint / Devito's adjoint"),
             ("derived gradient / Devito's gradient",
              "derived gradient / Devito's gradient"),
             ('derived adjoint / primal', 'derived adjoint / primal')]
    line = '; '.join(f'{label} {r[("ratios", key)]}' for label, key in pairs)
    missing = [n.split(':')[0] for n in notes(name, 'not measured')]
    text += f'\n\nRatios within rounds, at 2 threads: {line}.'
    if missing:
        text += (f" Not measured in this run (not installed): {', '.join(missing)}.")
    return text


def acoustic_2d():
    return acoustic('results.md', '2d acoustic')


def acoustic_3d():
    return acoustic('results_3d.md', '3d acoustic')


def physics():
    adj, grad = ratios('results_physics.md'), ratios('results_physics_gradient.md')
    measured = {g for g, _ in grad}
    body = []
    for group in dict.fromkeys(g for g, _ in adj):
        devito = adj.get((group, "derived adjoint / Devito's adjoint"))
        hand = adj.get((group, 'derived adjoint / hand-written adjoint'))
        reference = devito or f'{hand} (the hand-written adjoint)'
        vp = grad.get((group, "derived gradient / Devito's gradient"),
                      '(no Devito gradient)' if group in measured else '(not measured)')
        every = grad.get((group, "derived gradient, every parameter / Devito's gradient"),
                         '-')
        body.append((group, reference, adj[(group, 'derived adjoint / primal')], vp,
                     every))
    return table(['physics', "derived adjoint / Devito's adjoint",
                  'derived adjoint / primal',
                  "derived `vp` gradient / Devito's gradient",
                  "gradient of every parameter / Devito's `vp` gradient"], body)


def staggered():
    """Per staggered-grid physics (2D, and the 3D elastic model): the derived adjoint
    against its primal and Devito's hand-written adjoint, build and compile times."""
    body = []
    for (name, title), dims in ((STAGGERED, '2D'), (STAGGERED_3D, '3D')):
        r, table_rows = ratios(name), rows(name, title)
        for group in dict.fromkeys(g for g, _ in r):
            primal, derived = table_rows[f'{group} primal'], table_rows[
                f'{group} derived adjoint']
            devito = r.get((group, "derived adjoint / Devito's adjoint"),
                           '(Devito has none)')
            body.append((f'{group} ({dims})', r[(group, 'derived adjoint / primal')],
                         devito, f"{primal['build (s)']} / {derived['build (s)']}",
                         f"{primal['JIT compile (s)']} / {derived['JIT compile (s)']}",
                         f"{primal['fields (MB)']} / {derived['fields (MB)']}"))
    return table(['physics', 'derived adjoint / primal',
                  "derived adjoint / Devito's adjoint", 'build (s), primal / derived',
                  'JIT compile (s), primal / derived', 'fields (MB), primal / derived'],
                 body)


def physics_hand_written():
    r = rows('results_physics.md', PHYSICS)
    return (f"the same adjoint written by hand runs at "
            f"{r['variable density hand-written adjoint']['x primal']}x the primal, the "
            f"derived one at {r['variable density derived adjoint']['x primal']}x")


def scatter():
    r, r3, paper = ratios('results.md'), ratios('results_3d.md'), ratios(
        'results_paper.md')
    key = 'scatter / derived adjoint'
    body = [('2D acoustic', r[('ratios', key)],
             '`python benchmarks/run.py --problem 2d 3d`'),
            ('3D acoustic', r3[('ratios', key)], 'same')]
    for i, group in enumerate(('1D wave', '3D wave', '1D Burgers')):
        body.append((f'{group} (paper)', paper[(group, key)],
                     '`python benchmarks/run.py --problem paper`' if i == 0 else 'same'))
    return table(['problem', 'scatter / gather', 'command'], body)


def paper():
    r, q = rows('results_paper.md', 'paper PerforAD paper stencils'), ratios(
        'results_paper.md')

    def s(op):
        return f"{r[op]['2 thr (s)']} s" if op in r else '-'

    body = []
    for group, label, adjoint, own in [
            ('1D wave', '1D wave', '1D wave derived adjoint', 'derived adjoint'),
            ('3D wave', '3D wave', '3D wave derived adjoint', 'derived adjoint'),
            ('1D Burgers', '1D Burgers (buffered adjoint)', '1D Burgers derived adjoint',
             'derived adjoint'),
            ('1D Burgers', '1D Burgers, seeds at every level (saved adjoint)',
             '1D Burgers derived adjoint, seeds at every level',
             'derived adjoint with seeds at every level')]:
        contiguous = f'{group} primal, contiguous chunks'
        devito = q[(group, f'{own} / primal')]
        like = q.get((group, f'{own} / primal with contiguous chunks'))
        if like is None and contiguous in r:
            medians = float(r[adjoint]['2 thr (s)']) / float(r[contiguous]['2 thr (s)'])
            like = f'{medians:.2f} (ratio of the medians)'
        body.append((label, s(f'{group} primal'), s(contiguous), s(adjoint), devito,
                     like or devito))
    return table(['stencil', 'primal (Devito)', 'primal, contiguous chunks',
                  'derived adjoint', 'x primal (Devito)', 'x primal, like for like'],
                 body)


def compile_times():
    s = sections('compile.md')

    def x(title, op):
        header, body = s[title]
        found = [b for b in body if b[0] == op]
        return found[0][header.index('x primal')] if found else '-'

    body = [(label, *(x(title, f'{prefix}{op}') for op in (
                'derived adjoint', 'scatter adjoint', 'derived gradient',
                "Devito's adjoint", "Devito's gradient")))
            for label, title, prefix in PROBLEMS]
    return table(['problem', 'derived adjoint', 'scatter adjoint', 'derived gradient',
                  "Devito's adjoint", "Devito's gradient"], body)


def _derived_and_primal(column, unit, places):
    """``column`` of the 2D and 3D acoustic derived adjoint against the primal."""
    r2, r3 = rows('results.md', '2d acoustic'), rows('results_3d.md', '3d acoustic')
    return (f"{r2['derived adjoint'][column]} {unit}{places[0]} against "
            f"{r2['primal'][column]} {unit}{places[1]}, and "
            f"{r3['derived adjoint'][column]} {unit} against "
            f"{r3['primal'][column]} {unit} in 3D")


def build_times():
    return _derived_and_primal('build (s)', 's', (' for the 2D derived adjoint',
                                                  ' for the primal'))


def loops():
    s = sections('loops.md')

    def count(title, op):
        header, body = s[title]
        i, lanes = header.index('instructions / iteration'), header.index('lanes')
        found, current = [], None
        for b in body:
            current = b[0] or current
            if current == op:
                found.append(b)
        if not found:
            return '-'
        width = {b[lanes] for b in found}
        text = ' + '.join(b[i] for b in found)
        return text if width != {'1'} else f'{text}, scalar'

    body = [(label, *(count(title, f'{prefix}{op}') for op in (
                'primal', 'primal, contiguous chunks', 'derived adjoint',
                "Devito's adjoint", 'derived gradient', "Devito's gradient")))
            for label, title, prefix in PROBLEMS]
    return table(['problem', 'primal', 'primal, contiguous chunks', 'derived adjoint',
                  "Devito's adjoint", 'derived gradient', "Devito's gradient"], body)


def memory():
    """Extra resident memory during a run, per operator, at the most threads run."""
    body = []
    for name, title, label in [
            ('results.md', '2d acoustic', '2D acoustic'),
            ('results_3d.md', '3d acoustic', '3D acoustic'),
            ('results_paper.md', 'paper PerforAD paper stencils', ''),
            ('results_physics.md', PHYSICS, ''),
            ('results_physics_gradient.md',
             "physics-gradient gradients of Devito's examples.seismic propagators",
             'saved wavefields:')]:
        for op, r in rows(name, title).items():
            extra = r.get('extra RSS, 2 thr (MB)')
            body.append((f'{label} {op}'.strip(), r['fields (MB)'], extra))
    return table(['operator', 'fields (MB)', 'extra RSS, 2 threads (MB)'], body)


def fields():
    return _derived_and_primal('fields (MB)', 'MB', ('', ' in 2D'))


def checkpointing():
    header, body = sections('checkpointing.md')[next(iter(sections('checkpointing.md')))]
    return table(header, body)


def burgers_floor():
    text = (RESULTS / 'burgers_floor.txt').read_text()
    hand = re.search(r'hand-written adjoint \(interior\): (\S+) s, (\S+) the primal',
                     text)
    derived = re.search(r'\nderived adjoint: (\S+) s, (\S+) the primal', text)
    return (f"times it at {hand.group(1)} s and the derived adjoint at "
            f"{derived.group(1)} s, {hand.group(2)} and {derived.group(2)} the primal "
            "with contiguous chunks")


def gpu():
    text = (RESULTS / 'gpu_check.log').read_text()
    body = []
    for block in re.split(r'\n== ', text)[1:]:
        # the dtype is named where it is not gpu_gradient.py's default, float32
        head = re.match(r'[^\n]*?(\d+) x (\d+)(?:, (float\d+))?', block)
        cpu = re.search(r'CPU: primal (\S+) s, derived adjoint with gradient (\S+) s',
                        block)
        gpu = re.search(r'GPU: primal (\S+) s, derived adjoint with gradient (\S+) s '
                        r'\((\S+)\)', block)
        diff = re.search(r'relative difference (\S+)', block)
        if head and cpu and gpu and diff:
            body.append((f'{head.group(1)} x {head.group(2)}', head.group(3) or 'float32',
                         diff.group(1),
                         f'{gpu.group(1)} s, {gpu.group(2)} s ({gpu.group(3)})',
                         f'{cpu.group(1)} s, {cpu.group(2)} s'))
    return table(['physical grid', 'dtype', 'GPU gradient vs CPU gradient',
                  'GPU: primal, adjoint + gradient', 'CPU: primal, adjoint + gradient'],
                 body)


BLOCKS = {f.__name__: f for f in (acoustic_2d, acoustic_3d, physics, staggered,
                                  physics_hand_written,
                                  scatter, paper, compile_times, build_times, loops,
                                  memory, fields, checkpointing, burgers_floor, gpu)}


def render(text=None):
    """``performance.md`` with every generated block made anew."""
    text = OUTPUT.read_text() if text is None else text

    def block(m):
        key, newline = m.group(1), m.group(2)   # a block on lines of its own, or inline
        return (f'<!-- generated: {key} -->{newline}{BLOCKS[key]()}{newline}'
                '<!-- end generated -->')

    return BLOCK.sub(block, text)


def main():
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")


if __name__ == '__main__':
    sys.exit(main())
