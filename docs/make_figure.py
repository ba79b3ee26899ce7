"""Draw ``docs/scatter_gather.png``: scatter vs gather adjoints on a 1D grid.

Three panels for the three-point stencil ``w[i] = F(u[i-1], u[i], u[i+1])``:

1. scatter (textbook reverse mode): each primal point ``i`` adds into the three points
   it read; two threads running neighbouring ``i`` write the same ``ub`` entries;
2. gather (offset reversal): each adjoint point ``j`` reads the seeds of the three
   primal points that read it and writes only itself;
3. boundaries: at the edge of the domain, the term that would come from a halo point
   is guarded off; the guarded version runs only on thin shells, the core runs bare.

Run from anywhere (needs matplotlib)::

    python docs/make_figure.py
"""

from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / 'scatter_gather.png'

TOP, BOTTOM = 1.0, 0.0          # rows: seeds wb (top) and adjoints ub (bottom)
COLOURS = ('tab:blue', 'tab:orange')


def _row(ax, xs, y, label, halo=()):
    for x in xs:
        grey = x in halo
        ax.add_patch(_circle(x, y, 'white' if not grey else '0.85', '0.5' if grey
                             else 'k'))
    ax.text(min(xs) - 0.9, y, label, ha='right', va='center', fontsize=10)


def _circle(x, y, face, edge):
    from matplotlib.patches import Circle
    return Circle((x, y), 0.16, facecolor=face, edgecolor=edge, lw=1.2, zorder=3)


def _arrow(ax, x0, y0, x1, y1, colour, style='-', lw=1.6):
    ax.annotate('', xy=(x1, y1 + (0.2 if y1 < y0 else -0.2)),
                xytext=(x0, y0 + (-0.2 if y1 < y0 else 0.2)),
                arrowprops=dict(arrowstyle='-|>', color=colour, lw=lw, ls=style,
                                shrinkA=0, shrinkB=0), zorder=2)


def _frame(ax, title, xs):
    ax.set_xlim(min(xs) - 3.2, max(xs) + 4.6)
    ax.set_ylim(-0.7, 1.5)
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title(title, loc='left', fontsize=11)


def scatter_panel(ax):
    xs = list(range(-3, 5))
    _row(ax, xs, TOP, 'seed wb')
    _row(ax, xs, BOTTOM, 'adjoint ub')
    for colour, i in zip(COLOURS, (0, 1), strict=True):
        ax.add_patch(_circle(i, TOP, colour, 'k'))
        for o in (-1, 0, 1):
            _arrow(ax, i, TOP, i + o, BOTTOM, colour)
        ax.text(i, TOP + 0.3, f'i = {i}', ha='center', fontsize=9, color=colour)
    for j in (0, 1):
        ax.text(j, BOTTOM - 0.42, 'race', ha='center', fontsize=9, color='tab:red',
                fontweight='bold')
    ax.text(max(xs) + 0.6, 0.5, 'ub[i + o] += F_o(i) * wb[i]\n'
            'each point writes 3 others:\nconflicting writes, atomics',
            fontsize=9, va='center')
    _frame(ax, '1. Scatter (textbook reverse mode): iteration i writes its neighbours',
           xs)


def gather_panel(ax):
    xs = list(range(-3, 5))
    _row(ax, xs, TOP, 'seed wb')
    _row(ax, xs, BOTTOM, 'adjoint ub')
    for colour, j in zip(COLOURS, (0, 1), strict=True):
        ax.add_patch(_circle(j, BOTTOM, colour, 'k'))
        for o in (-1, 0, 1):
            _arrow(ax, j - o, TOP, j, BOTTOM, colour)
        ax.text(j, BOTTOM - 0.42, f'j = {j}', ha='center', fontsize=9, color=colour)
    ax.text(max(xs) + 0.6, 0.5, 'ub[j] += F_o(j - o) * wb[j - o]\n'
            'each point writes only itself:\nthe primal\'s access pattern',
            fontsize=9, va='center')
    _frame(ax, '2. Gather (offset reversal): iteration j reads its neighbours', xs)


def boundary_panel(ax):
    from matplotlib.patches import Rectangle
    xs = list(range(-2, 6))
    halo = (-2, -1)
    _row(ax, xs, TOP, 'seed wb', halo=halo)
    _row(ax, xs, BOTTOM, 'adjoint ub', halo=halo)
    ax.add_patch(Rectangle((-0.4, -0.55), 0.8, 2.0, color='tab:purple', alpha=0.12,
                           zorder=0))
    ax.add_patch(Rectangle((0.6, -0.55), 5.0, 2.0, color='tab:green', alpha=0.10,
                           zorder=0))
    ax.text(0, 1.3, 'shell', ha='center', fontsize=9, color='tab:purple')
    ax.text(3.1, 1.3, 'core: every term valid, runs bare', ha='center', fontsize=9,
            color='tab:green')
    ax.text(-1.5, 1.3, 'halo', ha='center', fontsize=9, color='0.4')
    for o in (0, 1):
        _arrow(ax, -o, TOP, 0, BOTTOM, 'tab:purple', style='-' if o == 0 else ':')
    _arrow(ax, 1, TOP, 0, BOTTOM, 'tab:purple')
    ax.text(-1.15, 0.5, '×', color='tab:red', fontsize=18, ha='center', va='center')
    ax.text(max(xs) + 0.6, 0.5, 'shell: the term from x - 1 is\n'
            '(x - 1 >= x_m) ? ... : 0, so no\n'
            'coefficient is read in the halo\n'
            '(where 1/m would be inf)', fontsize=9,
            va='center', color='tab:purple')
    for o in (-1, 0, 1):
        _arrow(ax, 3 - o, TOP, 3, BOTTOM, 'tab:green')
    _frame(ax, '3. Boundaries: a term whose source lies outside the primal\'s region '
               'is guarded off', xs)


def draw(path=OUTPUT):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 6.6))
    scatter_panel(axes[0])
    gather_panel(axes[1])
    boundary_panel(axes[2])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == '__main__':
    print(f'wrote {draw()}')
