"""Transpose rules, one per statement kind, registered in one table.

In the style of JAX's ``primitive_transposes``: ``RULES[statement.kind]`` takes a primal
statement, its partial derivatives (:func:`devito_perforad.differentiate.partials`), the
seed (the adjoint of what it writes) and the program's
:class:`~devito_perforad.levels.Levels`, and returns the statement's adjoint
contributions (:class:`~devito_perforad.ir.contribution.Contribution`). A rule reads
nothing else and changes nothing: the driver (:mod:`devito_perforad.derive`) sums the
contributions per adjoint target.

``TANGENTS[statement.kind]`` is the sibling table of the tangent (forward) mode: it
takes the statement, its partials and the tangent map, and returns the tangent
statement's equations. ``RESTATED[statement.kind]`` returns the statement itself as
Devito equations, for a primal statement the derivation rewrote (a value between two
writes of a level held in a field of its own, :mod:`~devito_perforad.ir.versions`).

========================  ====================  ==============================
kind                      primal                adjoint contributions
========================  ====================  ==============================
``'update'``              ``Eq(y, R)``          ``gb += (dR/dg)^T yb``, gathered
``'increment'``           ``Inc(y, R)``         as ``'update'``
``'inject'``              ``S.inject(f, E)``    ``Sb += interpolate(dE/dS fb)``,
                                                ``hb += S.inject(dE/dh fb)``
``'interpolate'``         ``S.interpolate(E)``  ``gb += Sb.inject(dE/dg Sb)``
========================  ====================  ==============================

A new statement kind is one new module here with its three functions, and one entry
in each table; ``docs/how-it-works.md`` shows an example.
"""

from . import inject, interpolate, stencil

__all__ = ['RULES', 'TANGENTS', 'RESTATED']

RULES = {
    'update': stencil.transpose,
    'increment': stencil.transpose,
    'inject': inject.transpose,
    'interpolate': interpolate.transpose,
}

TANGENTS = {
    'update': stencil.linearise,
    'increment': stencil.linearise,
    'inject': inject.linearise,
    'interpolate': interpolate.linearise,
}

RESTATED = {
    'update': stencil.restate,
    'increment': stencil.restate,
    'inject': inject.restate,
    'interpolate': interpolate.restate,
}
