"""Generated names, from a registry per derivation.

Every name the transform invents (a temporary ``u_b_z0``, a set-aside seed
``u_b_seed1``, a core box ``core0``, a counter condition ``time_c0``, the MPI edges
``x_first0``) comes from the :class:`Names` registry of the derivation that needs it,
numbered from zero in the order the derivation asks. The same program therefore gives
the same names, and the same C, whatever the process built before it, which keeps
Devito's JIT cache warm across shots and workers.

:func:`naming` opens a registry for the duration of one derivation;
:func:`current` is the registry open now. The registry also memoises the objects
behind the names (a box, an edge ``Constant``), so a derivation asking twice gets the
same object, and nothing outlives the derivation.

Examples
--------
>>> with naming():
...     first = current().number('temporary')
...     second = current().number('temporary')
>>> with naming():
...     again = current().number('temporary')
>>> first, second, again
(0, 1, 0)
"""

from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ['Names', 'naming', 'current']


class Names:
    """The names and named objects of one derivation.

    ``number(group)`` hands out ``0, 1, 2, ...`` per group of names; ``memo(key,
    build)`` returns the object built for ``key``, building it on the first call.
    """

    def __init__(self):
        self._numbers = Counter()
        self._memo = {}

    def number(self, group):
        """The next number of ``group``, from zero."""
        n = self._numbers[group]
        self._numbers[group] += 1
        return n

    def name(self, prefix, group):
        """``prefix`` followed by the next number of ``group``."""
        return f'{prefix}{self.number(group)}'

    def memo(self, key, build):
        """The object built for ``key``; ``build()`` makes it on the first call."""
        if key not in self._memo:
            self._memo[key] = build()
        return self._memo[key]

    def get(self, key, default=None):
        """The object memoised for ``key``, if any."""
        return self._memo.get(key, default)


_open = ContextVar('devito_perforad_names', default=None)


@contextmanager
def naming():
    """Open a fresh :class:`Names` registry for the block (one derivation)."""
    token = _open.set(Names())
    try:
        yield _open.get()
    finally:
        _open.reset(token)


def current():
    """The registry of the derivation under way; outside one, a fresh registry (the
    names of a helper called on its own then start from zero)."""
    names = _open.get()
    return names if names is not None else Names()
