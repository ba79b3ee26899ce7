"""Random linear Devito programs, to check derived adjoints against what users write.

``random_program(seed)`` builds one program: a grid of 1 to 3 dimensions and 1 to 3
coupled ``TimeFunction`` s (time order 1 or 2, buffered or saved), each updated by an
``Eq`` whose right-hand side sums random terms. A term is a coefficient (a number, a
``Function`` or a product of two) times a derivative of a field: none, first or
second, centred, one-sided, half-point or whole-point ``x0``-shifted, or mixed. The
field is read at its current level, at its previous one, or at the new level of a
field updated earlier in the step. Some programs add an ``Inc`` or a further ``Eq``
into a level already written, injections at random points and interpolations into
receivers.

``check(program)`` derives the adjoint and says what happened: ``('exact', error)``
with the dot-test error, ``('refused', message)`` with the ``AdjointError``'s message,
or ``('wrong', error)``.

Point it at your own patterns by writing a function like ``random_program`` that
returns a :class:`Program`; ``check`` does the rest.

Examples
--------
>>> program = random_program(3)
>>> program.description.startswith('seed 3:')
True
"""

from dataclasses import dataclass, field

import numpy as np
from devito import Eq, Function, Grid, Inc, SparseTimeFunction, TimeFunction

from devito_perforad import AdjointError, AdjointOperator, adjoint_functions

__all__ = ['Program', 'check', 'random_program']

DTYPE = np.float64


@dataclass
class Program:
    """A linear program, with what its dot test needs."""
    equations: list
    adjoints: dict          # every written field and every source -> its adjoint
    inputs: dict            # field -> entries the program does not overwrite
    apply: dict             # Operator.apply arguments
    description: str
    parameters: list = field(default_factory=list)   # coefficients (constants)


def random_program(seed, ndim=None):
    """A random linear Devito program (see the module's docstring).

    Parameters
    ----------
    seed : int
    ndim : int, optional
        The grid's dimensions (by default, drawn from ``seed``).

    Returns
    -------
    Program
    """
    rng = np.random.default_rng(seed)
    drawn = int(rng.integers(1, 4))
    ndim = ndim or drawn
    so = int(rng.choice([2, 4]))
    n = {1: 2 * so + 9, 2: 2 * so + 5, 3: so + 6}[ndim]
    grid = Grid(shape=(n,) * ndim, extent=(1.,) * ndim, dtype=DTYPE)
    dims = grid.dimensions
    nt = 5
    saved = bool(rng.random() < 0.3)
    nfields = int(rng.integers(1, 4))
    fields = [TimeFunction(name=f'f{i}', grid=grid, space_order=so,
                           time_order=int(rng.choice([1, 2])),
                           save=nt + 2 if saved else None) for i in range(nfields)]
    coefficients = [Function(name=f'c{i}', grid=grid, space_order=so) for i in range(2)]
    for c in coefficients:
        c.data_with_halo[:] = 0.5 + rng.random(c.data_with_halo.shape)
    words = [f'seed {seed}: {ndim}D, space order {so}, '
             f'{"saved" if saved else "buffered"}']

    def coefficient():
        kind = rng.integers(3)
        if kind == 0:
            return float(np.round(rng.uniform(-1, 1), 3))
        if kind == 1:
            return coefficients[rng.integers(2)]
        return coefficients[0] * coefficients[1]

    def derivative(f):
        d = dims[rng.integers(ndim)]
        h = d.spacing
        kind = rng.choice(['none', 'centred', 'second', 'half', 'one-sided', 'shifted',
                           'mixed'])
        if kind == 'none':
            return f, kind
        if kind == 'centred':
            return f.diff(d), kind
        if kind == 'second':
            return f.diff(d, 2), kind
        if kind == 'half':
            return f.diff(d, x0=d + rng.choice([-1, 1]) * h / 2), kind
        if kind == 'one-sided':
            return getattr(f, f'd{d.name}{rng.choice(["l", "r"])}'), kind
        if kind == 'shifted':
            return f.diff(d, x0=d + rng.choice([-1, 1]) * h), kind
        other = dims[(list(dims).index(d) + 1) % ndim]
        if other is d:
            return f.diff(d), 'centred'
        return f.diff(d).diff(other), kind

    equations = []
    for i, f in enumerate(fields):
        terms, kinds = f, []
        for _ in range(int(rng.integers(1, 4))):
            j = int(rng.integers(nfields))
            g = fields[j]
            levels = ['now', 'previous', 'new'] if j < i else ['now', 'previous']
            level = rng.choice(levels)
            read = {'now': g, 'previous': g.backward if g.time_order == 2 else g,
                    'new': g.forward}[level]
            d, kind = derivative(read)
            terms = terms + 0.01 * coefficient() * d
            kinds.append(f'{kind} {g.name} {level}')
        if f.time_order == 2:
            terms = terms + 0.5 * (f - f.backward)
        equations.append(Eq(f.forward, terms))
        words.append(f'{f.name}: {", ".join(kinds)}')
    inputs = {}
    # more writes to a level already written
    if rng.random() < 0.3:
        f, g = fields[rng.integers(nfields)], fields[rng.integers(nfields)]
        op = Inc if rng.random() < 0.5 else Eq
        rhs = 0.01 * coefficient() * g + (f.forward if op is Eq else 0)
        equations.append(op(f.forward, rhs))
        words.append(f'{op.__name__} {f.name}.forward from {g.name}')
    # injections and interpolations at random points
    for kind in ('src', 'rec'):
        if rng.random() < 0.6:
            npoint = int(rng.integers(1, 3))
            sparse = SparseTimeFunction(name=kind, grid=grid, npoint=npoint, nt=nt + 2)
            sparse.coordinates.data[:] = rng.uniform(0.2, 0.8, (npoint, ndim))
            f = fields[rng.integers(nfields)]
            if kind == 'src':
                equations += sparse.inject(field=f.forward, expr=sparse * coefficient())
                inputs[sparse] = slice(None)
            else:
                equations += sparse.interpolate(expr=f)
            words.append(f'{"injection into" if kind == "src" else "receivers of"} '
                         f'{f.name}')
    first, last = 1, nt - 1     # time steps: a previous level exists at the first
    for f in fields:
        levels = np.ones(f.data.shape[0], dtype=bool)
        if saved:
            levels[first + 1:last + 2] = False
        else:
            levels[(first + 1) % (f.time_order + 1)] = False
        inputs[f] = levels
    # every written field and sparse function, buffers as wide as the adjoint needs
    adjoints = adjoint_functions(equations)
    return Program(equations, adjoints, inputs, dict(time_m=first, time_M=last),
                   '; '.join(words), coefficients)


def check(program, rtol=1e-11, rng=None):
    """Derive the adjoint of ``program`` and dot-test it.

    Returns
    -------
    tuple
        ``('exact', error)``, ``('refused', message)`` or ``('wrong', error)``.
    """
    from devito import Operator
    rng = rng or np.random.default_rng(0)
    try:
        aop = AdjointOperator(program.equations, program.adjoints)
    except AdjointError as e:
        return 'refused', str(e)
    op = Operator(program.equations)
    x = {}
    for f in program.adjoints:
        x[f] = np.zeros(f.data.shape, dtype=DTYPE)
        if f in program.inputs:
            index = program.inputs[f]
            x[f][index] = rng.standard_normal(x[f][index].shape)
        f.data[:] = x[f]
    op.apply(**program.apply)
    # a wider buffered adjoint (save=Buffer(n)) holds the seeds in its first slots,
    # laid out as the primal's buffer; the others are its own: filled with noise
    y = {f: rng.standard_normal(f.data.shape) for f in program.adjoints}
    for f, fb in program.adjoints.items():
        fb.data[:] = rng.standard_normal(fb.data.shape)
        fb.data[:len(f.data)] = y[f]
    forward = sum(np.vdot(f.data, y[f]) for f in program.adjoints)
    aop.apply(**program.apply)
    backward = sum(np.vdot(x[f], fb.data[:len(f.data)])
                   for f, fb in program.adjoints.items())
    error = abs(forward - backward) / max(abs(forward), abs(backward))
    return ('exact' if error <= rtol else 'wrong'), error

