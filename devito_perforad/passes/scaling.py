"""Pass: carry an adjoint scaled by its statement's pointwise factor.

A stencil ``y = K * R`` with ``K = 1/D`` pointwise and time-invariant (the damped wave
equation's ``1/(m/dt**2 + damp/dt)``) reverses into ``L^T(K yb)``: every contribution
reads the product ``K yb``. The adjoint loop therefore carries ``yb_s = K yb`` in
``yb``'s own storage, from one ``yb_s = yb * K`` before the loop to one
``yb = yb_s / K`` after it; then the backward update is the primal's stencil on
``yb_s`` with ``K`` applied once, and no temporary is needed. Only for buffered
adjoints (a saved adjoint's every level is output) of fields one whole-domain
statement assigns: there ``D`` is finite and non-zero wherever the primal is.
"""

from dataclasses import replace

import sympy
from devito import Eq, TimeFunction

from ..differentiate import pointwise_factor
from ..fields import buffer_size, is_saved
from ..ir.access import at_offsets
from ..region import covers_domain
from ..schedule import once

__all__ = ['scales', 'scaled_seed', 'scale_injections', 'rescale']


def scales(levels, adjoints, grid):
    """The pointwise factor ``K`` of each field the adjoint carries scaled."""
    out = {}
    for y, writers in levels.writers.items():
        stmts = [s for s in writers if s.write.time is not None and not s.increment]
        yb = adjoints.get(y)
        if (len(stmts) != 1 or not isinstance(yb, TimeFunction) or is_saved(yb)
                or not stmts[0].is_dense
                or not covers_domain(grid, stmts[0].subdomain)):
            continue
        factor = pointwise_factor(stmts[0])
        if factor is not None:
            out[y] = factor
    return out


def scaled_seed(seed, field, scales):
    """The seed a statement writing ``field`` reads: ``yb_s / K`` where ``yb`` is
    carried scaled (sympy's ``Mul``, so that ``K`` cancels against the partials)."""
    if field in scales:
        return sympy.Mul(seed, 1 / scales[field])
    return seed


def scale_injections(contributions, scales):
    """Injections into a scaled adjoint (receivers) inject ``K`` times their value."""
    return [replace(c, coefficient=scales[c.target] * c.coefficient)
            if c.via == 'inject' and c.target in scales else c for c in contributions]


def rescale(scales, adjoints, time, edge, power):
    """``yb *= K**power`` on every slot of each scaled adjoint, once, at the ``edge``
    of the run."""
    eqs = []
    for y, factor in scales.items():
        yb = adjoints[y]
        slots = yb.time_order + 1 if is_saved(yb) else buffer_size(yb)
        for level in range(slots):
            own = at_offsets(yb, time=level)
            eqs.append(once(Eq(own, own * factor ** power), time, edge))
    return eqs
