"""The time levels of one program, computed once: :class:`Levels`.

Who writes which level, the highest levels written, the levels each active field is
read at, the adjoint level ``w`` each counter of the backward loop completes, the
levels only the first or last steps touch (updates pinned at an edge of the run), and
the slots of a buffered adjoint that still hold a seed. The driver computes it once
per program and hands it to the rules, the passes and the emitters.

Examples
--------
>>> from devito import Eq, Grid, TimeFunction
>>> from devito_perforad.differentiate import partials
>>> from devito_perforad.ir.access import analyse
>>> grid = Grid(shape=(8,))
>>> u = TimeFunction(name='u', grid=grid, time_order=2, space_order=2)
>>> program = analyse([Eq(u.forward, 2*u - u.backward + u.dx2)])
>>> levels = Levels.of(program, program, [partials(s, {u}) for s in program])
>>> levels.low[u], levels.w[u], levels.high[u]
(-1, -1, 0)
>>> levels.slots(u)
[(-1, None), (0, 'top')]
"""

from collections import defaultdict
from dataclasses import dataclass, field

import sympy
from devito import TimeFunction

from .errors import AdjointError, located
from .fields import buffer_size, is_saved
from .ir.access import at_offsets
from .ir.symbolic import Select
from .region import run_range, space_conditions

__all__ = ['Levels', 'prologue', 'written_levels']


def prologue(program):
    """How many statements of ``program`` run before its time loop: the leading
    statements that touch no TimeFunction (``Eq(z, c.dx)`` before a loop reading
    ``z``). Devito runs them once, before the loop; their adjoints run once, after
    the backward loop, from the seeds the loop gathered. All of a time-free
    program."""
    return next((i for i, s in enumerate(program) if s.is_timed), len(program))


def written_levels(program):
    """Per field, the highest level any statement of ``program`` writes."""
    top = {}
    for s in program:
        if s.write.time is not None:
            top[s.write.field] = max(top.get(s.write.field, s.write.time), s.write.time)
    return top


@dataclass(frozen=True)
class Levels:
    """The time levels of a program and of its adjoint loop.

    Attributes
    ----------
    time : devito.TimeDimension or None
        The loop counter; ``None`` for a time-free program.
    writers : dict
        Field -> the statements writing it, in program order.
    assigned : dict
        Field -> ``(level, subdomain)``: the highest level an ``Eq`` assigns, and the
        region it assigns it on.
    low, high : dict
        Active TimeFunction -> the lowest and highest level it is read at.
    w : dict
        Active TimeFunction -> the adjoint level each counter completes.
    versions : frozenset
        The internal fields holding a level's value between two writes of one step
        (:mod:`~devito_perforad.ir.versions`): their adjoints hold no seed.
    """

    time: object = None
    writers: dict = field(default_factory=dict)
    assigned: dict = field(default_factory=dict)
    low: dict = field(default_factory=dict)
    high: dict = field(default_factory=dict)
    w: dict = field(default_factory=dict)
    versions: frozenset = frozenset()

    @classmethod
    def of(cls, program, active=(), partials=(), versions=(), internal=()):
        """The levels of ``program``; with its ``active`` statements and their
        ``partials``, also those of the adjoint loop; ``versions`` as the attribute.
        The ``internal`` fields (versions, and the time levels of temporaries) may have
        their adjoints completed a counter below the lowest level read.

        Raises
        ------
        AdjointError
            If the time dependencies cannot be reversed into a gather loop.
        """
        timed = [s for s in program if s.is_timed]
        time = timed[0].write.field.grid.time_dim if timed else None
        writers, assigned = defaultdict(list), {}
        for s in program:
            writers[s.write.field].append(s)
            if s.write.time is not None and not s.increment:
                if s.write.field not in assigned or s.write.time > assigned[
                        s.write.field][0]:
                    assigned[s.write.field] = (s.write.time, s.subdomain)
        low, high = {}, {}
        for ds in partials:
            for a, _ in ds:
                if isinstance(a.field, TimeFunction):
                    low[a.field] = min(low.get(a.field, a.time), a.time)
                    high[a.field] = max(high.get(a.field, a.time), a.time)
        # an internal field is read at the level it is written (a temporary also at
        # the one below); its adjoint may be completed a counter earlier, so that no
        # field's adjoint is raised for it
        low.update({v: low[v] - 1 for v in {*versions, *internal} if v in low})
        w = _solve(active, partials, low, high)
        return cls(time, dict(writers), assigned, low, high, w, frozenset(versions))

    def slots(self, f):
        """The adjoint updates of ``f`` one counter makes, as ``(level, edge)``: the
        level ``w`` at every counter, the levels above it once at the top of the run
        and those below once at the bottom; ``[(None, None)]`` for a time-free
        field."""
        if f not in self.w:
            return [(None, None)]
        w = self.w[f]
        return ([(w, None)] + [(w + k, 'top') for k in range(1, self.high[f] - w + 1)]
                + [(w - k, 'bottom') for k in range(1, w - self.low[f] + 1)])

    @staticmethod
    def span(updates):
        """Per field, the levels one counter of the backward loop touches: those its
        ``updates`` (:class:`~devito_perforad.schedule.Update`) write and the seed
        levels they read. A buffered adjoint must hold them all at once."""
        touched = defaultdict(set)
        for u in updates:
            if u.level is not None:
                touched[u.target].add(u.level)
            for f, level in u.reads:
                touched[f].add(level)
        return dict(touched)

    # -- seed slots ---------------------------------------------------------------

    def seed_where(self, f, fb, level, edge):
        """Where the slot of the adjoint ``fb`` at ``level`` (relative to the counter)
        still holds a seed of that level: ``sympy.true``, ``sympy.false`` or a
        condition.

        In a buffered field the slot of level ``L`` also holds ``L + nb``,
        ``L + 2nb``... If the primal wrote a later level into that slot, what sits
        there now is the adjoint of that later level, not a seed of ``L``: it must not
        be added. Outside the SubDomain the primal assigned on, the slot was never
        overwritten: every level aliasing it is the same value, so the seed is always
        kept there.
        """
        if f in self.versions:   # an intermediate value: no seed, ever
            return sympy.false
        if level is None or is_saved(fb) or f not in self.assigned:
            return sympy.true
        time = self.time
        top, subdomain = self.assigned[f]
        nb = buffer_size(fb)
        # seed valid iff  time + level + nb > time_M + top
        first = top - nb - level + 1      # valid iff time >= time_M + first
        if edge == 'top':
            valid = sympy.true if first <= 0 else sympy.false
        else:
            # time >= Max(time_M, time_last) + first, without Max: Devito 4.8.23
            # defines its MAX macro only for expressions, not for the condition of an
            # ``if``
            valid = sympy.And(*[sympy.Ge(time, b + first)
                                for b in run_range(time)[1].args])
        inside = space_conditions(f.grid, subdomain, (0,) * f.grid.dim)
        if inside:
            valid = sympy.Or(valid, sympy.Not(sympy.And(*inside)))
        return valid

    def seed_mask(self, f, fb, level, edge):
        """The adjoint ``fb`` at ``level``, where it is still a seed (see
        :meth:`seed_where`), else 0."""
        own = at_offsets(fb, time=level)
        valid = self.seed_where(f, fb, level, edge)
        if valid is sympy.true:
            return own
        if valid is sympy.false:
            return sympy.S.Zero
        # ``own`` is a finite adjoint value: a 0/1 factor is exact and keeps loops
        # simple. (A ternary on the counter alone, ``valid ? own : 0``, makes the C
        # compiler unswitch every loop nest on it: the 1D Burgers adjoint then took
        # 4.6 s to compile instead of 1.2 s.)
        return Select(valid, sympy.S.One, sympy.S.Zero) * own

    def seed_counters(self, f, fb, level):
        """The counters of the backward loop at which the slot the update writes
        still holds a seed, as a condition on the counter alone; ``None`` where the
        seed is kept at every counter, or only at some points (the primal ran on a
        SubDomain).

        A buffered adjoint's slot holds a seed only for the first counters of the run
        (``time >= time_M`` for the wave equation). The loop's update then need not
        read the slot it overwrites: the emitter sets the seed aside and adds it back
        at those counters only (see :class:`devito_perforad.schedule.Step`). Adding
        ``0/1 * seed`` instead would read the slot at every counter: one more stream
        of memory than the primal's loop, 10% of the 2D acoustic adjoint's time.

        Examples
        --------
        >>> from devito import Eq, Grid, TimeFunction
        >>> from devito_perforad.ir.access import analyse
        >>> u = TimeFunction(name='u', grid=Grid(shape=(8,)), time_order=2)
        >>> ub = TimeFunction(name='ub', grid=u.grid, time_order=2)
        >>> levels = Levels.of(analyse([Eq(u.forward, u + u.backward)]))
        >>> levels.seed_counters(u, ub, -1)
        (time >= time_last) & (time >= time_M)
        """
        valid = self.seed_where(f, fb, level, None)
        if valid in (sympy.true, sympy.false) or any(
                getattr(d, 'is_Space', False) for d in valid.free_symbols):
            return None
        return valid


def _solve(program, derivs, lo, hi):
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
