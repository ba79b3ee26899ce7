"""The rule for sparse injections, ``S.inject(field=f, expr=E)``.

Injection and interpolation transpose into each other:

* for the sparse function ``S`` itself in ``E``: ``Sb += interpolate(dE/dS * fb)``;
* for a time-invariant field ``h`` in ``E``: ``hb += S.inject(dE/dh * fb)``.

Injections scatter to the few grid points around each sparse point and use atomics
there; the dense adjoint stencils stay gathers.
"""

from devito import SparseFunction

from ..devito_compat import injection_positioned, staggering_shifts
from ..differentiate import linearised
from ..ir.access import at_offsets
from ..ir.contribution import Contribution

__all__ = ['transpose', 'linearise', 'restate']


def transpose(statement, partials, seed, levels):
    """The contributions of an injection: an interpolation of ``dE/dS * fb`` into the
    adjoint of ``S``, an injection of ``dE/dh * fb`` into the adjoint of each field
    ``h`` (:func:`devito_perforad.checks.check_sparse_reads` has checked the reads).

    Parameters and returns as :func:`devito_perforad.rules.stencil.transpose`.
    """
    reads = (statement.write.field, statement.write.time)
    out = []
    for a, d in partials:
        if isinstance(a.field, SparseFunction):
            out.append(Contribution(a.field, None, None, statement, a, d * seed,
                                    reads=reads, via='interpolate', sparse=a.field))
        else:
            out.append(Contribution(a.field, None, None, statement, a, d * seed,
                                    reads=reads, via='inject', sparse=statement.sparse))
    return out


def linearise(statement, partials, tangents):
    """The tangent of an injection is an injection of the linearised expression."""
    dot = linearised(statement, partials, tangents)
    target = at_offsets(tangents[statement.write.field], time=statement.write.time,
                        space=statement.write.space)
    shifts = staggering_shifts(statement.write.field)
    return injection_positioned(statement.sparse, target, dot, shifts) if dot != 0 \
        else []


def restate(statement):
    """An injection as Devito equations, as the derivation rewrote it."""
    target = at_offsets(statement.write.field, time=statement.write.time,
                        space=statement.write.space)
    return injection_positioned(statement.sparse, target, statement.rhs,
                                staggering_shifts(statement.write.field))
