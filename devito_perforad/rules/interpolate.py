"""The rule for sparse interpolations, ``S.interpolate(expr=E)`` (receivers).

The transpose of an interpolation is an injection of the sparse adjoint:
``gb += Sb.inject(dE/dg * Sb)`` for each field ``g`` in ``E``.

A TimeFunction ``g`` read at ``g[t + s]`` by the interpolation of step ``t - c``
receives its injection in the level the backward loop completes at counter ``t``,
``gb[t + w]`` (``c = s - w``), right after that level is gathered; the levels above
it that only the last steps read receive theirs once, at the top of the run. The
injection of a step outside the run is cut by a condition on the counter.
"""

import sympy
from devito import TimeFunction

from ..devito_compat import interpolation_positioned
from ..differentiate import linearised
from ..ir.contribution import Contribution
from ..ir.symbolic import Select, shift
from ..region import run_range

__all__ = ['transpose', 'linearise', 'restate']


def transpose(statement, partials, seed, levels):
    """The contributions of an interpolation: injections through the points of the
    sparse adjoint ``Sb`` (the seed's own function) into the adjoint of each read
    field (:func:`devito_perforad.checks.check_sparse_reads` has checked the
    reads).

    Parameters and returns as :func:`devito_perforad.rules.stencil.transpose`.
    """
    sb = seed.function
    out = []
    for a, d in partials:
        if not isinstance(a.field, TimeFunction):
            out.append(Contribution(a.field, None, None, statement, a, d * seed,
                                    via='inject', sparse=sb))
            continue
        edges = dict(levels.slots(a.field))
        time = levels.time
        for level in range(levels.w[a.field], a.time + 1):
            step = level - a.time
            expr = shift(d * seed, time=step)
            if step:
                expr = Select(sympy.Ge(time + step, run_range(time)[0]), expr,
                              sympy.S.Zero)
            out.append(Contribution(a.field, level, edges[level], statement, a, expr,
                                    step, via='inject', sparse=sb))
    return out


def linearise(statement, partials, tangents):
    """The tangent of an interpolation is an interpolation of the linearised
    expression into the tangent sparse function, its reads where the primal's are."""
    return interpolation_positioned(tangents[statement.write.field],
                                    linearised(statement, partials, tangents),
                                    increment=statement.increment)


def restate(statement):
    """An interpolation as Devito equations, as the derivation rewrote it."""
    return interpolation_positioned(statement.write.field, statement.rhs,
                                    increment=statement.increment)
