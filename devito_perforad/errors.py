"""Errors raised before anything runs."""

__all__ = ['AdjointError']


class AdjointError(ValueError):
    """A primal program or adjoint map that devito-perforad cannot differentiate.

    The message names the expression and the field at fault and says what to do.
    Raised while the adjoint is derived, never while it runs.
    """


def located(eq, field, problem):
    """Build an :class:`AdjointError` that names ``eq`` and ``field``."""
    name = getattr(field, 'name', field)
    return AdjointError(f"In `{eq}`, field `{name}`: {problem}")
