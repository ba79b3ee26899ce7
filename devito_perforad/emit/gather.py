"""The gather form: every adjoint update writes only its own point.

Each adjoint level is one stencil update that sums the gathered terms of all
statements that read it (:mod:`devito_perforad.passes.factoring` groups them, and
:mod:`devito_perforad.passes.core_shell` runs them bare on the core). The form runs
the passes that keep the adjoint as cheap as the primal: the scaled adjoint variable,
the time shift of the gradient's terms, and seeds set aside
(:meth:`devito_perforad.schedule.Step.set_aside`).
"""

from collections import defaultdict

from ..ir.access import at_offsets
from ..passes.composition import compose
from ..passes.core_shell import updates
from ..passes.scaling import scales
from ..passes.time_shift import shift_parameter_terms
from ..region import needs_no_edge_guard, space_conditions
from ..rules.stencil import transpose

__all__ = ['Gather']


class Gather:
    """The gather form's choices, for :func:`devito_perforad.derive.derive`."""

    name = 'gather'

    def scales(self, levels, adjoints, grid):
        """The fields whose adjoints are carried scaled
        (:mod:`devito_perforad.passes.scaling`)."""
        return scales(levels, adjoints, grid)

    def shift_time(self, updates, adjoints, levels, checkpointed):
        """The time-shift pass, unless the primal is recomputed (checkpointing)."""
        if checkpointed:
            return updates, {}, [], []
        return shift_parameter_terms(updates, adjoints, levels)

    def compose(self, statement, contributions, seed, levels, active):
        """Nested derivatives reversed as compositions
        (:mod:`devito_perforad.passes.composition`)."""
        return compose(statement, contributions, seed, levels, active, transpose)

    def factors(self, edge):
        """Whether an update at ``edge`` is factored: always."""
        return True

    def begin(self, step, nodes, adjoints):
        """Set aside the seeds of the loop's levels before the loop."""
        eqs = []
        for node in nodes:
            if node.edge is None and node.level is not None:
                eqs += step.set_aside(node.target, adjoints[node.target], node.level)
        return eqs

    def loop_update(self, step, node, own, keep, scale):
        """The update of ``node`` at every counter: a gather, into the step."""
        step.update(own, keep, list(node.terms), scale, node.target)
        return []

    def time_free(self, contributions, adjoints, grid):
        """A time-free statement's contributions, one gathered update per target."""
        by_target = defaultdict(list)
        for c in contributions:
            where = [] if needs_no_edge_guard(c.coefficient, c.statement, adjoints) else \
                space_conditions(grid, c.statement.subdomain, c.shift)
            by_target[c.target].append((where, c.gathered))
        eqs = []
        for g, terms in by_target.items():
            gb = at_offsets(adjoints[g])
            eqs += updates(gb, gb, terms, grid)
        return eqs

