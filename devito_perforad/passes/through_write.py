"""Pass: parameter partials through saved writes.

A time-stepping stencil often has the form ``y = b + a(h) * L``, ``L`` the stencil's
off-centre sum and ``a`` a pointwise coefficient of the parameter ``h``. Where the
written level ``y`` is saved, ``a L = y - b``: the partial no longer reads the whole
stencil of the primal field, only its centre values
(:func:`devito_perforad.differentiate.through_write`).

The saved level holds the statement's value plus what later statements injected into
it; each such injection ``S.inject(y, Q)`` gives a correction
``hb -= S.inject(a'/a * Q * yb)``. A later dense increment keeps the partial as it
is. With checkpointing, the level a step wrote is still in the buffer when the adjoint
of that step runs, so buffered fields qualify too.
"""

from dataclasses import replace

from devito import SparseFunction, TimeFunction

from ..differentiate import through_write
from ..fields import is_saved
from ..ir.contribution import Contribution

__all__ = ['through_saved_writes']


def through_saved_writes(program, active, derivs, seeds, checkpointed):
    """The partials of the ``active`` statements, those of parameters rewritten
    through the saved write, and the corrections for later injections.

    Parameters
    ----------
    program : list of Statement
    active : list of Statement
        The statements writing an active field.
    derivs : list of list of (Access, sympy.Expr)
        Their partials.
    seeds : list of sympy.Expr
        Their seeds.
    checkpointed : bool
        Whether buffered fields are recomputed (then they qualify too).

    Returns
    -------
    (list, list of Contribution)
        The partials, and the corrections as injections into the parameters'
        adjoints.
    """
    corrections = []
    out = []
    for stmt, ds, seed in zip(active, derivs, seeds, strict=True):
        y = stmt.write
        later = [s for s in program[program.index(stmt) + 1:]
                 if s.write.field is y.field and s.write.time == y.time]
        if (stmt.kind != 'update' or not (is_saved(y.field) or checkpointed)
                or any(s.kind != 'inject' for s in later)):
            out.append(ds)
            continue
        new = []
        for a, d in ds:
            rewritten = None
            if not isinstance(a.field, (TimeFunction, SparseFunction)):
                rewritten = through_write(stmt, a, y.expr)
            if rewritten is None:
                new.append((a, d))
                continue
            d, ratio = rewritten
            new.append((a, d))
            correction = Contribution(a.field, None, None, stmt, a, None, via='inject')
            corrections += [replace(correction, coefficient=-ratio * s.rhs * seed,
                                    sparse=s.sparse) for s in later]
        out.append(new)
    return out, corrections
