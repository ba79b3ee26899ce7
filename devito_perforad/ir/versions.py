"""Several writes to one level: each value a level holds within a step, its own field.

A step may write a level more than once: an ``Eq``, then an ``Inc``, an injection or
another ``Eq`` into the same level, with statements in between that read it. Program
order is the meaning: a read between two writes sees the value between them. The
adjoint must then hold the seed of that intermediate value apart from the seed of the
final one.

:func:`versioned` rewrites the analysed program so that every level is assigned once
per step, as the level model (:class:`~devito_perforad.levels.Levels`) and the rules
expect. A run of writes with no read between them stays as it is (``Eq`` then
``Inc``s). Where a write follows a read of the level, or is a second ``Eq``, the
writes before it go to a *version*: an internal field of the same kind, read by the
statements in between. The later write starts from the version:

* an ``Inc`` or injection: ``f = v`` (a copy), then the increment into ``f``;
* an ``Eq`` on the whole domain: as written (the version is not read past it);
* an ``Eq`` on a SubDomain: ``f = v``, then ``f += R - v`` on the SubDomain.

The user's field keeps the last value, the one later steps and the seeds see. Each
version gets an internal adjoint: the seed of the intermediate value, zero at the
start of every run, a temporary like those of the factoring pass. A version no
statement reads (an ``Eq`` overwritten before any read) is dropped with its writes.

Examples
--------
>>> from devito import Eq, Grid, Inc, TimeFunction
>>> from devito_perforad.ir.access import analyse
>>> from devito_perforad.ir.names import naming
>>> grid = Grid(shape=(8,))
>>> f, g = (TimeFunction(name=n, grid=grid, space_order=2) for n in 'fg')
>>> program = analyse([Eq(f.forward, f + 1), Eq(g.forward, f.forward.dx),
...                    Inc(f.forward, g)])
>>> with naming():
...     rewritten, versions = versioned(program)
>>> [f'{s.write.expr} <- {s.rhs}' for s in rewritten]
... # doctest: +NORMALIZE_WHITESPACE
['f_v0(t + dt, x) <- f(t, x) + 1',
 'g(t + dt, x) <- -f_v0(t + dt, x)/h_x + f_v0(t + dt, x + h_x)/h_x',
 'f(t + dt, x) <- f_v0(t + dt, x)',
 'f(t + dt, x) <- g(t, x)']
>>> {v.name: f.name for v, f in versions.items()}
{'f_v0': 'f'}
"""

from collections import defaultdict
from dataclasses import replace

import sympy
from devito import Function, TimeFunction
from devito.symbolics import retrieve_functions

from ..errors import located
from ..region import space_conditions
from .access import Access, at_offsets, space_offsets
from .names import current
from .symbolic import Select, shift

__all__ = ['versioned', 'values', 'recomputed']


def versioned(program):
    """``program`` with every level assigned once per step (see the module).

    Parameters
    ----------
    program : list of Statement
        Checked by :func:`~devito_perforad.checks.check_program`.

    Returns
    -------
    program : list of Statement
        The rewritten program; the statements themselves where nothing is written
        twice.
    versions : dict
        Each version field -> the user's field whose intermediate value it holds.

    Raises
    ------
    AdjointError
        If a level read between two writes was first assigned on a SubDomain only:
        outside it, the value read is whatever the level held before the step.
    """
    starts = _segments(program)
    if not any(len(s) > 1 for s in starts.values()):
        return list(program), {}
    fields = {key: [_version(key[0]) for _ in s[:-1]] + [key[0]]
              for key, s in starts.items()}
    holder = {}   # (field, level) -> the field holding its value now
    out = []
    for i, stmt in enumerate(program):
        key = _key(stmt.write)
        stmt = _reading(stmt, holder)
        segments = starts.get(key, [])
        if i in segments:
            k = segments.index(i)
            target = fields[key][k]
            if k == 0:
                out.append(_writing(stmt, target))
                if len(segments) > 1 and stmt.subdomain is not None:
                    raise located(stmt.eq, stmt.write.field,
                                  f"`{stmt.write.expr}` is read before its next write "
                                  "in the step, but assigned on a SubDomain only: "
                                  "outside it the value read is what the level held "
                                  "before the step. Assign it on the whole domain "
                                  "first.")
            else:
                out += _after(stmt, holder[key], target)
            holder[key] = target
        elif key in holder:
            out.append(_writing(stmt, holder[key]))
        else:
            out.append(stmt)
    out = _live(out, set(f for key, fs in fields.items() for f in fs[:-1]))
    versions = {f: key[0] for key, fs in fields.items() for f in fs[:-1]
                if any(s.write.field is f for s in out)}
    return out, versions


def _key(access):
    return (access.field, access.time)


def _segments(program):
    """Per written level, the statements that start a run of writes: the first
    write, and every later one that follows a read of the level (its own right-hand
    side included) or assigns it (``Eq``)."""
    starts, read = defaultdict(list), {}
    for i, stmt in enumerate(program):
        for a in stmt.reads:
            if _key(a) in read:
                read[_key(a)] = True
        key = _key(stmt.write)
        if key not in read or read[key] or stmt.kind == 'update':
            starts[key].append(i)
        read[key] = False
    return starts


def _version(field):
    """An internal field like ``field`` to hold one of its intermediate values."""
    name = current().name(f'{field.name}_v', ('version', field.name))
    kwargs = dict(name=name, grid=field.grid, space_order=field.space_order,
                  staggered=field.staggered, dtype=field.dtype)
    if isinstance(field, TimeFunction):
        return TimeFunction(time_order=field.time_order, **kwargs)
    return Function(**kwargs)


def _renamed(expr, holder):
    """``expr`` with each access to a level held by a version read from the version."""
    subs = {}
    for app in retrieve_functions(expr, mode='unique'):
        a = _access(app)
        if a is not None and holder.get(_key(a), a.field) is not a.field:
            subs[app] = at_offsets(holder[_key(a)], time=a.time, space=a.space)
    return expr.xreplace(subs) if subs else expr


def _access(app):
    from .access import access_of
    try:
        return access_of(app)
    except Exception:   # an index that is no field access (a sparse coordinate)
        return None


def _reading(stmt, holder):
    """``stmt`` reading each level from the field that holds it at this point."""
    touched = [a for a in stmt.reads if holder.get(_key(a), a.field) is not a.field]
    if not touched:
        return stmt
    reads = tuple(Access(at_offsets(holder[_key(a)], time=a.time, space=a.space),
                         holder[_key(a)], a.time, a.space)
                  if a in touched else a for a in stmt.reads)
    rhs = _renamed(stmt.rhs, holder)
    if stmt.compositions:   # reversed flat: the compositions name the user's fields
        return replace(stmt, rhs=rhs, reads=reads, lifted=rhs, compositions=())
    return replace(stmt, rhs=rhs, reads=reads,
                   lifted=_renamed(stmt.lifted, holder) if stmt.lifted is not None
                   else None)


def _writing(stmt, target):
    """``stmt`` writing ``target`` in place of its own field."""
    if target is stmt.write.field:
        return stmt
    w = stmt.write
    return replace(stmt, write=_at(target, w))


def _at(field, access):
    """``access`` moved to ``field`` (a version: buffered, indexed by the stepping
    dimension, where the user's field may be saved)."""
    return Access(at_offsets(field, time=access.time, space=access.space), field,
                  access.time, access.space)


def _after(stmt, previous, target):
    """The statements of a write that starts from the value ``previous`` holds."""
    if stmt.kind == 'update' and stmt.subdomain is None:
        return [_writing(stmt, target)]
    w = stmt.write
    held = at_offsets(previous, time=w.time)
    copy = replace(stmt, write=_at(target, w),
                   rhs=held, reads=(Access(held, previous, w.time, w.space),),
                   increment=False, subdomain=None, kind='update', sparse=None,
                   lifted=held, compositions=())
    if stmt.kind != 'update':
        return [copy, _writing(stmt, target)]
    rhs = stmt.rhs - held
    reads = stmt.reads + tuple(a for a in [Access(held, previous, w.time, w.space)]
                               if all(r.expr != held for r in stmt.reads))
    return [copy, replace(_writing(stmt, target), rhs=rhs, reads=reads,
                          increment=True, kind='increment',
                          lifted=(stmt.lifted - held) if stmt.lifted is not None
                          else None)]


def _live(program, versions):
    """``program`` without the writes of versions no statement reads."""
    while True:
        read = {a.field for s in program for a in s.reads}
        dead = [s for s in program if s.write.field in versions
                and s.write.field not in read]
        if not dead:
            return program
        program = [s for s in program if not any(s is d for d in dead)]


def values(program, versions):
    """Each version's value as an expression of the values the primal keeps.

    A nonlinear partial may read a level's value between two writes, which the primal
    overwrites within the step. It is recomputed in one of two ways:

    * forward, where the version's writes are dense and on the whole domain (an
      ``Eq``, then increments; or a copy of the version before, then increments): the
      sum of their right-hand sides;
    * backward, where the writes after it are (a copy of it, then dense increments on
      the whole domain): the value the level holds next, minus those increments.

    The values read fields the primal keeps or other versions, which
    :func:`recomputed` substitutes in turn.

    Parameters
    ----------
    program : list of Statement
        The program :func:`versioned` rewrote.
    versions : dict
        Its versions (version -> the user's field).

    Returns
    -------
    dict
        Each version that can be recomputed -> ``(write, value, field)``: its write
        access, the value at that access, and the user's field it is a value of.
    """
    writes = defaultdict(list)
    for s in program:
        writes[s.write.field].append(s)
    forward = {}
    for v in versions:   # in program order: a copy reads an earlier version
        ws = writes[v]
        if ws and ws[0].kind == 'update' and all(_dense(s, ws[0]) for s in ws) \
                and all(a.field in forward or a.field not in versions
                        for s in ws for a in s.reads):
            forward[v] = (ws[0].write, sum((s.rhs for s in ws), sympy.S.Zero),
                          versions[v])
    backward = {}
    for v in reversed(list(versions)):
        if v in forward:
            continue
        after = [s for s in program if s.write.field is not v
                 and any(a.field is v for a in s.reads) and s.kind == 'update'
                 and s.rhs == at_offsets(v, time=s.write.time)]
        if len(after) != 1:
            continue
        copy = after[0]
        nxt = copy.write.field
        ws = writes[nxt]
        if ws[0] is not copy or not all(_dense(s, copy) for s in ws) \
                or (nxt in versions and nxt not in backward):
            continue
        backward[v] = (copy.write, copy.write.expr
                       - sum((s.rhs for s in ws[1:]), sympy.S.Zero), versions[v])
    return {**forward, **backward}


def _dense(stmt, first):
    """Whether ``stmt`` writes densely, on the whole domain, where ``first`` does."""
    return (stmt.is_dense and stmt.subdomain is None
            and stmt.write.time == first.write.time
            and stmt.write.space == first.write.space)


def recomputed(expr, values):
    """``expr`` with each read of a version in ``values`` replaced by its value (see
    :func:`values`), until no such read is left. A read left (values defined through
    each other) makes :func:`~devito_perforad.checks.check_overwritten` refuse.

    Examples
    --------
    >>> from devito import Eq, Grid, Inc, TimeFunction
    >>> from devito_perforad.ir.access import analyse
    >>> from devito_perforad.ir.names import naming
    >>> grid = Grid(shape=(8,))
    >>> f, g = (TimeFunction(name=n, grid=grid, space_order=2, save=4) for n in 'fg')
    >>> with naming():
    ...     program, versions = versioned(analyse([
    ...         Eq(f.forward, 2*f), Eq(g.forward, f.forward**2), Inc(f.forward, g)]))
    ...     v = program[0].write.expr
    ...     recomputed(2*v, values(program, versions))
    4*f(time, x)
    """
    for _ in range(len(values)):   # each round, one version deeper; no cycle
        subs = {}
        for app in retrieve_functions(expr, mode='unique'):
            if app.function not in values:
                continue
            write, value, field = values[app.function]
            moved = _moved(app, write)
            value = shift(value, time=moved.pop('time', 0), space=moved)
            # the primal writes the domain only: in the halo, the level holds what
            # the user's field holds there
            inside = space_conditions(field.grid, None, space_offsets(app))
            held = _access(app)
            subs[app] = Select(sympy.And(*inside), value,
                               at_offsets(field, time=held.time, space=held.space)) \
                if inside else value
        if not subs:
            break
        expr = expr.xreplace(subs)
    return expr


def _moved(app, write):
    """How far ``app`` lies from ``write``, an access to the same level (of a version
    or the field it holds a value of): whole steps (``'time'``) and grid points per
    space dimension."""
    a = _access(app)
    out = {'time': a.time - write.time} if a.time != write.time else {}
    dims = a.field.space_dimensions
    out.update({d: k - k0 for d, k, k0 in zip(dims, a.space, write.space, strict=True)
                if k != k0})
    return out
