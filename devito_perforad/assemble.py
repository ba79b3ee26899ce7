"""Stage 5: assemble the adjoint operator.

The driver walks the primal program in reverse and, for every adjoint target, sums
the gathered terms of all statements that read it into one stencil update:

* **time-free programs**: statements are reversed one by one; statement ``i``'s
  adjoint adds ``sum_o D(q - o) * yb(q - o)`` to each field it reads.
* **time loops**: the adjoint is a backward loop over the same counter range. Each
  active TimeFunction ``g`` gets one update per counter that writes the adjoint level
  ``gb[t + w]`` with every contribution to it, from all statements and all steps
  that read that level. ``w`` is the lowest level the primal reads, so the adjoint of
  ``u[t+1] = 2u[t] - u[t-1] + L(u[t])`` is the familiar
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
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import numpy as np
import sympy
from devito import Eq, Function, Operator, SparseFunction, TimeFunction, configuration
from devito.ir.iet import FindNodes, Iteration
from devito.symbolics import retrieve_functions
from devito.types.basic import AbstractFunction

from .access import access_of, at_offsets
from .checks import check_halos, check_inputs, check_operator_kwargs, check_options
from .differentiate import cancelled, partials, pointwise_factor, through_write
from .errors import AdjointError, describe, located
from .fields import (
    check_primal_values,
    check_window,
    is_saved,
    several_ranks,
)
from .ir.names import current, naming
from .region import (
    Select,
    covers_domain,
    guarded,
    on_counters,
    run_edge,
    run_range,
    seed_counters,
    seed_mask,
    space_conditions,
    split,
    time_conditions,
    top_written_levels,
    unguarded,
    vanishes_outside,
)
from .reverse import pin, reverse, shift
from .scatter import scatter, scatter_level
from .sparse import (
    edge_only,
    inject_inside,
    pin_sparse,
    receivers,
    transpose_sparse,
)

__all__ = ['adjoint', 'AdjointOperator', 'adjoint_operator', 'derive',
           'contiguous_innermost']

log = logging.getLogger('devito_perforad')


def adjoint(expressions, adjoints, subs=None, mode='gather', checkpointed=False):
    """Derive the exact discrete adjoint of ``expressions`` in gather form.

    Parameters
    ----------
    expressions : Eq, Inc or nested lists of them
        The primal, exactly as passed to ``devito.Operator``.
    adjoints : dict
        Maps each field to differentiate to its adjoint field, of the same kind, grid
        and dtype (:func:`devito_perforad.adjoint_function` makes one). Every field
        the program writes, receivers included, must be in the map: map one you do
        not differentiate to ``None`` (inactive). Fields only read and not in the map
        are constants.
    subs : dict, optional
        The ``subs`` the primal Operator is built with (e.g. ``model.spacing_map``).
        Devito folds numbers after substituting; passing the same ``subs`` makes the
        adjoint use exactly the primal's compiled coefficients.
    mode : {'gather', 'scatter'}, optional
        ``'gather'`` (default): offset reversal, every update writes only its own point.
        ``'scatter'``: textbook reverse mode (increments at offsets, see
        :mod:`devito_perforad.scatter`), for comparison.
    checkpointed : bool, optional
        The primal's buffered TimeFunctions are recomputed step by step while the
        adjoint runs one counter at a time (see
        :class:`devito_perforad.CheckpointedAdjoint`): the adjoint may read them at
        the levels the buffer holds right after the primal step of the same counter.

    Returns
    -------
    list of devito.Eq
        The adjoint equations. Every equation writes only its own point.

    Raises
    ------
    TypeError
        If ``adjoints`` is not a dict, ``subs`` not a dict, or ``expressions`` a
        ``devito.Operator`` or something else than Devito equations.
    AdjointError
        If the map does not fit the program (a written field missing, a key that is
        not a field or not used, an adjoint of another kind, grid, dtype or storage),
        or the program has a form the transform cannot reverse; see
        ``docs/troubleshooting.md``. Raised before anything is built.

    Examples
    --------
    >>> import numpy as np
    >>> from devito import Grid, Function, Eq
    >>> from devito_perforad import adjoint, adjoint_function
    >>> grid = Grid(shape=(8,))
    >>> x = grid.dimensions[0]
    >>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    >>> ub, wb = adjoint_function(u), adjoint_function(w)
    >>> for eq in adjoint([Eq(w, u.dx)], {u: ub, w: wb}):
    ...     print(eq)
    Eq(u_b(x), u_b(x) - w_b(x)/h_x + w_b(x - h_x)/h_x)

    The term from ``x - 1`` reads ``w_b`` in its zero halo at the left edge: no guard.
    A coefficient that could be infinite there (``1/m``, zero in the halo) is guarded
    instead, on a thin shell at the edge, and the update runs bare on the core:

    >>> m = Function(name='m', grid=grid)
    >>> for eq in adjoint([Eq(w, u.dx / m)], {u: ub, w: wb}):
    ...     print(eq.subdomain.define(grid.dimensions)[x], eq.rhs)
    ... # doctest: +NORMALIZE_WHITESPACE
    ('middle', 1, 0) u_b(x) + w_b(x - h_x)/(h_x*m(x - h_x)) - w_b(x)/(h_x*m(x))
    ('left', 1) u_b(x) + (((x - 1 >= x_m) ? w_b(x - h_x)/(h_x*m(x - h_x)) : 0))
      - w_b(x)/(h_x*m(x))
    """
    check_options(mode)
    return derive(*check_inputs(expressions, adjoints, subs), mode, checkpointed)


def derive(program, adjoints, mode='gather', checkpointed=False):
    """The adjoint equations of the analysed, checked ``program`` (see
    :func:`~devito_perforad.checks.check_inputs`); ``adjoints`` holds the active
    fields only. Otherwise as :func:`adjoint`."""
    with naming():
        if any(s.is_timed for s in program):
            eqs = _time_adjoint(program, adjoints, mode, checkpointed)
        else:
            eqs = _spatial_adjoint(program, adjoints, mode)
    for eq in eqs:  # for debugging; messages never show derived equations
        log.debug("derived adjoint equation: %s", eq)
    check_halos(eqs, adjoints)
    return eqs


def AdjointOperator(expressions, adjoints, mode='gather', checkpointing=False,  # noqa: N802
                    n_checkpoints=None, **kwargs):
    """A ``devito.Operator`` running the adjoint of ``expressions``.

    Applied with the same arguments as the primal operator (``time_m``, ``time_M``,
    ``dt``, ...), it performs ``x_b += (dF/dx)^T y_b`` for every active field, using
    the values the primal fields hold for nonlinear terms.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, or nested lists of them
        The primal, exactly as passed to ``devito.Operator``.
    adjoints : dict
        Primal field -> adjoint field, ``None`` for a written field left inactive (see
        :func:`adjoint`).
    mode : {'gather', 'scatter'}, optional
        As for :func:`adjoint`.
    checkpointing : bool, optional
        Bounded memory: the primal keeps buffered TimeFunctions and is recomputed
        from Revolve snapshots while the adjoint runs.
    n_checkpoints : int, optional
        With ``checkpointing``, the number of snapshots (default: Revolve's choice).
    **kwargs
        Passed to ``devito.Operator``: ``subs`` (pass the primal's), ``opt``,
        ``name``, ``platform``, ``language``, ``compiler``, ``allocator``.

    Returns
    -------
    devito.Operator or CheckpointedAdjoint
        The adjoint Operator; with ``checkpointing``, a
        :class:`~devito_perforad.CheckpointedAdjoint`, whose ``apply`` runs the primal
        with snapshots and then the adjoint.

    Raises
    ------
    TypeError
        As :func:`adjoint`, and for a keyword ``devito.Operator`` does not take (an
        ``apply`` argument such as ``dt`` given here).
    AdjointError
        As :func:`adjoint`, and for invalid ``mode``, ``checkpointing`` or
        ``n_checkpoints``. Raised before anything is built.

    Examples
    --------
    The gradient of ``J = 1/2 ||u(t_end)||^2`` with respect to ``m`` in a 1D diffusion,
    against a finite difference:

    >>> import numpy as np
    >>> from devito import Eq, Function, Grid, Operator, TimeFunction
    >>> from devito_perforad import AdjointOperator, adjoint_function
    >>> grid = Grid(shape=(32,), extent=(31.,), dtype=np.float64)
    >>> u = TimeFunction(name='u', grid=grid, space_order=2, save=11)
    >>> m = Function(name='m', grid=grid)
    >>> primal = [Eq(u.forward, u + 0.2 * u.dx2 / m)]
    >>> forward = Operator(primal)
    >>> def J(m_values):
    ...     m.data[:] = m_values
    ...     u.data[:] = 0
    ...     u.data[0, 16] = 1
    ...     forward.apply()
    ...     return 0.5 * np.sum(u.data[-1]**2)
    >>> m0 = 1 + np.linspace(0, 1, 32)
    >>> J0 = J(m0)                                 # u now holds the trajectory at m0
    >>> ub, mb = adjoint_function(u), adjoint_function(m)
    >>> ub.data[-1] = u.data[-1]                   # the seed dJ/du(t_end)
    >>> _ = AdjointOperator(primal, {u: ub, m: mb}).apply()
    >>> dm, h = np.sin(np.arange(32)), 1e-6
    >>> fd = (J(m0 + h * dm) - J(m0 - h * dm)) / (2 * h)
    >>> bool(abs(fd - mb.data @ dm) < 1e-7 * abs(fd))
    True
    """
    check_options(mode, checkpointing, n_checkpoints)
    check_operator_kwargs(kwargs, 'AdjointOperator')
    if checkpointing:
        from .checkpoint import CheckpointedAdjoint
        return CheckpointedAdjoint(expressions, adjoints, n_checkpoints, **kwargs)
    kwargs.setdefault('name', 'Adjoint')
    kwargs = mpi_options(kwargs)
    return adjoint_operator(adjoint(expressions, adjoints, kwargs.get('subs'), mode),
                            **kwargs)


def adjoint_operator(eqs, **kwargs):
    """``devito.Operator(eqs, **kwargs)`` with the adjoint's OpenMP schedule: static
    (:func:`static_schedule`), one contiguous block per thread for a lone loop
    (:func:`contiguous_innermost`)."""
    with contiguous_innermost():
        return Operator(eqs, **static_schedule(kwargs))


def mpi_options(kwargs):
    """Under MPI, keep Devito's halo exchanges where the adjoint reads them.

    Devito 4.8.23 optimises the placement of halo exchanges (``opt-comms``:
    ``optimize_halospots`` merges and hoists them). On adjoint operators this fails
    in two ways: with ``DEVITO_MPI=overlap``, ``overlap2`` or ``full`` the build stops
    (``AssertionError`` in ``create_call_graph``; one level assigned on the core and
    shell SubDomains is enough), and in every mode the exchange of a saved level
    ``ub[time + 1]`` can be hoisted before the time loop with its index ``time + 1``
    (C error ``'time' undeclared``). ``opt-comms=False`` avoids both, unless the
    caller chose.
    """
    if not configuration['mpi']:
        return kwargs
    opt = kwargs.get('opt', configuration['opt'])
    mode, options = (opt, {}) if isinstance(opt, str) else (opt[0], dict(opt[1]))
    options.setdefault('opt-comms', False)
    return dict(kwargs, opt=(mode, options))


def static_schedule(kwargs):
    """Ask Devito for static OpenMP scheduling unless the caller chose otherwise.

    Devito switches to ``schedule(dynamic, 1)`` above an operation count per
    iteration; adjoint stencils count more operations than their primal (guards, step
    factors) but their work per point is just as uniform, and dynamic scheduling of a
    long 1D loop costs an order of magnitude.
    """
    from devito.arch import Device, platform_registry
    platform = kwargs.get('platform') or configuration['platform']
    if isinstance(platform_registry.get(platform, platform), Device):
        return kwargs  # GPUs always schedule statically
    opt = kwargs.get('opt', configuration['opt'])
    mode, options = (opt, {}) if isinstance(opt, str) else (opt[0], dict(opt[1]))
    if mode.startswith('advanced') and 'par-dynamic-work' not in options:
        options['par-dynamic-work'] = np.inf
        kwargs = dict(kwargs, opt=(mode, options))
    return kwargs


@contextmanager
def contiguous_innermost():
    """Within the block, a statically scheduled OpenMP loop that is also the innermost
    loop gives each thread one contiguous block: ``schedule(static)``.

    Devito 4.8.23 always asks for chunks of one iteration, ``schedule(static,1)``. On
    the outer loop of a 2D or 3D nest that hands out whole rows, but on a lone 1D loop
    it interleaves the threads point by point and leaves each thread a loop of one
    iteration per chunk, which the compiler cannot vectorise. The 1D Burgers adjoint
    with a buffered adjoint field ran 2.2x slower for it at one thread and 3.6x at two.
    Loops over the thin strips at a dimension's edges (left and right SubDimensions,
    a few points) keep Devito's chunks: vectorising them would only lengthen the
    compile (1D Burgers adjoint: 1.0 s instead of 0.3-0.4 s).

    Examples
    --------
    >>> import numpy as np
    >>> from devito import Eq, Grid, Operator, TimeFunction
    >>> u = TimeFunction(name='u', grid=Grid(shape=(64,)))
    >>> opt = ('advanced', {'openmp': True, 'par-dynamic-work': np.inf})
    >>> with contiguous_innermost():
    ...     op = Operator(Eq(u.forward, u + 1), opt=opt)
    >>> 'omp for schedule(static)' in str(op)
    True
    """
    from devito.passes.iet.languages.openmp import OmpIteration

    original = OmpIteration.__dict__['_make_clauses']

    def clauses(cls, nodes=(), dimension=None, **kwargs):
        made = original.__func__(cls, nodes=nodes, dimension=dimension, **kwargs)
        if FindNodes(Iteration).visit(nodes) or edge_strip(dimension):
            return made
        return ['schedule(static)' if c == 'schedule(static,1)' else c for c in made]

    OmpIteration._make_clauses = classmethod(clauses)
    try:
        yield
    finally:
        OmpIteration._make_clauses = original


def edge_strip(dimension):
    """Whether ``dimension`` is a left or right SubDimension (a strip at an edge)."""
    return any(getattr(dimension, side, False) for side in ('is_left', 'is_right'))


# -- time-free programs ---------------------------------------------------------------

def _spatial_adjoint(program, adjoints, mode):
    for stmt in program:
        if stmt.kind != 'stencil':
            raise AdjointError(f"`{describe(stmt.eq)}`: sparse operations are supported "
                               "inside "
                               "time loops only.")
    eqs = []
    grid = program[0].write.field.grid
    for stmt in reversed(program):
        if stmt.write.field not in adjoints:
            continue
        seed = at_offsets(adjoints[stmt.write.field])
        by_target = defaultdict(list)
        for a, d in partials(stmt, adjoints):
            if mode == 'scatter':
                eqs.append(scatter(stmt, a, d * seed, adjoints[a.field]))
                continue
            term = reverse(stmt, a, d, seed)
            where = [] if _unguarded_term(d * seed, stmt, adjoints) else \
                space_conditions(grid, stmt.subdomain, term.shift)
            by_target[a.field].append((where, term.expr))
        for g, terms in by_target.items():
            gb = at_offsets(adjoints[g])
            eqs += _updates(gb, gb, terms, grid)
    return eqs


def _updates(lhs, keep, terms, grid, scale=sympy.S.One):
    """One adjoint update as Devito equations.

    Where every domain-edge guard holds (the core, i.e. nearly the whole grid) the
    terms run bare, exactly the primal's stencil shape; the guarded version runs only
    on thin shells along the edges.
    """
    pieces = split(grid, terms)
    if pieces is None:
        return [Eq(lhs, keep + scale * guarded(terms))]
    core, shells = pieces
    return ([Eq(lhs, keep + scale * unguarded(terms), subdomain=core)]
            + [Eq(lhs, keep + scale * guarded(terms), subdomain=shell)
               for shell in shells])


# -- time loops -----------------------------------------------------------------------

class _Step:
    """The dense updates of one counter of the backward loop, collected in stretches
    that Devito can fuse into one loop nest (the gradient's update with the adjoint's).

    A buffered adjoint's slot holds a seed at the first counter of the run only (see
    :func:`~devito_perforad.region.seed_counters`). The update of that slot does not
    read it: the seed is set aside in an array of its own before the loop
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

    def __init__(self, grid, time):
        self.grid, self.time = grid, time
        self.seeds = {}  # (field, level) -> (array set aside, counter condition)
        self.updates, self.after, self.pending = [], [], set()

    def set_aside(self, field, gb, level, top_levels):
        """Set aside the seed of ``gb`` at ``level`` where it is one at the run's first
        counter alone (see :func:`~devito_perforad.region.seed_counters`; ``top_levels``
        from :func:`~devito_perforad.region.top_written_levels`), which is the case
        whenever the adjoint's buffer has as many slots as the primal's. The copy is
        made once, before the loop: the equations returned (Devito fuses them with the
        other updates there). Otherwise (no seed to set aside, or a wider buffer whose
        slots hold seeds for several counters) the update reads the slot, through
        ``keep``.
        """
        seeded = seed_counters(field, gb, level, self.time, top_levels)
        if seeded is None or seeded.subs(self.time, self.time.symbolic_max - 1) \
                is not sympy.false:
            return []
        aside = Function(name=current().name(f'{gb.name}_seed', 'temporary'), grid=self.grid,
                         space_order=0, dtype=gb.dtype)
        self.seeds[(field, level)] = (aside, seeded)
        return [_once(Eq(aside, at_offsets(gb, time=level)), self.time, 'top')]

    def reading(self, reads):
        """The stretch so far, if an update reading ``reads`` (pairs of primal field
        and level) must follow a seed's return; else nothing."""
        return self.flush() if self.pending & set(reads) else []

    def add(self, eqs):
        """Equations of the stretch (temporaries)."""
        self.updates += eqs

    def update(self, lhs, keep, terms, scale, field):
        """``lhs = keep + scale * terms``; where the slot's seed is set aside,
        ``lhs = scale * terms`` and the seed added back at its counters."""
        level = access_of(lhs).time
        if (field, level) not in self.seeds:
            self.updates += _updates(lhs, keep, terms, self.grid, scale)
            return
        aside, seeded = self.seeds[(field, level)]
        self.updates += _updates(lhs, sympy.S.Zero, terms, self.grid, scale)
        self.after += on_counters([Eq(lhs, lhs + aside)], seeded)
        self.pending.add((field, level))

    def flush(self):
        eqs = self.updates + self.after
        self.updates, self.after, self.pending = [], [], set()
        return eqs


@dataclass
class _Node:
    """One adjoint update inside the backward time loop."""

    field: object
    level: int | None            # adjoint level written, None for a parameter
    guard: str | None            # None, 'top' (time == time_M), 'bottom' (time == time_m)
    terms: list = dataclass_field(default_factory=list)
    reads: set = dataclass_field(default_factory=set)   # (field, level) of seeds read
    sparse: list = dataclass_field(default_factory=list)  # (build, target, expr)
    raw: list = dataclass_field(default_factory=list)     # reversed terms, unguarded
    temps: list = dataclass_field(default_factory=list)   # Eq(z, P) before the update
    early: bool = False  # a parameter update that reads the slot the step overwrites

    @property
    def rank(self):
        if self.early:
            return 0.5
        ranks = {'top': 0, None: 1 if self.level is not None else 2, 'bottom': 3}
        return ranks[self.guard]


def _levels(program, adjoints, derivs):
    """Lowest and highest level each active TimeFunction is read at."""
    lo, hi = {}, {}
    for _stmt, ds in zip(program, derivs, strict=True):
        for a, _ in ds:
            if isinstance(a.field, TimeFunction):
                lo[a.field] = min(lo.get(a.field, a.time), a.time)
                hi[a.field] = max(hi.get(a.field, a.time), a.time)
    return lo, hi


def _solve_levels(program, derivs, lo, hi):
    """Choose the adjoint level ``w`` written per counter for each TimeFunction.

    A contribution to ``gb[t + w_g]`` from a read ``g[t + s]`` by a statement writing
    ``y[t + s0]`` reads ``yb[t + w_g - s + s0]``, which must already be complete:
    ``w_y <= w_g - s + s0``. Start from the lowest read level and raise until it holds.
    """
    w = dict(lo)
    for _ in range(len(w) + 2):
        changed = False
        for stmt, ds in zip(program, derivs, strict=True):
            y = stmt.write.field
            if y not in w:
                continue
            for a, _ in ds:
                if a.field not in w:
                    continue
                need = w[y] - stmt.write.time + a.time
                if w[a.field] < need:
                    w[a.field] = need
                    changed = True
                    if need > hi[a.field]:
                        raise located(stmt.eq, a.field,
                                      "the time dependencies of this program cannot be "
                                      "reversed into a gather loop.")
        if not changed:
            return w
    raise AdjointError("The time dependencies of this program cannot be reversed.")


def _time_adjoint(program, adjoints, mode, checkpointed=False):
    grid = program[0].write.field.grid
    time = grid.time_dim
    active = [s for s in program if s.write.field in adjoints]
    derivs = [partials(s, adjoints) for s in active]
    written = {s.write.field for s in program}
    for stmt, ds in zip(active, derivs, strict=True):
        for _, d in ds:
            if not checkpointed:
                check_primal_values(stmt, d, written)
    derivs, corrections = _through_saved_writes(program, active, derivs, adjoints,
                                                checkpointed)
    lo, hi = _levels(active, adjoints, derivs)
    w = _solve_levels(active, derivs, lo, hi)

    scales = _scales(program, adjoints, grid) if mode == 'gather' else {}
    nodes = []
    for g in w:
        nodes.append(_Node(g, w[g], None))
        nodes += [_Node(g, w[g] + k, 'top') for k in range(1, hi[g] - w[g] + 1)]
        nodes += [_Node(g, w[g] - k, 'bottom') for k in range(1, w[g] - lo[g] + 1)]
    params = {a.field for ds in derivs for a, _ in ds
              if not isinstance(a.field, (TimeFunction, SparseFunction))}
    sparse = {a.field for ds in derivs for a, _ in ds
              if isinstance(a.field, SparseFunction)}
    nodes += [_Node(m, None, None) for m in sorted(params | sparse, key=lambda f: f.name)]

    early, edges = {}, {'top': [], 'bottom': []}  # see _time_reversed
    for node in nodes:
        for stmt, ds in zip(active, derivs, strict=True):
            seed = at_offsets(adjoints[stmt.write.field], time=stmt.write.time)
            if stmt.write.field in scales:  # sympy's Mul, so that K cancels
                seed = sympy.Mul(seed, 1 / scales[stmt.write.field])
            for a, d in ds:
                if a.field is not node.field:
                    continue
                if stmt.kind == 'interpolate' and isinstance(a.field, TimeFunction):
                    continue  # see sparse.receivers
                if stmt.kind != 'stencil':
                    transpose_sparse(node, stmt, a, d, seed, adjoints)
                    continue
                for inject, expr in corrections.get((id(stmt), a.field), []):
                    node.sparse.append((lambda target, e, s=inject.sparse:
                                        inject_inside(s, target, e),
                                        at_offsets(adjoints[a.field]), expr * seed))
                term = reverse(stmt, a, d, seed, level=node.level)
                conditions = time_conditions(time, term.step, node.guard)
                if conditions is None:
                    continue
                if checkpointed:
                    check_window(stmt, d, term.step, program)
                base = cancelled(d * seed) if node.field in params else d * seed
                if (node.field in params and mode == 'gather' and not checkpointed
                        and not conditions and not term.step):
                    g = stmt.write.field
                    moved = _time_reversed(base, adjoints[g], w[g], lo[g] < w[g], time)
                    if moved is not None:
                        early.setdefault(node.field, _Node(node.field, None, None,
                                                           early=True))
                        early[node.field].terms += moved[0]
                        edges['top'] += [(adjoints[node.field], e) for e in moved[1]]
                        edges['bottom'] += [(adjoints[node.field], e)
                                            for e in moved[2]]
                        continue
                node.raw.append((stmt, term, base, conditions,
                                 not _reads_primal_history(d), a))
                node.reads.add((stmt.write.field, term.step + stmt.write.time))
        if mode == 'gather' or node.guard is not None:
            # the updates that run once, at an edge of the run, stay gathers in
            # scatter form: Devito 4.8 emits an invalid OpenMP reduction clause for
            # several increments of one array fused in a loop outside the time loop
            _gather_terms(node, grid, adjoints)

    nodes += list(early.values())
    orphans = receivers(active, derivs, adjoints, w, nodes, time, scales)
    top_levels = top_written_levels(program)
    eqs = _rescale(scales, adjoints, time, 'top', 1)
    step = _Step(grid, time)
    if mode == 'gather':
        for node in nodes:
            if node.guard is None and node.level is not None:
                eqs += step.set_aside(node.field, adjoints[node.field], node.level,
                                      top_levels)
    for node in _schedule(nodes):
        if node.guard != 'top' and orphans:
            eqs += step.flush() + pin_sparse(orphans, time, 'top')
            orphans = []
        if node.guard != 'top' and edges['top']:
            eqs += step.flush() + _edge_updates(edges['top'], time, 'top')
            edges['top'] = []
        gb = adjoints[node.field]
        own = at_offsets(gb, time=node.level)
        if node.guard is None:
            eqs += step.reading(node.reads)
            step.add(node.temps)
        else:
            eqs += step.flush() + node.temps
        if node.level is None and not node.terms and not node.raw:
            pass  # a parameter with sparse contributions only, or all moved early
        elif not isinstance(gb, SparseFunction):
            keep = seed_mask(node.field, gb, node.level, node.guard, time, top_levels)
            scale = scales.get(node.field, sympy.S.One)
            if mode == 'scatter' and node.guard is None:
                raw = [(stmt, a, term, base, conditions, safe)
                       for stmt, term, base, conditions, safe, a in node.raw]
                eqs += step.flush() + scatter_level(own, keep, raw)
            elif node.guard is None:
                step.update(own, keep, node.terms, scale, node.field)
            else:  # runs once: no need to split
                copies, rhs = _level_copies(keep + scale * guarded(node.terms), grid)
                eqs += [_once(e, time, node.guard) for e in copies + [Eq(own, rhs)]]
        if node.sparse and node.guard is None:
            eqs += step.flush() + [eq for build, target, e in node.sparse
                                    for eq in build(target, e)]
        elif node.sparse:
            eqs += step.flush() + pin_sparse(node.sparse, time, node.guard)
    eqs += step.flush()
    _check_buffers(nodes, adjoints)
    eqs += _edge_updates(edges['bottom'], time, 'bottom')
    return eqs + _rescale(scales, adjoints, time, 'bottom', -1)


def _time_reversed(expr, gb, w, below, time):
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
    nb = gb.time_order + 1
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


def _edge_updates(terms, time, guard):
    """Parameter updates of :func:`_time_reversed` that run once, at an edge of the run.

    ``terms`` are ``(field, expr)`` pairs."""
    return [_once(Eq(h, h + expr), time, guard) for h, expr in terms]


def _scales(program, adjoints, grid):
    """The pointwise factor ``K`` of each field the adjoint carries scaled.

    A stencil ``y = K * R`` with ``K = 1/D`` pointwise and time-invariant (the damped
    wave equation's ``1/(m/dt**2 + damp/dt)``) reverses into ``L^T(K yb)``: every
    contribution reads the product ``K yb``. The adjoint loop therefore carries
    ``yb_s = K yb`` in ``yb``'s own storage, from one ``yb_s = yb * K`` before the
    loop to one ``yb = yb_s / K`` after it; then the backward update is the primal's
    stencil on ``yb_s`` with ``K`` applied once, and no temporary is needed. Only for
    buffered adjoints (a saved adjoint's every level is output) of fields one
    whole-domain statement assigns: there ``D`` is finite and non-zero wherever the
    primal is.
    """
    assigned = defaultdict(list)
    for stmt in program:
        if stmt.write.time is not None and not stmt.increment:
            assigned[stmt.write.field].append(stmt)
    scales = {}
    for y, stmts in assigned.items():
        yb = adjoints.get(y)
        if (len(stmts) != 1 or not isinstance(yb, TimeFunction) or is_saved(yb)
                or stmts[0].kind != 'stencil'
                or not covers_domain(grid, stmts[0].subdomain)):
            continue
        factor = pointwise_factor(stmts[0])
        if factor is not None:
            scales[y] = factor
    return scales


def _rescale(scales, adjoints, time, guard, power):
    """``yb *= K**power`` on every slot of each scaled adjoint, once, at the ``guard``
    edge of the run."""
    eqs = []
    for y, factor in scales.items():
        yb = adjoints[y]
        for level in range(yb.time_order + 1):
            own = at_offsets(yb, time=level)
            eqs.append(_once(Eq(own, own * factor ** power), time, guard))
    return eqs


def _once(eq, time, guard):
    """``eq`` run once, at the ``guard`` edge of the run (``None``: in the loop)."""
    if guard is None:
        return eq
    value, holds = run_edge(time, guard)
    return edge_only(eq.func(pin(eq.lhs, time, value), pin(eq.rhs, time, value),
                             subdomain=eq.subdomain), holds)


def _through_saved_writes(program, active, derivs, adjoints, checkpointed):
    """Rewrite parameter partials through saved writes (see
    :func:`devito_perforad.differentiate.through_write`).

    The saved level holds the statement's value plus what later statements injected
    into it; each such injection ``S.inject(y, Q)`` gives a correction
    ``hb -= S.inject(a'/a * Q * yb)``. A later dense increment keeps the partial as it
    is. With checkpointing, the level a step wrote is still in the buffer when the
    adjoint of that step runs, so buffered fields qualify too.
    """
    corrections = {}
    out = []
    for stmt, ds in zip(active, derivs, strict=True):
        y = stmt.write
        later = [s for s in program[program.index(stmt) + 1:]
                 if s.write.field is y.field and s.write.time == y.time]
        if (stmt.kind != 'stencil' or stmt.increment
                or not (is_saved(y.field) or checkpointed)
                or any(s.kind != 'inject' for s in later)):
            out.append(ds)
            continue
        new = []
        for a, d in ds:
            if isinstance(a.field, (TimeFunction, SparseFunction)):
                new.append((a, d))
                continue
            rewritten = through_write(stmt, a, y.expr)
            if rewritten is None:
                new.append((a, d))
                continue
            d, ratio = rewritten
            new.append((a, d))
            corrections[(id(stmt), a.field)] = [(s, -ratio * s.rhs) for s in later]
        out.append(new)
    return out, corrections


def _gather_terms(node, grid, adjoints):
    """Guard a node's reversed terms, factoring shifted copies of one product.

    A stencil ``y = K * sum_o w_o g(p + o)`` reverses into ``sum_o w_o (K yb)(q - o)``:
    the same product ``K * yb`` read at every offset. Computing it once per step into a
    temporary ``z`` and gathering ``sum_o w_o z(q - o)`` costs the primal's stencil plus
    one pointwise pass, instead of a product per offset. ``z`` is computed only where
    the primal ran (its halo and the rest stay zero), so its reads need no guards, and
    the whole update is one loop nest.
    """
    groups = defaultdict(list)
    scaled = defaultdict(list)  # step factor -> its terms, multiplied once
    for entry in node.raw:
        stmt, term, base, conditions, safe, _ = entry
        if not (safe and node.guard is None):
            groups[id(entry)].append((*_coefficient(base, grid), entry))
            continue
        for part in sympy.Add.make_args(sympy.expand(base)):
            coeff, rest = _coefficient(part, grid)
            groups[(id(stmt), term.step, rest)].append((coeff, rest, entry))
    for group in groups.values():
        stmt, term, _, conditions, safe, _ = group[0][2]
        factor = sympy.S.One
        if conditions and safe:
            # A term from an out-of-range step only multiplies finite values
            # (time-invariant coefficients, adjoint seeds): a per-step 0/1 factor,
            # hoisted out of the space loops, cancels it exactly.
            factor = Select(sympy.And(*conditions), sympy.S.One, sympy.S.Zero)
            conditions = []
        rest = group[0][1]
        if len(group) < 2 or _bare_seed(rest, stmt):
            # A bare seed needs no temporary. Where the primal ran on the whole
            # domain, a term that vanishes with its seed needs no guard either: the
            # adjoint's halo is zero (region.vanishes_outside).
            for coeff, rest, (stmt, term, *_rest) in group:
                where = [] if _unguarded_term(rest, stmt, adjoints) else \
                    space_conditions(grid, stmt.subdomain, term.shift)
                scaled[factor].append((conditions + where,
                                       coeff * shift(rest, time=term.step,
                                                     space=_by_dim(term.shift, grid))))
            continue
        reach = max(abs(k) for *_, entry in group for k in entry[1].shift)
        z = Function(name=current().name(f'{node.field.name}_z', 'temporary'), grid=grid,
                     space_order=max(reach, 1), dtype=node.field.dtype)
        # z is computed only where the primal ran and its halo stays zero, so reading
        # it anywhere needs no guard: outside the primal's region it contributes 0.
        node.temps.append(Eq(z, factor * shift(rest, time=term.step),
                             subdomain=stmt.subdomain))
        for coeff, _, (_stmt, term, *_rest) in group:
            node.terms.append((conditions, coeff * at_offsets(z, space=term.shift)))
    for factor, terms in scaled.items():
        node.terms += _factored(factor, terms)


def _level_copies(expr, grid):
    """Read the time levels ``expr`` reads at neighbouring points through copies.

    An update that runs once, before or after the time loop, writes one level of an
    adjoint TimeFunction and reads another level of it at neighbouring points. Under
    MPI, Devito 4.8.23 then exchanges the TimeFunction's halo over its whole time
    extent outside the loop, which only ``DEVITO_MPI=basic`` generates (``diag2``,
    ``overlap2`` and ``full`` fail to build the exchange, ``diag`` and ``overlap`` to
    compile it). A pointwise copy of the level into a time-free ``Function`` reads no
    halo, and the copy's halo exchange works in every mode.

    Returns the copy equations and ``expr`` reading the copies; serially (one rank)
    no copies and ``expr`` itself, so the run needs no extra array.
    """
    if not several_ranks(grid):
        return [], expr
    copies, mapping = {}, {}
    for app in retrieve_functions(expr, mode='unique'):
        f = app.function
        if not isinstance(f, TimeFunction):
            continue
        a = access_of(app)
        if not any(a.space):
            continue
        if (f, a.time) not in copies:
            c = Function(name=current().name(f'{f.name}_l', 'temporary'), grid=grid,
                         space_order=f.space_order, dtype=f.dtype)
            copies[(f, a.time)] = (c, Eq(c, at_offsets(f, time=a.time)))
        mapping[app] = at_offsets(copies[(f, a.time)][0], space=a.space)
    return [eq for _, eq in copies.values()], expr.xreplace(mapping)


def _factored(factor, terms):
    """``factor * term`` for each term, the unconditional ones summed under one factor."""
    bare = [expr for conditions, expr in terms if not conditions]
    out = [(conditions, factor * expr) for conditions, expr in terms if conditions]
    return out + ([([], factor * sympy.Add(*bare))] if bare else [])


def _coefficient(expr, grid):
    """``(c, rest)`` with ``expr == c * rest`` and ``c`` a constant factor, free of
    fields and of the grid's dimensions (so that shifting ``rest`` shifts ``expr``)."""
    coeff, rest = expr.as_independent(*retrieve_functions(expr), as_Add=False)
    dims = set(grid.dimensions) | {grid.time_dim, grid.stepping_dim}
    if coeff.free_symbols & dims:
        return sympy.S.One, expr
    return coeff, rest


def _bare_seed(expr, stmt):
    """Whether ``expr`` is just the statement's seed, on a whole-domain statement."""
    return (covers_domain(stmt.write.field.grid, stmt.subdomain)
            and isinstance(expr, AbstractFunction)
            and retrieve_functions(expr) == [expr])


def _unguarded_term(expr, stmt, adjoints):
    """Whether the term ``expr`` of a whole-domain statement needs no domain-edge
    guard (:func:`~devito_perforad.region.vanishes_outside`)."""
    return (covers_domain(stmt.write.field.grid, stmt.subdomain)
            and vanishes_outside(expr, adjoints[stmt.write.field]))


def _by_dim(offsets, grid):
    return dict(zip(grid.dimensions, offsets, strict=True))


def _reads_primal_history(partial):
    """Whether ``partial`` reads a time-varying primal field."""
    return any(isinstance(app.function, TimeFunction)
               for app in retrieve_functions(partial, mode='unique'))


def _schedule(nodes):
    """Order the updates of one counter so every seed is complete before it is read."""
    def provider(f, level, reader):
        for n in nodes:
            if n.field is f and n.level == level and n is not reader:
                if n.guard is None or n.guard == reader.guard or (
                        n.guard == 'top' and reader.guard is None):
                    return n
        return None

    deps = {id(n): {id(p) for f, lv in n.reads if (p := provider(f, lv, n)) is not None}
            for n in nodes}
    order, done = [], set()
    pending = sorted(nodes, key=lambda n: n.rank)
    while pending:
        ready = [n for n in pending if deps[id(n)] <= done]
        if not ready:
            names = ', '.join(n.field.name for n in pending)
            raise AdjointError(f"Adjoint updates of {names} depend on each other within "
                               "one time step; the program cannot be reversed in gather "
                               "form.")
        n = ready[0]
        order.append(n)
        done.add(id(n))
        pending.remove(n)
    return order


def _check_buffers(nodes, adjoints):
    """A buffered adjoint must fit all the levels one counter touches."""
    span = defaultdict(set)
    for n in nodes:
        if n.level is not None:
            span[n.field].add(n.level)
        for f, level in n.reads:
            span[f].add(level)
    for f, levels in span.items():
        fb = adjoints[f]
        if isinstance(fb, TimeFunction) and not is_saved(fb):
            need = max(levels) - min(levels) + 1
            if need > fb.time_order + 1:
                raise AdjointError(
                    f"The adjoint `{fb.name}` of `{f.name}` must hold {need} "
                    f"time levels at once but a buffered TimeFunction with "
                    f"time_order={fb.time_order} holds {fb.time_order + 1}; "
                    "use save=nt for both fields.")
