"""Temporaries: a ``Function`` written inside the time loop is a time level.

``Eq(r, u.dx2)`` inside the loop overwrites ``r`` at every step; the statements after
it read this step's value, those before it the previous step's (the first step reads
``r`` as it was before the run). That is a buffered ``TimeFunction`` of two levels,
written at the counter's level ``0``: :func:`timed` rewrites the program's loop
statements on an internal ``r_t`` (the writes at level 0, the reads after the first
write at level 0 and those before it at level ``-1``), so that the level model, the
rules and the passes treat it as any other field. Its adjoint is internal too; the
user's adjoint of ``r`` holds, as for any field, the seed of the value the run leaves
in ``r`` on entry and the adjoint of the value it found on return
(:func:`devito_perforad.emit.layout.temporary_slots` moves them).

Examples
--------
>>> from devito import Eq, Function, Grid, TimeFunction
>>> from devito_perforad.ir.access import analyse
>>> from devito_perforad.ir.names import naming
>>> grid = Grid(shape=(8,))
>>> u = TimeFunction(name='u', grid=grid, space_order=2)
>>> r = Function(name='r', grid=grid, space_order=2)
>>> program = analyse([Eq(u.forward, u + r), Eq(r, u.forward.dx)])
>>> with naming():
...     rewritten, temporaries = timed(program)
>>> [f'{s.write.expr} <- {s.rhs}' for s in rewritten]
... # doctest: +NORMALIZE_WHITESPACE
['u(t + dt, x) <- r_t0(t - dt, x) + u(t, x)',
 'r_t0(t, x) <- -u(t + dt, x)/h_x + u(t + dt, x + h_x)/h_x']
"""

from dataclasses import replace

from devito import Function, TimeFunction

from .access import Access, at_offsets
from .names import current

__all__ = ['timed']


def timed(program, first=0):
    """``program`` with each ``Function`` its loop statements write made a time level.

    Parameters
    ----------
    program : list of Statement
    first : int, optional
        The index of the first loop statement (those before run once, before the
        loop: :func:`~devito_perforad.levels.prologue`).

    Returns
    -------
    program : list of Statement
    temporaries : dict
        Each internal TimeFunction -> the user's ``Function`` it stands for.
    """
    loop = program[first:]
    written = [s.write.field for s in loop if s.write.time is None
               and not isinstance(s.write.field, TimeFunction)
               and isinstance(s.write.field, Function)]
    if not written:
        return list(program), {}
    fields = {}
    for r in dict.fromkeys(written):
        fields[r] = TimeFunction(
            name=current().name(f'{r.name}_t', ('temporary', r.name)), grid=r.grid,
            space_order=r.space_order, staggered=r.staggered, dtype=r.dtype,
            time_order=1)
    out, done = list(program[:first]), set()
    for stmt in loop:
        level = {r: 0 if r in done else -1 for r in fields}
        stmt = _reading(stmt, fields, level)
        if stmt.write.field in fields:
            r = stmt.write.field
            w = at_offsets(fields[r], time=0)
            stmt = replace(stmt, write=Access(w, fields[r], 0, stmt.write.space))
            done.add(r)
        out.append(stmt)
    return out, {t: r for r, t in fields.items()}


def _reading(stmt, fields, level):
    """``stmt`` reading each temporary at the level it holds there."""
    touched = [a for a in stmt.reads if a.field in fields]
    if not touched:
        return stmt
    subs, reads = {}, []
    for a in stmt.reads:
        if a.field in fields:
            new = at_offsets(fields[a.field], time=level[a.field], space=a.space)
            subs[a.expr] = new
            a = Access(new, fields[a.field], level[a.field], a.space)
        reads.append(a)
    rhs = stmt.rhs.xreplace(subs)
    if stmt.compositions:   # reversed flat: the compositions name the user's fields
        return replace(stmt, rhs=rhs, reads=tuple(reads), lifted=rhs, compositions=())
    return replace(stmt, rhs=rhs, reads=tuple(reads),
                   lifted=stmt.lifted.xreplace(subs) if stmt.lifted is not None
                   else None)
