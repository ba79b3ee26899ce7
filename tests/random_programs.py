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
or ``('wrong', error)``. On tiny programs, ``jacobians(program)`` builds the primal's
Jacobian column by column and the adjoint's row by row, from unit vectors: a
check entry by entry, where the dot test sees one random pair. With
``random_program(seed, nonlinear=True)`` every term is nonlinear (a product with a
field, ``Max``, ``Min``), and ``check_nonlinear(program)`` checks the adjoint and the
tangent against central differences.

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
import sympy
from devito import Eq, Function, Grid, Inc, SparseTimeFunction, TimeFunction

from devito_perforad import AdjointError, AdjointOperator, adjoint_functions

__all__ = ['Program', 'check', 'check_nonlinear', 'jacobians', 'primal',
           'random_program']

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


def random_program(seed, ndim=None, nonlinear=False):
    """A random linear Devito program (see the module's docstring).

    Parameters
    ----------
    seed : int
    ndim : int, optional
        The grid's dimensions (by default, drawn from ``seed``).
    nonlinear : bool, optional
        Make each term nonlinear: times a field, or through ``Max``/``Min``. The
        fields are then saved (the adjoint reads their values at every step).

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
    saved = bool(rng.random() < 0.3) or nonlinear
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
            if nonlinear:
                d, how = _nonlinear(d, fields[rng.integers(nfields)], rng)
                kind = f'{how} {kind}'
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


def _nonlinear(d, g, rng):
    """``d`` times the field ``g``, or through ``Max``/``Min``."""
    kind = int(rng.integers(3))
    if kind == 0:
        return d * g, f'{g.name} times'
    if kind == 1:
        return sympy.Max(d, 0), 'Max of'
    return sympy.Min(d, g), f'Min with {g.name} of'


def check_nonlinear(program, h=1e-6, rtol=1e-6, rng=None):
    """Derive the adjoint and the tangent of a nonlinear ``program`` and check both
    against central differences of the primal along a random direction.

    Returns
    -------
    tuple
        ``('exact', (adjoint error, tangent error))``, ``('refused', message)`` or
        ``('wrong', (adjoint error, tangent error))``. Where only the tangent is
        refused, the tangent error is the refusal's message.
    """
    from devito_perforad import TangentOperator, adjoint_function
    rng = rng or np.random.default_rng(0)
    op = primal(program)
    fields = list(program.adjoints)
    tangents = {f: adjoint_function(f, f'{f.name}_d') for f in fields}
    try:
        aop = AdjointOperator(program.equations, program.adjoints)
    except AdjointError as e:
        return 'refused', str(e)
    try:
        top = TangentOperator(program.equations, tangents)
    except AdjointError as e:
        top, refused = None, str(e)
    x, dx = {}, {}
    for f in fields:
        x[f], dx[f] = np.zeros(f.data.shape), np.zeros(f.data.shape)
        if f in program.inputs:
            index = program.inputs[f]
            x[f][index] = rng.standard_normal(x[f][index].shape)
            dx[f][index] = rng.standard_normal(x[f][index].shape)
    y = {f: rng.standard_normal(f.data.shape) for f in fields}

    def run(eps):
        for f in fields:
            f.data[:] = x[f] + eps * dx[f]
        op.apply(**program.apply)
        return {f: f.data.copy() for f in fields}

    plus, minus = run(h), run(-h)
    fd = {f: (plus[f] - minus[f]) / (2 * h) for f in fields}
    run(0)
    for f, fb in program.adjoints.items():
        fb.data[:] = 0
        fb.data[:len(f.data)] = y[f]
    aop.apply(**program.apply)
    derivative = sum(np.vdot(fd[f], y[f]) for f in fields)
    adjoint = sum(np.vdot(dx[f], fb.data[:len(f.data)])
                  for f, fb in program.adjoints.items())
    adjoint_error = float(abs(adjoint - derivative) / abs(derivative))
    if top is None:
        return ('exact' if adjoint_error <= rtol else 'wrong'), (adjoint_error, refused)
    for f in fields:
        f.data[:] = x[f]
        tangents[f].data[:] = dx[f]
    top.apply(**program.apply)
    scale = max(np.abs(fd[f]).max() for f in fields)
    tangent_error = max(np.abs(tangents[f].data - fd[f]).max() for f in fields) / scale
    errors = (adjoint_error, float(tangent_error))
    return ('exact' if max(errors) <= rtol else 'wrong'), errors


def primal(program):
    """The primal Operator, built as users are told to (``one_time_loop``: Devito may
    split a time loop against its dependences, and the primal would not compute what
    the equations say). The derived adjoint is that of this Operator: built first,
    it is the one ``AdjointOperator`` finds for the equations."""
    from devito import Operator

    from devito_perforad.devito_compat import one_time_loop
    with one_time_loop():
        return Operator(program.equations)


def check(program, rtol=1e-11, rng=None):
    """Derive the adjoint of ``program`` and dot-test it.

    Returns
    -------
    tuple
        ``('exact', error)``, ``('refused', message)`` or ``('wrong', error)``.
    """
    rng = rng or np.random.default_rng(0)
    op = primal(program)
    try:
        aop = AdjointOperator(program.equations, program.adjoints)
    except AdjointError as e:
        return 'refused', str(e)
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



def jacobians(program):
    """The primal's Jacobian and the transpose of the adjoint's, entry by entry.

    Column ``i`` of ``J`` is the primal's output (every entry of every field in the
    map) from the unit input ``i`` (an entry the primal reads before writing, by
    ``program.inputs``); row ``i`` of ``A`` is the adjoint's result at input ``i``,
    column ``j`` from the unit seed ``j``. An exact adjoint has ``A == J``. One run
    per input and one per output: for tiny programs only (1D, a few steps).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``J`` and ``A``, of shape (outputs, inputs).
    """
    op = primal(program)
    aop = AdjointOperator(program.equations, program.adjoints)
    fields = list(program.adjoints)
    inputs = [(f, tuple(i)) for f in fields if f in program.inputs
              for i in np.argwhere(_mask(program.inputs[f], f.data.shape))]
    outputs = [(f, i) for f in fields for i in np.ndindex(f.data.shape)]
    jac = np.zeros((len(outputs), len(inputs)))
    for k, (g, i) in enumerate(inputs):
        for f in fields:
            f.data[:] = 0
        g.data[i] = 1
        op.apply(**program.apply)
        jac[:, k] = [f.data[j] for f, j in outputs]
    adj = np.zeros_like(jac)
    for k, (g, j) in enumerate(outputs):
        for fb in program.adjoints.values():
            fb.data[:] = 0
        program.adjoints[g].data[j] = 1
        aop.apply(**program.apply)
        adj[k, :] = [program.adjoints[f].data[i] for f, i in inputs]
    return jac, adj


def _mask(index, shape):
    """The boolean mask of ``index`` (a mask, or a slice of the first axis)."""
    mask = np.zeros(shape, dtype=bool)
    mask[index] = True
    return mask
