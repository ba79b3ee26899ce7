"""The driver: walk the primal program backwards and sum each statement's adjoint
contributions per adjoint target.

For every statement, the rule of its kind (:data:`devito_perforad.rules.RULES`)
returns its contributions; the passes (:mod:`devito_perforad.passes`) rewrite them;
the form (:mod:`devito_perforad.emit.gather`, or :mod:`devito_perforad.emit.scatter`
for comparison) turns each adjoint update into equations.

* **time-free programs**: statements are reversed one by one; statement ``i``'s
  adjoint adds ``sum_o D(q - o) * yb(q - o)`` to each field it reads.
* **time loops**: the adjoint is a backward loop over the same counter range. Each
  active TimeFunction ``g`` gets one update per counter that writes the adjoint level
  ``gb[t + w]`` with every contribution to it, from all statements and all steps
  that read that level (:class:`~devito_perforad.levels.Levels`). The adjoint of
  ``u[t+1] = 2u[t] - u[t-1] + L(u[t])`` is thus the familiar
  ``ub[t-1] = ub[t-1] + 2ub[t] + L^T(ub[t]) - ub[t+1]``. The levels above ``t + w``
  that only the last primal steps read are gathered once, before the loop, by
  equations pinned at ``time_M``; levels below, if any, after it at ``time_m``.
  Time-invariant parameters accumulate ``mb += sum_o D(q - o) * yb(q - o)`` at every
  counter: a reduction over time only, one point per thread, so no races.

Adjoint convention (accumulate): on return every adjoint field holds its seed plus
the derivative gathered from everything the primal computed from it. For a field
level the primal overwrote, it holds the adjoint of the value written there. A
buffered adjoint TimeFunction holds, on entry, the seeds of the primal's final buffer
and, on return, the adjoints of the primal's initial buffer.
"""

import logging
from collections import defaultdict

import sympy
from devito import Eq, SparseFunction, TimeFunction
from devito.symbolics import retrieve_functions

from .checks import (
    check_buffers,
    check_halos,
    check_numbers,
    check_overwritten,
    check_primal_values,
    check_sparse_reads,
    check_time_free,
    check_window,
)
from .devito_compat import (
    accesses_as_written,
    guarded_reads_in_range,
    halo_exchange_over_time,
)
from .differentiate import partials
from .emit.gather import Gather
from .emit.layout import primal_slots, temporary_slots
from .emit.scatter import Scatter
from .emit.sparse import operation
from .errors import BufferSizeError
from .fields import adjoint_function, buffered
from .ir.access import access_of, at_offsets
from .ir.names import current, naming
from .ir.temporaries import timed
from .ir.versions import recomputed, values, versioned
from .levels import Levels, prologue, written_levels
from .passes.cancellation import cancel_parameter_terms
from .passes.factoring import factor
from .passes.scaling import rescale, scale_injections, scaled_seed
from .passes.through_write import through_saved_writes
from .passes.time_shift import edge_updates
from .region import guarded
from .rules import RULES
from .schedule import Step, Update, once, order, pin_sparse

__all__ = ['derive']

log = logging.getLogger('devito_perforad')

FORMS = {'gather': Gather(), 'scatter': Scatter()}


def derive(program, adjoints, mode='gather', checkpointed=False):
    """The adjoint equations of the analysed, checked ``program``.

    Parameters
    ----------
    program : list of Statement
        From :func:`~devito_perforad.checks.check_inputs`.
    adjoints : dict
        The active fields only, each to its adjoint.
    mode : {'gather', 'scatter'}, optional
        The form (:data:`FORMS`).
    checkpointed : bool, optional
        The primal's buffered fields are recomputed step by step
        (:class:`~devito_perforad.CheckpointedAdjoint`).

    Returns
    -------
    list of devito.Eq

    Raises
    ------
    AdjointError
        If the program cannot be reversed (see ``docs/troubleshooting.md``).
    """
    form = FORMS[mode]
    sizes = {}   # version name -> the Buffer(n) its adjoint needs
    while True:
        try:
            with naming():
                eqs = _derive(program, adjoints, form, checkpointed, sizes)
            break
        except BufferSizeError as e:
            internal = {f.name: n for f, n in e.sizes.items() if f not in adjoints}
            if not internal or all(sizes.get(k) == n for k, n in internal.items()):
                raise
            sizes.update(internal)
    for eq in eqs:  # for debugging; messages never show derived equations
        log.debug("derived adjoint equation: %s", eq)
    check_halos(eqs, adjoints)
    check_numbers(eqs, 'assembly')
    return guarded_reads_in_range(accesses_as_written(eqs), set(adjoints.values()))


def _derive(program, adjoints, form, checkpointed, sizes):
    """One derivation: the statements before the loop as a prologue, reversed after
    it (:func:`~devito_perforad.levels.prologue`); ``Function``s the loop writes as
    time levels (:mod:`~devito_perforad.ir.temporaries`); each level's values between
    writes as versions (:mod:`~devito_perforad.ir.versions`). Their adjoints are
    internal, buffered with ``Buffer(sizes[name])`` where the adjoint needs more than
    the default slots."""
    n = prologue(program)
    program, temporaries = timed(program, n)
    temporaries = {t: r for t, r in temporaries.items() if r in adjoints}
    program, versions = versioned(program)
    versions = {v: f for v, f in versions.items()
                if f in adjoints or f in temporaries}
    internal = {**versions, **temporaries}
    adjoints = {**adjoints, **{v: _internal_adjoint(v, sizes) for v in internal}}
    derivatives = _derivatives(adjoints, values(program, versions))
    active = [s for s in program if s.write.field in adjoints]
    check_overwritten(active, [derivatives(s) for s in active], versions, temporaries)
    if n == len(program):
        return _time_free(program, adjoints, form, versions, derivatives)
    eqs = _time_loop(program[n:], adjoints, form, checkpointed, versions, temporaries,
                     derivatives)
    if n:   # reversed after the loop, from the seeds the loop gathered
        written = {s.write.field for s in program[:n]}
        eqs += _time_free(program[:n], adjoints, form,
                          {v: f for v, f in versions.items() if v in written},
                          derivatives)
    return eqs


def _derivatives(adjoints, values):
    """The partials of a statement by the ``adjoints``' fields, each read of a
    level's value between two writes recomputed from the values the primal keeps
    (:func:`~devito_perforad.ir.versions.recomputed`)."""
    def of(stmt):
        return [(a, recomputed(d, values)) for a, d in partials(stmt, adjoints)]
    return of


def _internal_adjoint(v, sizes):
    """The adjoint of an internal field, a ``Buffer(n)`` where the derivation needs
    ``n`` slots."""
    vb = adjoint_function(v)
    return buffered(vb, sizes[v.name]) if v.name in sizes else vb


def _time_free(program, adjoints, form, versions, derivatives):
    """Reverse the statements one by one, from the last."""
    check_time_free(program)
    levels = Levels.of(program, versions=versions)
    grid = program[0].write.field.grid
    eqs = [Eq(adjoints[v], 0) for v in versions]   # no seed
    for stmt in reversed(program):
        if stmt.write.field not in adjoints:
            continue
        seed = at_offsets(adjoints[stmt.write.field])
        contributions = RULES[stmt.kind](stmt, derivatives(stmt), seed, levels)
        eqs += form.time_free(contributions, adjoints, grid)
    return eqs


def _time_loop(program, adjoints, form, checkpointed, versions, temporaries,
               derivatives):
    """The backward time loop: contributions from every statement, rewritten by the
    passes, summed into one update per adjoint level and target, scheduled within the
    counter, with what runs once pinned at the edges of the run."""
    grid = program[0].write.field.grid
    active = [s for s in program if s.write.field in adjoints]
    derivs = [derivatives(s) for s in active]
    if not checkpointed:
        check_primal_values(active, derivs, program)
    levels = Levels.of(program, active, derivs, versions, temporaries)
    check_sparse_reads(active, derivs, levels)
    time = levels.time
    scales = form.scales(levels, adjoints, grid)
    seeds = [scaled_seed(at_offsets(adjoints[s.write.field], time=s.write.time),
                         s.write.field, scales) for s in active]

    flat = dict(zip(map(id, active), derivs, strict=True))
    derivs, corrections = through_saved_writes(program, active, derivs, seeds,
                                               checkpointed)
    check_numbers([d for ds in derivs for _, d in ds]
                  + [c.coefficient for c in corrections], 'through-write')

    # Walk the program backwards; each target sums its contributions in program order.
    by_statement = defaultdict(list)
    for c in corrections:
        by_statement[id(c.statement)].append(c)
    for stmt, ds, seed in reversed(list(zip(active, derivs, seeds, strict=True))):
        # a parameter whose partial went through the saved write keeps it (the
        # corrections are made for it)
        composable = set(adjoints) - {a.field for (a, d), (_, d0)
                                      in zip(ds, flat[id(stmt)], strict=True) if d != d0}
        by_statement[id(stmt)] += form.compose(
            stmt, RULES[stmt.kind](stmt, ds, seed, levels), seed, levels, composable)
    contributions = [c for s in active for c in by_statement[id(s)]]
    check_numbers([c.coefficient for c in contributions], 'composition')
    if checkpointed:
        top = written_levels(program)
        for c in contributions:
            if c.via is None:
                check_window(c.statement, c.partial, c.step, top)
    contributions = cancel_parameter_terms(contributions)
    check_numbers([c.coefficient for c in contributions], 'cancellation')
    contributions = scale_injections(contributions, scales)

    collected = {key: [] for key in _update_keys(levels, derivs)}
    for c in contributions:
        collected[c.key].append(c)
    collected, early, top, bottom = form.shift_time(collected, adjoints, levels,
                                                    checkpointed)
    updates = [_update(key, cs, form, grid, adjoints) for key, cs in collected.items()]
    check_numbers([e for u in updates for _, e in u.terms]
                  + [t.rhs for u in updates for t in u.temps], 'factoring')
    updates += [Update(h, None, None, terms=tuple(terms), early=True)
                for h, terms in early.items()]

    step = Step(grid, levels)
    # time-invariant coefficient fields (passes.factoring), computed once
    users = {f: fb for f, fb in adjoints.items()
             if f not in versions and f not in temporaries}
    eqs = primal_slots(users, written_levels(program), time, 'top')
    eqs += temporary_slots(temporaries, adjoints, program, time, 'top')
    eqs += list(current().get(('invariants',), {}).values())
    eqs += rescale(scales, adjoints, time, 'top', 1)
    eqs += form.begin(step, updates, adjoints)
    for u in order(updates):
        if u.edge != 'top' and top:
            eqs += step.flush() + edge_updates(top, time, 'top')
            top = []
        eqs += _emit(u, step, form, levels, scales, adjoints, grid)
    eqs += step.flush()
    check_buffers(updates, adjoints)
    eqs += edge_updates(bottom, time, 'bottom')
    return (eqs + rescale(scales, adjoints, time, 'bottom', -1)
            + primal_slots(users, written_levels(program), time, 'bottom')
            + temporary_slots(temporaries, adjoints, program, time, 'bottom'))


def _update_keys(levels, derivs):
    """The adjoint updates one counter makes, as ``(target, level, edge)``: the slots
    of each active TimeFunction, then the time-invariant targets by name."""
    keys = [(g, level, edge) for g in levels.w for level, edge in levels.slots(g)]
    others = {a.field for ds in derivs for a, _ in ds if not isinstance(a.field,
                                                                          TimeFunction)}
    return keys + [(f, None, None) for f in sorted(others, key=lambda f: f.name)]


def _update(key, contributions, form, grid, adjoints):
    """The :class:`~devito_perforad.schedule.Update` of one target, factored
    (:mod:`devito_perforad.passes.factoring`) where the form asks."""
    target, level, edge = key
    dense = tuple(c for c in contributions if c.via is None)
    temps, terms = factor(dense, target, edge, grid, adjoints) \
        if form.factors(edge) else ((), ())
    return Update(target, level, edge, dense,
                  tuple(c for c in contributions if c.via is not None),
                  frozenset(c.reads for c in contributions if c.reads is not None),
                  tuple(dict.fromkeys(temps)), tuple(terms))  # a shared seed once


def _emit(u, step, form, levels, scales, adjoints, grid):
    """The equations of one update, in the step or pinned at its edge of the run."""
    time = levels.time
    gb = adjoints[u.target]
    own = at_offsets(gb, time=u.level)
    if u.edge is None:
        eqs = step.reading(u.reads, gb, [e for _, e in u.terms]
                           + [t.rhs for t in u.temps]
                           + [c.coefficient for c in u.operations])
        eqs += step.add([t for t in u.temps if t.lhs.function not in step.made])
        step.made.update(t.lhs.function for t in u.temps)
    else:
        eqs = step.flush() + [once(t, time, u.edge) for t in u.temps]
    if (u.level is not None or u.terms or u.contributions) \
            and not isinstance(gb, SparseFunction):
        keep = levels.seed_mask(u.target, gb, u.level, u.edge)
        scale = scales.get(u.target, sympy.S.One)
        if u.edge is None:
            eqs += form.loop_update(step, u, own, keep, scale)
        else:  # runs once: no need to split
            copies, rhs = halo_exchange_over_time(keep + scale * guarded(list(u.terms)),
                                                  grid)
            eqs += [once(e, time, u.edge) for e in copies + [Eq(own, rhs)]]
    operations = [operation(c, adjoints) for c in u.operations]
    if operations and u.edge is None:
        written = [t for _, t, _ in operations if t is not None]
        eqs += step.operate(
            [eq for build, target, e in operations for eq in build(target, e)],
            [(t.function, access_of(t).time) for t in written],
            [t.function for t in written]
            + [a.function for _, _, e in operations
               for a in retrieve_functions(e, mode='unique')])
    elif operations:
        eqs += step.flush() + pin_sparse(operations, time, u.edge)
    return eqs
