"""A buffered adjoint wider than the primal's buffer: its seeds and results laid out as
the primal's.

Some adjoints touch more time levels in one step than the primal keeps (a field read
at the new level of another, read in turn a level lower): their adjoint is a
``TimeFunction`` with ``save=Buffer(n)``, ``n`` more than the primal's ``nb`` slots
(:func:`~devito_perforad.fields.adjoint_functions` sizes it). The derived loop keeps
level ``L`` in slot ``L mod n``; the user, like the primal, in slot ``L mod nb``. The
convention (:mod:`devito_perforad.derive`) stays the primal's: on entry, the first
``nb`` slots hold the seeds of the primal's final buffer; on return, the adjoints of
its initial buffer. Before the loop the seeds move to the loop's slots and the other
slots are cleared (the levels they stand for were overwritten in the primal: no
seed); after it, the results move back. Each move goes through temporaries, once per
run, at the edges of the whole run, and writes in a loop nest of its own.
"""

import sympy
from devito import Eq, Function

from ..fields import buffer_size, is_saved
from ..ir.names import current
from ..passes.core_shell import Box
from ..region import run_edge
from ..schedule import edge_only

__all__ = ['primal_slots', 'temporary_slots']


def primal_slots(adjoints, top, time, edge):
    """The equations that move the seeds (``edge='top'``) or the results
    (``'bottom'``) of each wider buffered adjoint between the primal's layout and the
    loop's.

    Parameters
    ----------
    adjoints : dict
        Active field -> adjoint field.
    top : dict
        Field -> the highest level the program writes, relative to the counter.
    time : devito.TimeDimension
    edge : {'top', 'bottom'}

    Returns
    -------
    list of devito.Eq
    """
    value, holds = run_edge(time, edge)
    eqs = []
    for f, fb in adjoints.items():
        if f not in top or is_saved(fb) or not hasattr(fb, 'save'):
            continue
        n, nb = buffer_size(fb), f.time_order + 1 if is_saved(f) else buffer_size(f)
        if n <= nb:
            continue
        if edge == 'top':    # the final levels, from the primal's slots to the loop's
            levels = range(top[f] - nb + 1, top[f] + 1)
            slots = range(top[f] - n + 1, top[f] + 1)
            source, target = nb, n
        else:                # the initial levels, back
            levels = slots = range(top[f] - nb, top[f])
            source, target = n, nb
        held = {}
        for level in levels:
            tmp = Function(name=current().name(f'{fb.name}_slot', 'temporary'),
                           grid=fb.grid, space_order=0, dtype=fb.dtype)
            eqs.append(Eq(tmp, _slot(fb, value + level, source)))
            held[level] = tmp
        whole = _whole(fb.grid)
        for level in slots:
            eqs.append(Eq(_slot(fb, value + level, target), held.get(level, 0),
                          subdomain=whole))
    return [edge_only(eq, holds) for eq in eqs]


def temporary_slots(temporaries, adjoints, program, time, edge):
    """The equations that move the seed (``edge='top'``) or the result (``'bottom'``)
    of each ``Function`` written in the loop between the user's adjoint and the
    internal one of its time level (:mod:`~devito_perforad.ir.temporaries`).

    At the top, the seed of the value the run leaves in ``r`` is that of the level
    the last step writes; the other slots are cleared. At the bottom, the user's
    adjoint gets that of the level before the first step, where the first step read
    it before writing it, and zero otherwise: the run overwrote that value unread.

    Parameters
    ----------
    temporaries : dict
        Internal TimeFunction -> the user's ``Function``.
    adjoints : dict
        Field -> adjoint field, both of these included.
    program : list of Statement
        The loop's statements, the temporaries' levels in place of the ``Function``s.
    time : devito.TimeDimension
    edge : {'top', 'bottom'}

    Returns
    -------
    list of devito.Eq
    """
    value, holds = run_edge(time, edge)
    before = {a.field for s in program for a in s.reads if a.time == -1}
    eqs = []
    for t, r in temporaries.items():
        tb, rb = adjoints[t], adjoints[r]
        n = buffer_size(tb)
        if edge == 'top':
            whole = _whole(tb.grid)
            eqs += [Eq(_slot(tb, value - k, n), rb if k == 0 else 0, subdomain=whole)
                    for k in range(n)]
        else:
            eqs.append(Eq(rb, _slot(tb, value - 1, n) if t in before else 0))
    return [edge_only(eq, holds) for eq in eqs]


def _whole(grid):
    """The whole domain as a SubDomain of its own: the moves into the slots run in a
    loop nest of their own, after every equation that reads the buffer. (In one loop
    with an equation reading a slot at a neighbour, a move into the slot the same
    level has in the other layout would overwrite the neighbour first: Devito cannot
    tell that ``(t + 1) % 3`` and ``(t + 1) % 4`` may be the same slot.)"""
    names = current()
    return names.memo(('whole', grid), lambda: Box(
        f'whole{names.number("box")}', [('middle', 0, 0)] * grid.dim, grid))


def _slot(fb, level, size):
    """``fb`` at the slot that holds ``level`` in a buffer of ``size`` slots."""
    step = next(d for d in fb.dimensions if d.is_Time)
    return fb.subs(step, sympy.Mod(level, size))
