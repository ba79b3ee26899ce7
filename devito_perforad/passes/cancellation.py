"""Pass: cancel a parameter's gradient term as a rational function.

A parameter's partial through a saved write, times a scaled seed, is a rational
function of values at the iteration point in which most terms cancel
(:func:`devito_perforad.differentiate.cancelled`): for the damped wave equation the
``vp`` gradient becomes the hand-written ``u * v.dt2`` with the chain rule to ``vp``.
"""

from dataclasses import replace

from devito import SparseFunction, TimeFunction

from ..differentiate import cancelled

__all__ = ['cancel_parameter_terms']


def cancel_parameter_terms(contributions):
    """The gathered contributions to time-invariant parameters, cancelled; the others
    as they are."""
    return [replace(c, coefficient=cancelled(c.coefficient))
            if c.via is None and not isinstance(c.target, (TimeFunction, SparseFunction))
            else c for c in contributions]
