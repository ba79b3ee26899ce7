"""Pass: move a gradient term's time offsets from the saved field onto the adjoint.

The gradient sums ``c * u[t + k] * gb[t + j]`` over the counters ``t`` of the run
(``c`` time-invariant, ``u`` a saved primal field). Reversing the offset ``k`` gives
the same sum as ``c * u[t] * gb[t + j - k]`` over the shifted range: the loop reads
one level of the saved field, the current one, and the adjoint at several levels,
which its buffer holds anyway (:func:`time_reversed`). The wave equation's gradient
``(u[t+1] - 2 u[t] + u[t-1]) gb[t+1]`` thus reads ``u`` at one level instead of
three, as the hand-written gradient ``u * v.dt2`` does.
"""

import sympy
from devito import Eq, SparseFunction, TimeFunction
from devito.symbolics import retrieve_functions

from ..fields import buffer_size, is_saved
from ..ir.access import access_of, at_offsets
from ..ir.symbolic import Select
from ..region import run_range
from ..schedule import once

__all__ = ['shift_parameter_terms', 'time_reversed', 'edge_updates']


def shift_parameter_terms(updates, adjoints, levels):
    """Move the time offsets of the parameters' gathered terms where that reads fewer
    levels of the saved fields.

    Parameters
    ----------
    updates : dict
        ``(target, level, edge)`` -> contributions, in the order the updates are made.
    adjoints : dict
    levels : Levels

    Returns
    -------
    (dict, dict, list, list)
        The updates without the moved contributions; per parameter, the moved terms
        ``(conditions, expr)`` of the loop, an update made before the step overwrites
        an adjoint slot; and the ``(adjoint, expr)`` terms of the updates that run
        once, at the top and at the bottom of the run.
    """
    kept, early, top, bottom = {}, {}, [], []
    for key, contributions in updates.items():
        h = key[0]
        if isinstance(h, (TimeFunction, SparseFunction)):
            kept[key] = contributions
            continue
        kept[key] = []
        for c in contributions:
            g = c.statement.write.field
            moved = None
            if c.via is None and not c.conditions and not c.step:
                moved = time_reversed(c.coefficient, adjoints[g], levels.w[g],
                                      levels.low[g] < levels.w[g], levels.time)
            if moved is None:
                kept[key].append(c)
                continue
            early.setdefault(h, []).extend(moved[0])
            top += [(adjoints[h], e) for e in moved[1]]
            bottom += [(adjoints[h], e) for e in moved[2]]
    return kept, early, top, bottom


def time_reversed(expr, gb, w, below, time):
    """A parameter's gradient term with its time offsets moved onto the adjoint.

    The gradient sums ``c * u[t + k] * gb[t + j]`` over the counters ``t`` of the run
    ``[a, b]`` (``c`` time-invariant, ``u`` a saved primal field). Reversing the offset
    ``k`` (``t -> t - k``) gives the same sum as ``c * u[t] * gb[t + j - k]`` over
    ``[a + k, b + k]``: the loop reads one level of the saved field, the current one, and
    the adjoint at several levels, which its buffer holds anyway. Counters of the loop
    outside ``[a + k, b + k]`` are cut by a condition on the counter; the shifted range's
    counters outside the loop, ``b + 1 .. b + k`` (or ``a + k .. a - 1``), are updates
    that run once, at the top (or bottom) of the run. The wave equation's gradient
    ``(u[t+1] - 2 u[t] + u[t-1]) gb[t+1]`` thus reads ``u`` at one level instead of
    three, as the hand-written gradient ``u * v.dt2`` does.

    The loop update runs before the step overwrites a slot of ``gb``, so it may read
    levels ``w + 1`` (the lowest complete one) to ``w + nb`` (the slot about to be
    overwritten, still holding its old level). Returns ``(loop_terms, top, bottom)``:
    the loop's terms as ``(conditions, expr)``, and the expressions of the updates at
    the top and bottom edges; or ``None`` where ``expr`` has another form or needs a
    level the buffer does not hold.
    """
    if is_saved(gb):
        return None  # a saved adjoint has no level above the top one to read
    nb = buffer_size(gb)
    first, last = run_range(time)
    loop, top, bottom = [], [], []
    for part in sympy.Add.make_args(sympy.expand(expr)):
        apps = retrieve_functions(part)
        seeds = [a for a in apps if a.function is gb]
        primal = [a for a in apps if a.function is not gb and a.function.is_TimeFunction]
        if len(seeds) != 1 or len(primal) != 1 or not is_saved(primal[0].function):
            return None
        coeff, rest = part.as_independent(*seeds, *primal, as_Add=False)
        if sorted(sympy.Mul.make_args(rest), key=str) != sorted(
                [seeds[0], primal[0]], key=str) or any(
                a.function.is_TimeFunction for a in retrieve_functions(coeff)):
            return None
        s, p = access_of(seeds[0]), access_of(primal[0])
        if any(s.space) or any(p.space) or s.time is None or p.time is None:
            return None
        k, level = p.time, s.time - p.time
        if level < w + 1 or level > w + nb:
            return None
        u, g = at_offsets(p.field), _slot(gb, level, w, nb)
        if k > 0:
            if k + level >= w + nb:
                return None  # the top edges would read a slot that aliases two levels
            loop.append(_counter_factor(sympy.Ge(time, first + k)) * coeff * u * g)
            top += [coeff * at_offsets(p.field, time=i) * _slot(gb, level + i, w, nb)
                    for i in range(1, k + 1)]
        elif k < 0:
            if below or level + k < w:
                return None  # the bottom edges' levels are no longer in the buffer
            loop.append(_counter_factor(sympy.Le(time, last + k)) * coeff * u * g)
            bottom += [coeff * at_offsets(p.field, time=-i)
                       * at_offsets(gb, time=level - i) for i in range(1, -k + 1)]
        else:
            loop.append(coeff * u * g)
    return [([], term) for term in loop], top, bottom


def _slot(gb, level, w, nb):
    """``gb`` at ``level``; the slot the step overwrites, ``w + nb``, under the name of
    the level it is about to hold, ``w``: the same memory, and Devito then sees the
    access range of the primal's loop (``w + nb`` would shrink its default ``time_M``).
    """
    return at_offsets(gb, time=level - nb if level == w + nb else level)


def _counter_factor(condition):
    """1 where ``condition`` on the counter holds, else 0: the terms it multiplies
    read finite values (a saved field, an adjoint buffer), so a factor hoisted out of
    the space loops replaces a branch."""
    return Select(condition, sympy.S.One, sympy.S.Zero)


def edge_updates(terms, time, guard):
    """Parameter updates of :func:`_time_reversed` that run once, at an edge of the run.

    ``terms`` are ``(field, expr)`` pairs."""
    return [once(Eq(h, h + expr), time, guard) for h, expr in terms]
