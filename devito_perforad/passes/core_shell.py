"""Pass: split a guarded update into a bare core and guarded shells.

Where every domain-edge guard of an update's terms holds (the core, nearly the whole
grid) the terms run bare, exactly the primal's stencil shape; the guarded version runs
only on thin shells along the edges. The boxes are SubDomains named from the
derivation's registry (:mod:`devito_perforad.ir.names`).

Examples
--------
>>> import sympy
>>> from devito import Grid
>>> from devito_perforad.region import space_conditions
>>> grid = Grid(shape=(16,))
>>> x = grid.dimensions[0]
>>> core, shells = split(grid, [(space_conditions(grid, None, (-2,)), x)])
>>> core.name, core.spec, [s.name for s in shells]
('core0', (('middle', 2, 0),), ['shell0xleft'])
"""

import sympy
from devito import Eq, SubDomain

from ..devito_compat import sympy_subdomain_bounds
from ..ir.names import current
from ..region import guarded

__all__ = ['updates', 'split', 'domain_edge', 'Box']


def updates(lhs, keep, terms, grid, scale=sympy.S.One):
    """One adjoint update, ``lhs = keep + scale * sum(terms)``, as Devito equations:
    the bare terms on the core, the guarded ones on the shells (:func:`split`), or
    one guarded equation where the guards cannot be split off.

    ``terms`` are ``(conditions, expr)`` pairs (:func:`~devito_perforad.region.guarded`).
    """
    pieces = split(grid, terms)
    if pieces is None:
        return [Eq(lhs, keep + scale * guarded(terms))]
    core, shells = pieces
    return ([Eq(lhs, keep + scale * unguarded(terms), subdomain=core)]
            + [Eq(lhs, keep + scale * guarded(terms), subdomain=shell)
               for shell in shells])


class Box(SubDomain):
    """A box of the grid: one ``define`` spec per dimension (``d``, ``('left', n)``,
    ``('right', n)`` or ``('middle', l, r)``)."""

    def __init__(self, name, spec, grid):
        self.name = name
        self.spec = tuple(spec)
        with sympy_subdomain_bounds():
            super().__init__(grid=grid)

    def define(self, dimensions):
        return dict(zip(dimensions, self.spec, strict=True))


def domain_edge(condition):
    """``(dim, side, k)`` if ``condition`` only guards a domain edge, else ``None``.

    ``x - 2 >= x_m`` is ``(x, 'left', 2)``: the term reaches two points past the left
    edge of the domain. ``x + 1 <= x_M`` is ``(x, 'right', 1)``.
    """
    roles = current()
    for d in condition.free_symbols:
        if not getattr(d, 'is_Space', False):
            continue
        k = condition.lhs - d
        if not k.is_Integer:
            return None
        rhs = condition.rhs
        if isinstance(condition, sympy.GreaterThan) and (
                rhs == d.symbolic_min or roles.get(('edge role', rhs)) == (d, 'left')):
            return (d, 'left', -int(k))
        if isinstance(condition, sympy.LessThan) and (
                rhs == d.symbolic_max or roles.get(('edge role', rhs)) == (d, 'right')):
            return (d, 'right', int(k))
    return None


def split(grid, terms):
    """Split the domain so that the bulk runs without space guards.

    Returns ``None`` when the guards cannot be dropped anywhere (a guard on a SubDomain
    bound, or a domain too small), else ``(core, shells)``: the core is the box where
    every domain-edge guard of ``terms`` holds, the shells are disjoint slabs covering
    the rest (``2 * ndim`` at most, so the loop-nest count stays ``2 * ndim + 1``).
    """
    reach = {d: [0, 0] for d in grid.dimensions}
    for conditions, _ in terms:
        for c in conditions:
            if any(getattr(s, 'is_Time', False) for s in c.free_symbols):
                continue
            edge = domain_edge(c)
            if edge is None:
                return None
            d, side, k = edge
            reach[d][side == 'right'] = max(reach[d][side == 'right'], k)
    if not any(any(r) for r in reach.values()):
        return None
    if any(lo + hi >= n for (lo, hi), n in zip(reach.values(), grid.shape, strict=True)):
        return None
    names = current()

    def boxes():
        dims = grid.dimensions
        n = names.number('box')
        core = Box(f'core{n}', [('middle', *reach[d]) for d in dims], grid)
        shells = []
        for i, d in enumerate(dims):
            inner = [('middle', *reach[e]) for e in dims[:i]]
            outer = list(dims[i + 1:])
            for side, k in zip(('left', 'right'), reach[d], strict=True):
                if k:
                    shells.append(Box(f'shell{n}{d.name}{side}',
                                      inner + [(side, k)] + outer, grid))
        return core, shells

    return names.memo(('boxes', grid, tuple(tuple(r) for r in reach.values())), boxes)


def unguarded(terms):
    """``guarded(terms)`` with the domain-edge guards dropped (for the core)."""
    return guarded([([c for c in conditions if domain_edge(c) is None], expr)
                    for conditions, expr in terms])
