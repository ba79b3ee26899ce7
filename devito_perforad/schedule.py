"""Schedule the adjoint updates of one counter, and place what runs once.

The driver (:mod:`devito_perforad.derive`) makes one :class:`Update` per adjoint level
(and per time-invariant target); :func:`order` orders them so that every seed is
complete before it is read; :class:`Step` collects the dense updates of one counter in
stretches Devito can fuse. Updates that run once, at an edge of the run, are pinned
there (:func:`once`, :func:`pin_sparse`).
"""

from dataclasses import dataclass

import sympy
from devito import ConditionalDimension, Eq, Function, Inc, TimeFunction
from devito.symbolics import retrieve_functions
from devito.types.basic import AbstractFunction

from .errors import AdjointError
from .fields import is_saved
from .ir.access import access_of, at_offsets
from .ir.names import current
from .ir.symbolic import Select, pin
from .passes.core_shell import updates
from .region import run_edge

__all__ = ['Update', 'order', 'Step', 'once', 'pin_sparse']


@dataclass(frozen=True)
class Update:
    """One adjoint update of the backward loop: the contributions to one target at
    one level.

    Attributes
    ----------
    target : devito.types.AbstractFunction
        The primal field whose adjoint it writes.
    level : int or None
        The adjoint level written, ``None`` for a time-invariant target.
    edge : {None, 'top', 'bottom'}
        ``None``: at every counter; ``'top'`` (``time == time_M``) or ``'bottom'``
        (``time == time_m``): once, at that edge of the run.
    contributions : tuple of Contribution
        The gathered ones.
    operations : tuple of Contribution
        The sparse operations (injections, interpolations) into the target.
    reads : frozenset
        ``(field, level)`` of the seeds it reads.
    temps : tuple of devito.Eq
        Temporaries made right before it (:mod:`devito_perforad.passes.factoring`).
    terms : tuple of (list, sympy.Expr)
        Its terms, ``(conditions, expr)``.
    early : bool
        A parameter update that reads the slot the step overwrites
        (:mod:`devito_perforad.passes.time_shift`): it runs first.
    """

    target: object
    level: int | None
    edge: str | None
    contributions: tuple = ()
    operations: tuple = ()
    reads: frozenset = frozenset()
    temps: tuple = ()
    terms: tuple = ()
    early: bool = False

    @property
    def rank(self):
        if self.early:
            return 0.5
        ranks = {'top': 0, None: 1 if self.level is not None else 2, 'bottom': 3}
        return ranks[self.edge]


def order(nodes):
    """Order the updates of one counter so every seed is complete before it is read.

    Raises
    ------
    AdjointError
        If the updates depend on each other within one step.
    """
    def provider(f, level, reader):
        for n in nodes:
            if n.target is f and n.level == level and n is not reader:
                if n.edge is None or n.edge == reader.edge or (
                        n.edge == 'top' and reader.edge is None):
                    return n
        return None

    deps = {id(n): {id(p) for f, lv in n.reads if (p := provider(f, lv, n)) is not None}
            for n in nodes}
    ordered, done = [], set()
    pending = sorted(nodes, key=lambda n: n.rank)
    while pending:
        ready = [n for n in pending if deps[id(n)] <= done]
        if not ready:
            names = ', '.join(n.target.name for n in pending)
            raise AdjointError(f"Adjoint updates of {names} depend on each other within "
                               "one time step; the program cannot be reversed in gather "
                               "form.")
        n = ready[0]
        ordered.append(n)
        done.add(id(n))
        pending.remove(n)
    return ordered


class Step:
    """The dense updates of one counter of the backward loop, collected in stretches
    that Devito can fuse into one loop nest (the gradient's update with the adjoint's).

    A buffered adjoint's slot holds a seed at the first counter of the run only
    (see :meth:`~devito_perforad.levels.Levels.seed_counters`). The update of that
    slot does not read it: the seed is set aside in an array of its own before the loop
    (:meth:`set_aside`) and added back right after the update, by a pointwise loop nest
    that runs at that counter only. The loop therefore moves as much memory as the
    primal's, for one more array per such adjoint field. (Adding ``0/1 * seed`` reads
    the slot at every counter: 10% of the 2D acoustic adjoint's time. A second version
    of the update for the first counter is another stencil loop nest: gcc took
    1.2-1.75x as long to compile the adjoints.)

    ``add`` and ``update`` collect a stretch; ``flush`` returns its equations, before
    anything else (a sparse operation, an update pinned at an edge of the run, or an
    update reading a level whose seed is not back yet) comes next.
    """

    def __init__(self, grid, levels):
        self.grid, self.time, self.levels = grid, levels.time, levels
        self.seeds = {}  # (field, level) -> (array set aside, counter condition)
        self.updates, self.after, self.pending = [], [], set()
        self.made = set()  # temporaries computed in this counter so far
        # sparse operations deferred to the stretch's end, the adjoint levels they
        # write and the fields they read or write
        self.operations, self.writes, self.fields = [], set(), set()
        # temporaries of the stretch, and the adjoint levels its updates write
        self.temps, self.written = [], set()

    def set_aside(self, field, gb, level):
        """Set aside the seed of ``gb`` at ``level`` where it is one at the run's first
        counter alone (see :meth:`~devito_perforad.levels.Levels.seed_counters`),
        which is the case
        whenever the adjoint's buffer has as many slots as the primal's. The copy is
        made once, before the loop: the equations returned (Devito fuses them with the
        other updates there). Otherwise (no seed to set aside, or a wider buffer whose
        slots hold seeds for several counters) the update reads the slot, through
        ``keep``.
        """
        seeded = self.levels.seed_counters(field, gb, level)
        if seeded is None or seeded.subs(self.time, self.time.symbolic_max - 1) \
                is not sympy.false:
            return []
        aside = Function(name=current().name(f'{gb.name}_seed', 'temporary'),
                         grid=self.grid, space_order=0, dtype=gb.dtype)
        self.seeds[(field, level)] = (aside, seeded)
        return [once(Eq(aside, at_offsets(gb, time=level)), self.time, 'top')]

    def reading(self, reads, writes=None, exprs=()):
        """The stretch so far, if an update reading ``reads`` (pairs of primal field
        and level) must follow a seed's return, or if the update (writing the field
        ``writes``, reading ``exprs``) touches what a deferred sparse operation reads
        or writes; else nothing."""
        touched = {(a.function, access_of(a).time) for e in exprs
                   for a in retrieve_functions(e, mode='unique')
                   if a.function in self.fields}
        if self.pending & set(reads) or touched & self.writes or writes in self.fields \
                or not isinstance(writes, TimeFunction):
            return self.flush()
        return []

    def operate(self, eqs, writes, fields):
        """Sparse operations' equations, writing the adjoint levels ``writes`` (pairs
        of field and level) and touching ``fields``: run after the stretch's dense
        updates of buffered fields, so that the updates of several fields fuse into
        one loop nest (:meth:`reading` flushes them first where an update needs that,
        and before a time-invariant target's update). Touching a saved field they run
        at once: Devito would split the time loop between the updates and them."""
        if any(isinstance(f, TimeFunction) and is_saved(f) for f in fields):
            return self.flush() + eqs
        self.operations += eqs
        self.writes |= set(writes)
        self.fields |= set(fields)
        return []

    def add(self, eqs):
        """Temporaries of the stretch: computed before its updates, so that the
        temporaries of several fields share loop nests, and so do their updates. A
        temporary reading a level an update of the stretch wrote (or a slot that
        level shares) starts a new stretch: returns the stretch so far."""
        out = self.flush() if any(self._overwritten(e.rhs) for e in eqs) else []
        self.temps += eqs
        return out

    def _overwritten(self, expr):
        for a in retrieve_functions(expr, mode='unique'):
            level = access_of(a).time if isinstance(a.function, TimeFunction) else None
            for f, written in self.written:
                if a.function is f and (level == written or not is_saved(f) and (
                        level - written) % f._time_size == 0):
                    return True
        return False

    def update(self, lhs, keep, terms, scale, field):
        """``lhs = keep + scale * terms``; where the slot's seed is set aside,
        ``lhs = scale * terms`` and the seed added back at its counters."""
        level = access_of(lhs).time
        self.written.add((lhs.function, level))
        if (field, level) not in self.seeds:
            self.updates += updates(lhs, keep, terms, self.grid, scale)
            return
        aside, seeded = self.seeds[(field, level)]
        self.updates += updates(lhs, sympy.S.Zero, terms, self.grid, scale)
        self.after += on_counters([Eq(lhs, lhs + aside)], seeded)
        self.pending.add((field, level))

    def flush(self):
        eqs = self.updates + self.after + self.operations
        self.updates, self.after, self.pending = [], [], set()
        self.operations, self.writes, self.fields = [], set(), set()
        eqs = self.temps + eqs
        self.temps, self.written = [], set()
        return eqs


def once(eq, time, edge):
    """``eq`` run once, at the ``edge`` of the run (``None``: in the loop)."""
    if edge is None:
        return eq
    value, holds = run_edge(time, edge)
    return edge_only(eq.func(pin(eq.lhs, time, value), pin(eq.rhs, time, value),
                             subdomain=eq.subdomain), holds)


def on_counters(eqs, condition):
    """``eqs`` run only at the counters where ``condition`` (on the counter alone)
    holds: Devito wraps their loop nests in one ``if`` inside the time loop."""
    time = next(d for d in condition.free_symbols if getattr(d, 'is_Time', False))
    where = ConditionalDimension(current().name(f'{time.name}_c', 'counter'),
                                 parent=time, condition=condition)
    return [eq.func(eq.lhs, eq.rhs, subdomain=eq.subdomain,
                    implicit_dims=(*eq.implicit_dims, where)) for eq in eqs]


def pin_sparse(operations, time, edge):
    """Sparse operations, ``(build, target, expr)``, run once, at the ``edge`` of the
    run (see :func:`devito_perforad.region.run_edge`)."""
    value, holds = run_edge(time, edge)
    eqs = [eq for build, target, expr in operations
           for eq in untimed(build(pin(target, time, value), pin(expr, time, value)),
                              time, value)]
    return [edge_only(eq, holds) for eq in eqs]


def edge_only(eq, holds):
    """``eq``, with no effect on fields unless ``holds``."""
    if not isinstance(getattr(eq.lhs, 'function', None), AbstractFunction) \
            or holds is sympy.true:
        return eq  # scalar temporaries of sparse operations
    keep = sympy.S.Zero if isinstance(eq, Inc) else eq.lhs
    return eq.func(eq.lhs, Select(holds, eq.rhs, keep), subdomain=eq.subdomain,
                   implicit_dims=eq.implicit_dims)


def untimed(operation, time, value):
    """A sparse operation's equations pinned at ``time == value``, without a time loop
    of their own."""
    eqs = []
    for eq in operation:
        dims = tuple(d for d in eq.implicit_dims if d is not time)
        eqs.append(eq.func(eq.lhs, eq.rhs, implicit_dims=dims))
    return eqs
