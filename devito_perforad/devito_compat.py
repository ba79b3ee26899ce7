"""Workarounds for Devito 4.8.23, each named after the Devito behaviour it works around.

They apply only while an adjoint is derived or its Operator built, never to the rest
of the user's process: the patches of Devito's classes are context managers, and the
rest rewrite the adjoint's own equations or Operator arguments.

* :func:`one_time_loop`: Devito splits a time loop in two without weighing the
  dependences that run from a later statement back to an earlier one;
* :func:`openmp_chunks_of_one`: Devito asks for ``schedule(static,1)`` on every
  statically scheduled loop;
* :func:`sympy_subdomain_bounds`: Devito compares every grid index with a SubDomain's
  bounds as sympy numbers;
* :func:`dynamic_schedule_above_work`: Devito switches to dynamic scheduling above an
  operation count per iteration;
* :func:`hoisted_halo_exchanges`: Devito's placement of halo exchanges fails on
  adjoint operators under MPI;
* :func:`halo_exchange_over_time`: Devito exchanges a TimeFunction's halo over its
  whole time extent outside the time loop;
* :func:`accesses_as_written`: Devito evaluates an equation's right-hand side at
  its left-hand side's point, interpolating a field staggered otherwise;
* :func:`interpolation_positioned`, :func:`injection_positioned`: Devito positions
  an injection by its field's staggering but an interpolation at the nodes, after
  averaging the staggered fields it reads there;
* :func:`arguments_of_apply`: Devito's seismic solvers do not return every
  wavefield they save;
* :func:`record_operator_inputs`: Devito keeps an Operator's equations only in
  lowered form. This one is not confined to the adjoint's building: from the import
  of the package on, every Operator keeps a reference to what it was built from, so
  that it can be passed where its equations can (:func:`operator_inputs`).

* :func:`no_shrunk_loops`: Devito's hoisting of subexpressions can shrink a loop's
  bounds, leaving points uncomputed.
* :func:`reads_in_devito_order`: Devito runs a read of a level in one loop with a
  later write of that level, which it then sees at some points;
* :func:`guarded_reads_in_range`: Devito checks the index range of guarded reads;
* :func:`primal_time_loop_whole`: Devito splits a primal's time loop as it does a
  derived one (:func:`one_time_loop`);
* :func:`temporaries_in_the_time_loop`: Devito hoists an equation on ``Function``s
  out of the time loop that writes them;
* :func:`with_compiled_numbers`: Devito's finite-difference weights are 9-digit
  floats, which its C code reads as decimal text where they stand alone but folds in
  binary where its passes collect terms.

:func:`build` builds an adjoint's Operator with the ones that concern building.
"""

import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import sympy
from devito import Eq, Function, Inc, Operator, TimeFunction, configuration
from devito.arch import Device, platform_registry
from devito.ir.clusters.algorithms import Schedule
from devito.ir.iet import FindNodes, Iteration
from devito.mpi import distributed
from devito.passes.iet.languages.openmp import OmpIteration
from devito.symbolics import retrieve_function_carriers, retrieve_functions
from devito.types import SparseFunction, Symbol

from .errors import AdjointError, located
from .fields import is_saved, several_ranks
from .ir.access import access_of, at_offsets
from .ir.names import current

__all__ = ['build', 'no_shrunk_loops', 'one_time_loop', 'openmp_chunks_of_one',
           'sympy_subdomain_bounds',
           'dynamic_schedule_above_work', 'hoisted_halo_exchanges',
           'halo_exchange_over_time', 'accesses_as_written', 'record_operator_inputs',
           'operator_inputs', 'staggering_shifts', 'interpolation_positioned',
           'injection_positioned', 'arguments_of_apply', 'with_compiled_numbers',
           'reads_in_devito_order', 'as_devito_runs',
           'temporaries_in_the_time_loop',
           'primal_time_loop_whole', 'guarded_reads_in_range']


def build(eqs, **kwargs):
    """``devito.Operator(eqs, **kwargs)`` with the adjoint's OpenMP schedule: static
    (:func:`dynamic_schedule_above_work`), one contiguous block per thread for a lone
    loop (:func:`openmp_chunks_of_one`), one time loop (:func:`one_time_loop`), and
    every point computed (:func:`no_shrunk_loops`)."""
    with openmp_chunks_of_one():
        return no_shrunk_loops(eqs, **dynamic_schedule_above_work(kwargs))


def no_shrunk_loops(eqs, **kwargs):
    """``devito.Operator(eqs, **kwargs)``, rebuilt without Devito's hoisting of
    invariant and redundant subexpressions where its loops would skip points.

    Devito 4.8.23 hoists subexpressions into temporary arrays (its ``cire`` passes);
    for some derived equations (the tangent of the elastic stress by ``mu``, whose
    harmonic average is hoisted at four points) it then shrinks a loop's bounds and
    leaves points of the domain uncomputed, with only a warning ("Shrinking bounds")
    when the Operator runs: a wrong result (1% off in that tangent). The Operator
    is built again with ``cire-mingain`` out of reach; if Devito still shrinks a
    loop, an ``InternalError``.
    """
    from .errors import InternalError

    def attempt(options):
        with one_time_loop():
            op = Operator(eqs, **options)
        # the test of Devito's own warning, made when the Operator is applied
        shrunk = []
        for d in op.dimensions:
            try:
                if d.is_Space and any(op._dspace[d].offsets):
                    shrunk.append(d)
            except AttributeError:
                pass
        return op, shrunk

    op, shrunk = attempt(kwargs)
    if not shrunk:
        return op
    mode, options = kwargs.get('opt') or ('advanced', {}), {}
    if isinstance(mode, tuple):
        mode, options = mode
    op, shrunk = attempt(dict(kwargs, opt=(mode, {**options, 'cire-mingain': 10**9})))
    if shrunk:
        raise InternalError(f"Devito computes the derived Operator `{op.name}` on fewer "
                            f"points than the domain along `{shrunk[0]}`.")
    return op


@contextmanager
def one_time_loop():
    """Within the block, Devito never splits a time loop in two.

    Devito 4.8.23 splits a loop in two where that makes more loops parallel (its
    ``Schedule`` pass, "loop fission"), weighing only the dependences among the
    statements up to the split, not those from a statement after the split back to
    one before it. A derived adjoint whose first statement reads, at time ``t+1``, a
    level that a later statement writes at ``t-1`` (coupled saved fields, a
    temporary between them) had its time loop split: the first loop ran every step
    before the second had written what it reads, and the adjoint was silently wrong
    (dot test 0.13). A time loop is sequential, so splitting it gains no
    parallelism; within the block Devito keeps it whole and runs the statements of
    each step in program order, as the derivation orders them.

    Examples
    --------
    >>> from devito import Eq, Function, Grid, Operator, TimeFunction
    >>> grid = Grid(shape=(5, 5))
    >>> a, b = (TimeFunction(name=n, grid=grid, save=6) for n in 'ab')
    >>> z = Function(name='z', grid=grid)
    >>> eqs = [Eq(b, b + b.forward + a.forward.dx), Eq(z, b.forward),
    ...        Eq(a.backward, a.backward + z.dx + b)]
    >>> str(Operator(eqs)).count('for (int time')
    2
    >>> with one_time_loop():
    ...     str(Operator(eqs)).count('for (int time')
    1
    """
    original = Schedule.__dict__['_break_for_parallelism']

    def split(self, scope, dim, timestamp):
        if any(d.is_Time for d in dim._defines):
            return False
        return original(self, scope, dim, timestamp)

    Schedule._break_for_parallelism = split
    try:
        yield
    finally:
        Schedule._break_for_parallelism = original


@contextmanager
def openmp_chunks_of_one():
    """Within the block, a statically scheduled OpenMP loop that is also the innermost
    loop gives each thread one contiguous block: ``schedule(static)``.

    Devito 4.8.23 always asks for chunks of one iteration, ``schedule(static,1)``. On
    the outer loop of a 2D or 3D nest that hands out whole rows, but on a lone 1D loop
    it interleaves the threads point by point and leaves each thread a loop of one
    iteration per chunk, which the compiler cannot vectorise. The 1D Burgers adjoint
    with a buffered adjoint field ran 2.2x slower for it at one thread and 3.6x at two.
    Loops over the thin strips at a dimension's edges (left and right SubDimensions,
    a few points) keep Devito's chunks: vectorising them would only lengthen the
    compile (1D Burgers adjoint: 1.0 s instead of 0.3-0.4 s).

    Examples
    --------
    >>> import numpy as np
    >>> from devito import Eq, Grid, Operator, TimeFunction
    >>> u = TimeFunction(name='u', grid=Grid(shape=(64,)))
    >>> opt = ('advanced', {'openmp': True, 'par-dynamic-work': np.inf})
    >>> with openmp_chunks_of_one():
    ...     op = Operator(Eq(u.forward, u + 1), opt=opt)
    >>> 'omp for schedule(static)' in str(op)
    True
    """
    original = OmpIteration.__dict__['_make_clauses']

    def clauses(cls, nodes=(), dimension=None, **kwargs):
        made = original.__func__(cls, nodes=nodes, dimension=dimension, **kwargs)
        if FindNodes(Iteration).visit(nodes) or _edge_strip(dimension):
            return made
        return ['schedule(static)' if c == 'schedule(static,1)' else c for c in made]

    OmpIteration._make_clauses = classmethod(clauses)
    try:
        yield
    finally:
        OmpIteration._make_clauses = original


def _edge_strip(dimension):
    """Whether ``dimension`` is a left or right SubDimension (a strip at an edge)."""
    return any(getattr(dimension, side, False) for side in ('is_left', 'is_right'))


@contextmanager
def sympy_subdomain_bounds():
    """Within the block, Devito hands a SubDomain's bounds to its ``SubDistributor``
    as Python integers.

    Devito 4.8.23 builds a SubDomain's decomposition by comparing every global index
    of each dimension with the SubDomain's bounds, which are sympy numbers: an
    object-array comparison, two sympy calls per grid index (18 s for the three boxes
    of a 1e6-point 1D grid). The bounds are integers, and as Python integers the
    comparison is numpy's. Only the SubDomains built inside the block are affected.
    """
    original = distributed._interval_bounds

    def bounds(interval):
        return tuple(int(b) if isinstance(b, sympy.Integer) else b
                     for b in original(interval))

    distributed._interval_bounds = bounds
    try:
        yield
    finally:
        distributed._interval_bounds = original


def dynamic_schedule_above_work(kwargs):
    """Ask Devito for static OpenMP scheduling unless the caller chose otherwise.

    Devito switches to ``schedule(dynamic, 1)`` above an operation count per
    iteration; adjoint stencils count more operations than their primal (guards, step
    factors) but their work per point is just as uniform, and dynamic scheduling of a
    long 1D loop costs an order of magnitude. Returns the Operator's keyword
    arguments with that choice.
    """
    platform = kwargs.get('platform') or configuration['platform']
    if isinstance(platform_registry.get(platform, platform), Device):
        return kwargs  # GPUs always schedule statically
    opt = kwargs.get('opt', configuration['opt'])
    mode, options = (opt, {}) if isinstance(opt, str) else (opt[0], dict(opt[1]))
    if mode.startswith('advanced') and 'par-dynamic-work' not in options:
        options['par-dynamic-work'] = np.inf
        kwargs = dict(kwargs, opt=(mode, options))
    return kwargs


def hoisted_halo_exchanges(kwargs):
    """Under MPI, keep Devito's halo exchanges where the adjoint reads them.

    Devito 4.8.23 optimises the placement of halo exchanges (``opt-comms``:
    ``optimize_halospots`` merges and hoists them). On adjoint operators this fails
    in two ways: with ``DEVITO_MPI=overlap``, ``overlap2`` or ``full`` the build stops
    (``AssertionError`` in ``create_call_graph``; one level assigned on the core and
    shell SubDomains is enough), and in every mode the exchange of a saved level
    ``ub[time + 1]`` can be hoisted before the time loop with its index ``time + 1``
    (C error ``'time' undeclared``). ``opt-comms=False`` avoids both, unless the
    caller chose. Returns the Operator's keyword arguments with that choice.
    """
    if not configuration['mpi']:
        return kwargs
    opt = kwargs.get('opt', configuration['opt'])
    mode, options = (opt, {}) if isinstance(opt, str) else (opt[0], dict(opt[1]))
    options.setdefault('opt-comms', False)
    return dict(kwargs, opt=(mode, options))


def halo_exchange_over_time(expr, grid):
    """Read the time levels ``expr`` reads at neighbouring points through copies.

    An update that runs once, before or after the time loop, writes one level of an
    adjoint TimeFunction and reads another level of it at neighbouring points. Under
    MPI, Devito 4.8.23 then exchanges the TimeFunction's halo over its whole time
    extent outside the loop, which only ``DEVITO_MPI=basic`` generates (``diag2``,
    ``overlap2`` and ``full`` fail to build the exchange, ``diag`` and ``overlap`` to
    compile it). A pointwise copy of the level into a time-free ``Function`` reads no
    halo, and the copy's halo exchange works in every mode.

    Returns the copy equations and ``expr`` reading the copies; serially (one rank)
    no copies and ``expr`` itself, so the run needs no extra array.
    """
    if not several_ranks(grid):
        return [], expr
    copies, mapping = {}, {}
    for app in retrieve_functions(expr, mode='unique'):
        f = app.function
        if not isinstance(f, TimeFunction):
            continue
        a = access_of(app)
        if not any(a.space):
            continue
        if (f, a.time) not in copies:
            c = Function(name=current().name(f'{f.name}_l', 'temporary'), grid=grid,
                         space_order=f.space_order, dtype=f.dtype)
            copies[(f, a.time)] = (c, Eq(c, at_offsets(f, time=a.time)))
        mapping[app] = at_offsets(copies[(f, a.time)][0], space=a.space)
    return [eq for _, eq in copies.values()], expr.xreplace(mapping)


# Operator -> (the expressions as passed, the keywords): weak, so that it keeps no
# Operator alive and goes with it; not an attribute, so that pickling an Operator
# (whose state is its __dict__) is unchanged.
_INPUTS = weakref.WeakKeyDictionary()


def record_operator_inputs():
    """From now on, every ``devito.Operator`` keeps a reference to the expressions
    and keywords it was built from (:func:`operator_inputs`).

    Devito 4.8.23 keeps an Operator's input only in lowered form, and has no hook to
    see it (``Operator.__new__`` lowers and returns). This wraps ``Operator.__new__``:
    the Operator Devito builds is returned as it is, its code, caching and results
    unchanged; a weak map holds, per Operator, a reference to the expressions (which
    reference the Operator's own fields: no data is copied) and to the keyword dict.
    An iterator of expressions is made a list first, so that both Devito and the map
    see all of it. Called once, when ``devito_perforad`` is imported; calling it
    again does nothing.
    """
    new = Operator.__dict__['__new__'].__func__
    if getattr(new, 'records_inputs', False):
        return

    def __new__(cls, expressions, **kwargs):  # noqa: N807
        if isinstance(expressions, Iterator):
            expressions = list(expressions)
        op = new(cls, expressions, **kwargs)
        if expressions is not None:  # None: Devito unpickling an Operator
            _INPUTS[op] = (expressions, kwargs)
        return op

    __new__.records_inputs = True
    __new__.__wrapped__ = new
    __new__.__doc__ = new.__doc__
    Operator.__new__ = staticmethod(__new__)


def operator_inputs(op):
    """The expressions and keywords ``op`` was built from.

    Raises
    ------
    AdjointError
        If ``op`` was built before ``devito_perforad`` was imported.

    Examples
    --------
    >>> from devito import Eq, Function, Grid, Operator
    >>> import devito_perforad
    >>> grid = Grid(shape=(4,))
    >>> f = Function(name='f', grid=grid)
    >>> op = Operator([Eq(f, f + 1)], name='Plus')
    >>> operator_inputs(op)
    ([Eq(f(x), f(x) + 1)], {'name': 'Plus'})
    """
    try:
        return _INPUTS[op]
    except KeyError:
        raise AdjointError(
            f"The Operator `{op.name}` was built before devito_perforad was imported, "
            "so the equations it was built from were not recorded. Import "
            "devito_perforad at the top of the script, before the Operator (or the "
            "solver that makes it) is built; or pass its equations.") from None


class _AsWritten:
    """An equation whose right-hand side Devito evaluates as written: its derivatives
    expanded, its field accesses left where they are. It evaluates to the plain Eq or
    Inc it is (Devito tells an increment by its exact type)."""

    def _evaluate(self, **kwargs):
        lhs, rhs = self._evaluate_args(**kwargs)
        return type(self).__mro__[2](lhs, rhs, subdomain=self.subdomain,
                         coefficients=self.substitutions,
                         implicit_dims=self._implicit_dims)

    def __str__(self):  # printed as the Eq or Inc it is
        return f"{type(self).__mro__[2].__name__}({self.lhs}, {self.rhs})"

    __repr__ = __str__


class _EqAsWritten(_AsWritten, Eq):
    pass


class _IncAsWritten(_AsWritten, Inc):
    pass


def accesses_as_written(eqs):
    """The derived equations, those that read a staggered field rebuilt so that
    Devito takes their accesses as written.

    Devito 4.8.23 evaluates an equation's right-hand side at the point of its
    left-hand side (``Eq._evaluate`` calls ``rhs._eval_at(lhs)``): a field staggered
    otherwise, read at its own point (``vx(x + h_x/2)`` in an equation writing a node
    field), is replaced by its average over the neighbouring points. The primal's
    equations mean that; the derived ones are stated in grid steps from each field's
    own point (:mod:`devito_perforad.ir.offsets`), every access meant exactly where it
    is written, and evaluating them again would move some of them.

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> grid = Grid(shape=(4,))
    >>> x = grid.dimensions[0]
    >>> p = TimeFunction(name='p', grid=grid)
    >>> v = TimeFunction(name='v', grid=grid, staggered=x)
    >>> Eq(p, v).evaluate
    Eq(p(t, x), 0.5*v(t, x - h_x/2) + 0.5*v(t, x + h_x/2))
    >>> accesses_as_written([Eq(p, v)])[0].evaluate
    Eq(p(t, x), v(t, x + h_x/2))
    """
    out = []
    for eq in eqs:
        fields = retrieve_functions([eq.lhs, eq.rhs], mode='unique') \
            if isinstance(eq, Eq) else []
        if any(getattr(f.function, 'staggered', None) and any(f.function.staggered)
               for f in fields):
            kind = _IncAsWritten if isinstance(eq, Inc) else _EqAsWritten
            eq = kind(eq.lhs, eq.rhs, subdomain=eq.subdomain,
                      implicit_dims=eq.implicit_dims)
        out.append(eq)
    return out


def staggering_shifts(field):
    """The half-cell shifts Devito positions an injection into ``field`` by (``()``
    for a field on the nodes), one per space dimension.

    Examples
    --------
    >>> from devito import Grid, TimeFunction
    >>> grid = Grid(shape=(4, 4))
    >>> x, y = grid.dimensions
    >>> staggering_shifts(TimeFunction(name='v', grid=grid, staggered=x))
    (h_x/2, 0)
    """
    staggered = getattr(field, 'staggered', None)
    if not staggered or staggered.on_node:
        return ()
    return tuple(d.spacing / 2 if s else 0
                 for d, s in zip(field.dimensions, staggered, strict=True) if d.is_Space)


def interpolation_positioned(sparse, expr, shifts=(), increment=True):
    """``sparse += interpolation of expr`` (``=`` unless ``increment``) with the
    positions and weights Devito gives an injection into a field staggered by
    ``shifts``, and ``expr``'s accesses taken as written.

    Devito 4.8.23 positions an injection by its field's staggering
    (``_field_shifts``), but an interpolation always at the nodes, after evaluating
    its expression there (``expr._eval_at(sfunction)``, which averages a staggered
    field). The transpose of an injection into a staggered field is an interpolation
    at the injection's positions, of the adjoint field at its own points.

    Examples
    --------
    >>> from devito import Grid, SparseTimeFunction, TimeFunction
    >>> grid = Grid(shape=(8,))
    >>> x = grid.dimensions[0]
    >>> v = TimeFunction(name='v', grid=grid, staggered=x)
    >>> s = SparseTimeFunction(name='s', grid=grid, npoint=1, nt=4)
    >>> eqs = interpolation_positioned(s, v, staggering_shifts(v))
    >>> eqs[-2].rhs.args[-1]
    v(t, rp_sx + h_x/2 + posx_s1)
    """
    # Devito's own calls, keyword for keyword: its dimensions are memoised by them
    interp = sparse.interpolator
    variables = list(retrieve_function_carriers(expr))
    dims = interp._augment_implicit_dims(None, _dense(variables))
    if shifts:
        idx_subs, temps = interp._interp_idx(variables, implicit_dims=dims,
                                             subdomain=None, shifts=shifts)
        weights = interp._weights(subdomain=None, shifts=shifts)
    else:
        idx_subs, temps = interp._interp_idx(variables, implicit_dims=dims,
                                             subdomain=None)
        weights = interp._weights(subdomain=None)
    total = Symbol(name=f'sum{sparse.name}', dtype=sparse.dtype)
    return temps + [Eq(total, 0., implicit_dims=dims),
                    Inc(total, (weights * expr).xreplace(idx_subs), implicit_dims=dims),
                    (Inc if increment else Eq)(sparse, total, implicit_dims=dims)]


def injection_positioned(sparse, target, expr, shifts=()):
    """``target += injection of expr`` with the positions and weights Devito gives a
    field staggered by ``shifts`` (``()``: the nodes, where it interpolates), into
    ``target`` as written: a field staggered otherwise, or read at an offset, is
    written where the interpolation read it.

    Devito 4.8.23 positions an injection by its target's staggering; the transpose of
    an interpolation injects at the interpolation's positions (see
    :func:`interpolation_positioned`).

    Examples
    --------
    >>> from devito import Grid, SparseTimeFunction, TimeFunction
    >>> grid = Grid(shape=(8,))
    >>> x = grid.dimensions[0]
    >>> vb = TimeFunction(name='vb', grid=grid, staggered=x)
    >>> s = SparseTimeFunction(name='s', grid=grid, npoint=1, nt=4)
    >>> injection_positioned(s, vb.shift(x, -x.spacing), s)[-1].lhs
    vb(t, rp_sx - h_x/2 + posx)
    """
    # Devito's own calls, keyword for keyword: its dimensions are memoised by them
    interp = sparse.interpolator
    variables = list(retrieve_function_carriers(expr))
    dims = interp._augment_implicit_dims(None, _dense(variables))
    dims += tuple(r.parent for r in interp._rdim(subdomain=None, shifts=shifts))
    idx_subs, temps = interp._interp_idx([target] + variables, implicit_dims=dims,
                                         subdomain=None, shifts=shifts)
    weights = interp._weights(subdomain=None, shifts=shifts)
    return temps + [Inc(target.xreplace(idx_subs), (weights * expr).xreplace(idx_subs),
                        implicit_dims=dims)]


def _dense(variables):
    """The dense fields among ``variables``: a sparse function read in a sparse
    operation is read at that operation's points (another with the same points is
    indexed by them), so its own point dimension adds no loop."""
    return [v for v in variables if not isinstance(v.function, SparseFunction)]


@contextmanager
def arguments_of_apply(op):
    """Record the keyword arguments ``op.apply`` is called with, in a dict, while the
    context lasts.

    Devito's seismic solvers create some wavefields of their own and do not return
    them (the memory variables of the visco-acoustic and viscoelastic models): the
    fields the solver passes to its forward Operator are all it ran with.

    Examples
    --------
    >>> from devito import Eq, Function, Grid, Operator
    >>> f = Function(name='f', grid=Grid(shape=(4,)))
    >>> op = Operator([Eq(f, 1)])
    >>> with arguments_of_apply(op) as arguments:
    ...     _ = op.apply(f=f)
    >>> arguments['f'] is f
    True
    """
    arguments = {}
    apply = op.apply

    def recorded(**kwargs):
        arguments.update(kwargs)
        return apply(**kwargs)

    op.apply = recorded
    try:
        yield arguments
    finally:
        del op.apply


def as_devito_runs(program, expressions, subs=None, in_devito_order=True):
    """The analysed ``program`` as the primal's Operator runs it, for a derivation.

    Refused where Devito does not run the equations in program order and the
    derivation cannot follow it (:func:`temporaries_in_the_time_loop`,
    :func:`primal_time_loop_whole`); with the numbers of the primal's C code
    (:func:`with_compiled_numbers`) and, ``in_devito_order``, the reads Devito runs
    in place as it runs them (:func:`reads_in_devito_order`).
    """
    temporaries_in_the_time_loop(program, expressions, subs)
    primal_time_loop_whole(program, expressions, subs)
    program = with_compiled_numbers(program, expressions, subs)
    return reads_in_devito_order(program, expressions, subs) if in_devito_order \
        else program


def reads_in_devito_order(program, expressions, subs=None):
    """``program`` with each read that Devito runs after a later write of its level
    reading what Devito's loop gives it.

    A step that reads a level at an offset between two writes of it (``Eq(f.forward,
    ...)``, ``Eq(g.forward, f.forward.dxr)``, ``Inc(f.forward, ...)``) means, in
    program order, the value between the writes (:mod:`~devito_perforad.ir.versions`).
    Devito 4.8.23 puts such a read in one loop with the later write where it can, and
    runs that loop in the direction in which the neighbours read were already
    visited: at those points the read sees the later write's value, at the point
    itself the earlier one; an in-place update. The reads are found in the primal's
    lowered code (the user's Operator, else one built here).

    In the loop nest Devito fuses, a neighbour the loop visited before the point holds
    the later writes already: a read there of the value between the writes, ``f(p +
    o)``, sees ``f(p + o) + R(p + o)`` for a later ``Inc(f, R)`` of the nest (for a
    later ``Eq(f, R)``, ``R(p + o)`` reading ``f(p + o)`` at its point). The read is
    rewritten so, an expression of values program order gives it, and the rest of
    the program keeps program order. A neighbour the loop visits after the point sees
    the value between the writes, as program order says.

    Raises
    ------
    AdjointError
        Where Devito's value is not of that form: a later write outside the nest or on
        a SubDomain, one whose right-hand side reads what the step writes from the
        read on, an earlier write in the nest, or a read at an offset along several
        dimensions in a blocked loop nest. Where Devito's OpenMP code makes the later
        write an array reduction, whose private copy the read sees.
    """
    found = _reads_in_place(program, expressions, subs)
    if not found:
        return program
    from dataclasses import replace

    from .ir.access import _reads

    extra = {}   # statement index -> {read: what Devito's loop reads there}
    for stmt, a, nest, later in found:
        i = next(k for k, s in enumerate(program) if s is stmt)
        if any(r[0].function is a.field for it in nest
               for r in (getattr(it, 'reduction', None) or ())):
            raise located(stmt.eq, a.field,
                          f"`{a.expr}` is read in a loop where Devito's OpenMP code "
                          f"reduces a later write of `{a.field.name}` into a private "
                          "copy (an array reduction), which the read then sees: the "
                          "primal does not compute what the equations say (a Devito "
                          "4.8.23 bug). Build the primal with language='C', or write "
                          "the value between the writes to a field of its own.")
        if later is None:
            _refuse_in_place(stmt, a)
        visited = _visited_before(nest, a, stmt.write.field.grid)
        if visited is None:
            _refuse_in_place(stmt, a)
        if not visited:
            continue
        value = _after_writes(program, i, a, later)
        if value is None:
            _refuse_in_place(stmt, a)
        extra.setdefault(i, {})[a.expr] = value
    out = list(program)
    for i, subs_ in extra.items():
        stmt = out[i]
        rhs = stmt.rhs.xreplace(subs_)
        out[i] = replace(stmt, rhs=rhs, reads=_reads(stmt.eq, rhs), lifted=rhs,
                         compositions=())
    return out


def _after_writes(program, i, a, n):
    """The value the read ``a`` of statement ``i`` sees at a neighbour where the
    ``n`` later writes of its level have run (``Inc``: plus its right-hand side;
    ``Eq`` on the whole domain: its right-hand side, reading the value before it at
    the point), or None where that is no expression of the values program order gives
    the read: other later writes, or right-hand sides reading what the step writes
    from the read on."""
    from .ir.symbolic import shift

    key = (a.field, a.time)
    writes = [s for s in program[i + 1:] if (s.write.field, s.write.time) == key]
    if len(writes) != n:
        return None
    written = {(s.write.field, s.write.time) for s in program[i:]} - {key}
    value = a.expr
    for s in writes:
        if (not s.is_dense or s.subdomain is not None
                or any((r.field, r.time) in written for r in s.reads)
                or any((r.field, r.time) == key and r.space != s.write.space
                       for r in s.reads)):
            return None
        moved = dict(zip(a.field.space_dimensions,
                         (k - k0 for k, k0 in zip(a.space, s.write.space, strict=True)),
                         strict=True))
        rhs = shift(s.rhs, space=moved)
        own = [r.expr for r in s.reads if (r.field, r.time) == key]
        rhs = rhs.xreplace({shift(e, space=moved): value for e in own})
        value = value + rhs if s.increment else rhs
    return value


def _refuse_in_place(stmt, a):
    raise located(stmt.eq, a.field,
                  f"`{a.expr}` is read before a later write of its level in the step, "
                  "and Devito runs the read in one loop with the later write"
                  ", so it reads that write's value at some points (an in-place "
                  "update). Write the value between the writes to a field of its own.")


def _reads_in_place(program, expressions, subs):
    """The reads between two writes of a level that Devito runs in the loop nest of
    the later write, as ``(statement, access, nest, n)``: the nest's Iterations and
    the number of later writes of the level in it (``None`` where an earlier write
    is in it too)."""
    from devito.ir.iet import Expression, FindSections
    from devito.types import Indexed

    suspects = _reads_between_writes(program)
    if not suspects:
        return []
    op = _built_from(expressions, subs) or Operator(
        expressions, **({'subs': subs} if subs else {}))
    nests = {}
    for iterations, nodes in FindSections().visit(op).items():
        nests.update({id(n): iterations for n in nodes if isinstance(n, Expression)})
    lowered = [(nests.get(id(n)), n.expr) for n in FindNodes(Expression).visit(op)]
    out = []
    for stmt, a in suspects:
        key = (a.field, a.time, a.space)
        for i, (nest, expr) in enumerate(lowered):
            reads = [_indexed_offsets(r) for r in expr.rhs.atoms(Indexed)]
            if key not in reads:
                continue
            later = _writes_in(lowered[i + 1:], nest, key[:2])
            if later:
                # an earlier write in the nest too: a neighbour not visited yet
                # holds what the level held before the step
                earlier = _writes_in(lowered[:i], nest, key[:2])
                out.append((stmt, a, nest, None if earlier else later))
                break
    return out


def _writes_in(lowered, nest, key):
    """How many of the ``lowered`` expressions in ``nest`` write the level ``key``."""
    from devito.types import Indexed
    return sum(1 for n, e in lowered if n == nest and isinstance(e.lhs, Indexed)
               and (_indexed_offsets(e.lhs) or ())[:2] == key)


def _visited_before(nest, a, grid):
    """Whether the loop ``nest`` visits the point ``p + a.space`` before ``p``, or
    None where its order does not say.

    Along one dimension, by the direction of its loops (a blocked loop runs its blocks
    in its own direction). Along several, by the first loop, outermost first, along
    which the offset is not zero; a blocked nest has no such order.
    """
    from devito.ir.support import Backward

    offsets = {d: k for d, k in zip(grid.dimensions, a.space, strict=True) if k}
    loops = [it for it in nest if it.dim.root in grid.dimensions]
    roots = [it.dim.root for it in loops]
    if len(offsets) == 1:
        ((d, k),) = offsets.items()
        directions = {it.direction for it in loops if it.dim.root is d}
        if len(directions) != 1:
            return None
        return (k > 0) == (directions.pop() is Backward)
    if len(set(roots)) != len(roots):
        return None
    for it in loops:
        k = offsets.get(it.dim.root, 0)
        if k:
            return (k > 0) == (it.direction is Backward)
    return None


def guarded_reads_in_range(eqs, adjoint_fields):
    """``eqs`` with each read of a saved primal field two or more levels below the
    counter clamped at level 0.

    The adjoint of a step reads the primal values that step read: for a partial of
    ``Min(u, v.backward)`` at step ``t - 1``, ``v`` at ``t - 2``. At the first counter
    (``time_m = 1``) that is level ``-1``; the term is guarded (the step ``time_m - 1``
    never ran), so the level is never read, but Devito 4.8.23 checks the index range
    of every access when the Operator is applied, guards aside, and refuses the
    run ("OOB detected due to time_m=1"). Reading ``Max(t - 2, 0)`` changes the level
    only where the guard discards it.
    """
    out = []
    for eq in eqs:
        subs = {}
        for app in retrieve_functions(eq.rhs, mode='unique'):
            f = app.function
            if (not isinstance(f, TimeFunction) or not is_saved(f)
                    or f in adjoint_fields):
                continue
            try:
                time = access_of(app).time
            except AdjointError:    # pinned at an edge of the run: in range
                continue
            if time is None or time > -2:
                continue
            indexed = app.indexify()
            steps = [i for i, d in enumerate(f.dimensions) if d.is_Time]
            indices = list(indexed.indices)
            indices[steps[0]] = sympy.Max(indices[steps[0]], 0)
            subs[app] = indexed.func(indexed.base, *indices)
        out.append(eq.xreplace(subs) if subs else eq)
    return out


def primal_time_loop_whole(program, expressions, subs=None):
    """Raise where Devito splits the primal's time loop against its dependences.

    The same splitting :func:`one_time_loop` keeps out of derived Operators
    happens to primal Operators: Devito 4.8.23 may run ``Eq(f.forward, ...)`` for
    every step in a first time loop and a later ``Inc(f.forward, ...)`` in a second,
    although the first reads ``f`` and so needs the increments of the steps before.
    The primal then computes something else than its equations say, and no adjoint of
    the equations is the adjoint of that Operator. Where the primal's lowered code
    (the user's Operator, else one built here) has a time loop that reads a field a
    later time loop writes, the program is refused; the message says how to build the
    primal whole. A loop whose every write a later loop assigns again before anything
    reads it (an ``Eq`` overwritten by a later ``Eq``) computes nothing that is read:
    its reads do not count.

    Raises
    ------
    AdjointError
        Naming a field the earlier loop reads and the later one writes.
    """
    from devito.ir.iet import Expression, FindSections
    from devito.types import Indexed

    if not any(s.is_timed for s in program):
        return
    op = _built_from(expressions, subs) or Operator(
        expressions, **({'subs': subs} if subs else {}))
    loops = FindNodes(Iteration).visit(op)
    order = {id(it): k for k, it in enumerate(loops) if it.dim.root.is_Time}
    if len(order) < 2:
        return
    reads, writes, body = {}, {}, {}
    for iterations, nodes in FindSections().visit(op).items():
        times = [order[id(it)] for it in iterations if id(it) in order]
        if not times:
            continue
        for n in nodes:
            if isinstance(n, Expression) and isinstance(n.expr.lhs, Indexed):
                writes.setdefault(n.expr.lhs.function, set()).add(times[0])
                body.setdefault(times[0], []).append(n)
                for r in n.expr.rhs.atoms(Indexed):
                    reads.setdefault(times[0], set()).add(r.function)
    fields = {s.write.field for s in program}
    for loop in _dead_loops(body):
        reads.pop(loop, None)
    for loop, read in sorted(reads.items(), key=lambda kv: kv[0]):
        for f in sorted(read & fields, key=lambda f: f.name):
            if any(later > loop for later in writes.get(f, ())):
                stmt = next(s for s in program if s.write.field is f)
                raise located(stmt.eq, f,
                              "Devito splits the time loop and runs a loop reading "
                              f"`{f.name}` over every step before the loop writing it: "
                              "the primal does not compute what the equations say (a "
                              "Devito 4.8.23 bug). Build the primal Operator in `with "
                              "devito_perforad.devito_compat.one_time_loop():`.")


def _dead_loops(body):
    """The time loops (by their order) whose every write a later loop assigns again,
    with no loop in between reading the field and no read of the level before the
    assignment in that later loop: what such a loop computes is never read (an
    ``Eq`` overwritten by a later one), so it does not matter where it runs.
    ``body``: each loop's lowered expressions, in order."""
    dead = []
    loops = sorted(body)
    for k, loop in enumerate(loops):
        keys = {_indexed_offsets(n.expr.lhs) for n in body[loop]}
        if None in keys:
            continue
        if all(_assigned_later(key, loops[k + 1:], body) for key in keys):
            dead.append(loop)
    return dead


def _assigned_later(key, later, body):
    """Whether a loop of ``later`` assigns the level ``key`` before any loop reads
    its field."""
    from devito.types import Indexed
    field, time, _ = key
    for loop in later:
        for n in body[loop]:
            read = [_indexed_offsets(r) for r in n.expr.rhs.atoms(Indexed)
                    if r.function is field]
            lhs = _indexed_offsets(n.expr.lhs)
            if any(r is None or r[1] == time for r in read):
                return False
            if lhs is not None and lhs[:2] == (field, time) and not any(lhs[2]) \
                    and not n.is_reduction:
                return True
        if any(r.function is field for n in body[loop]
               for r in n.expr.rhs.atoms(Indexed)):
            return False
    return False


def temporaries_in_the_time_loop(program, expressions, subs=None):
    """Raise where Devito does not run a ``Function`` the time loop writes inside that
    loop.

    Program order gives a ``Function`` written in the loop (``Eq(r, u.dx)`` before
    ``Eq(u.forward, ... r ...)``) a value per step (:mod:`~devito_perforad.ir.
    temporaries`). Devito 4.8.23 treats a ``Function`` as time-invariant where it can:
    an equation reading only such ``Function``s (``Eq(q, r.dy)``) is hoisted out of
    the time loop, and the loop writing ``r`` is then split from the loop writing
    ``u``, so the primal computes something else than the program says. Where the
    primal's lowered code (the user's Operator, else one built here) writes a
    temporary outside the time loop that writes the program's TimeFunctions, the
    program is refused, naming the equation.

    Raises
    ------
    AdjointError
        Naming the first equation whose ``Function`` Devito moves out of the loop.
    """
    from devito.ir.iet import Expression, FindSections
    from devito.types import Indexed

    from .levels import prologue

    loop = program[prologue(program):]
    temps = [s for s in loop if s.write.time is None
             and not isinstance(s.write.field, TimeFunction)]
    if not temps:
        return
    op = _built_from(expressions, subs) or Operator(
        expressions, **({'subs': subs} if subs else {}))
    where = {}   # written field -> the time loops of its lowered writes
    for iterations, nodes in FindSections().visit(op).items():
        times = tuple(it for it in iterations if it.dim.root.is_Time)
        for n in nodes:
            if isinstance(n, Expression) and isinstance(n.expr.lhs, Indexed):
                where.setdefault(n.expr.lhs.function, set()).add(times[:1])
    main = set().union(*[where.get(s.write.field, set()) for s in loop
                         if isinstance(s.write.field, TimeFunction)])
    for stmt in temps:
        if not where.get(stmt.write.field, set()) <= main or () in main:
            raise located(stmt.eq, stmt.write.field,
                          "Devito does not run this equation inside the time loop with "
                          "the others (it treats a Function as time-invariant where it "
                          "can), so its values are not those of program order. Make "
                          f"`{stmt.write.field.name}` a TimeFunction.")


def _reads_between_writes(program):
    """The reads, at an offset, of a level written before and after them in the step,
    or of a ``Function`` the time loop writes after them, as ``(statement,
    access)``."""
    out = []
    for i, stmt in enumerate(program):
        for a in stmt.reads:
            if not any(a.space):
                continue
            key = (a.field, a.time)
            writes = [j for j, s in enumerate(program)
                      if (s.write.field, s.write.time) == key]
            temporary = a.time is None and stmt.is_timed
            if any(j > i for j in writes) and (temporary or any(j < i for j in writes)):
                out.append((stmt, a))
    return out


def with_compiled_numbers(program, expressions, subs=None):
    """``program`` with each dense statement's right-hand side as the primal's
    generated code computes it: the same function, with the numbers the C code
    multiplies by.

    Devito evaluates a finite-difference weight as a 9-digit ``Float``. Its C code
    prints a weight that stands alone as decimal text, but where its passes collect
    terms (``factorize``: ``1e-3*(w1*u[x-1] + ...) + 1e-3*(w2*u[x-1] + ...)``), the
    weights are multiplied and summed in binary first and the result is printed. The
    two readings differ in the 10th digit, and which one the primal uses depends on
    every pass Devito runs. So the right-hand sides are taken from the primal's
    lowered code: from the Operator built from ``expressions`` where there is one
    (the user's), else from one built here with ``subs``. Devito's temporaries are
    inlined and its array accesses mapped back to field accesses. A statement whose
    lowered form does not map back, or does not agree with the analysed one to 1e-8
    at random values, keeps its analysed right-hand side. A statement whose nested
    derivatives, composed, would not multiply by the primal's numbers is reversed
    flat.

    Parameters
    ----------
    program : list of Statement
    expressions : list
        The primal's expressions, as analysed.
    subs : dict, optional
        The primal's ``subs``.

    Returns
    -------
    list of Statement
    """
    from dataclasses import replace

    from .ir.composition import agree

    dense = [s for s in program if s.is_dense and s.rhs.atoms(sympy.Float)]
    if not dense:
        return program
    op = _built_from(expressions, subs)
    try:
        if op is None:
            op = Operator(expressions, **({'subs': subs} if subs else {}))
        lowered = _lowered(op)
    except Exception:  # noqa: BLE001 - the analysed numbers stay
        return program
    writes = _lowered_writes(lowered, {s.write.field for s in dense})
    dense = {id(s) for s in dense}
    out = []
    for stmt in program:
        rhs = None
        if id(stmt) in dense:
            candidates = writes.get(((stmt.write.field, stmt.write.time,
                                      stmt.write.space), stmt.increment), [])
            rhs = _mapped(candidates.pop(0), stmt) if len(candidates) == 1 else None
        if rhs is None or not agree(rhs, stmt.rhs, rtol=1e-8):
            out.append(stmt)
            continue
        if stmt.compositions and _composed_numbers_agree(stmt, rhs):
            out.append(replace(stmt, rhs=rhs))
        else:
            out.append(replace(stmt, rhs=rhs, lifted=rhs, compositions=()))
    return out


def _composed_numbers_agree(stmt, rhs):
    """Whether the compositions of ``stmt`` multiply by the numbers of the
    primal's code ``rhs``: each outer and inner weight read as the decimal text Devito
    prints for it (as in the composed adjoint, which takes them from Devito's
    transposed derivatives). Where Devito folds a literal factor into the outer
    weights, they do not, and the statement is reversed flat, with the primal's
    numbers."""
    from .differentiate import plain
    from .ir.composition import partials_agree
    composed = plain(stmt.lifted).xreplace({c.symbol: plain(c.flat())
                                            for c in stmt.compositions})
    return partials_agree(composed, plain(rhs), rtol=1e-13)


def _built_from(expressions, subs):
    """The most recent Operator built from the very equations ``expressions`` (the
    same objects, in the same order) with the same ``subs``, or None."""
    from .ir.access import _flatten
    mine = [id(e) for e in _flatten(expressions)]
    for op, (exprs, kwargs) in reversed(list(_INPUTS.items())):
        if ([id(e) for e in _flatten(exprs)] == mine
                and dict(kwargs.get('subs') or {}) == dict(subs or {})):
            return op
    return None


def _lowered(op):
    """``op``'s lowered equations, in order, each with the first points of the loops
    around it that count an array's index from there (``ys``: Devito's temporaries
    over a block of points, from its ``cire`` pass)."""
    from devito.ir.iet import Expression, FindSections
    starts = {}
    for iterations, nodes in FindSections().visit(op).items():
        first = {u: it.symbolic_min for it in iterations for u in it.uindices}
        starts.update({id(n): first for n in nodes if isinstance(n, Expression)})
    return [(n.expr, starts.get(id(n), {})) for n in FindNodes(Expression).visit(op)]


def _lowered_writes(lowered, fields):
    """The right-hand sides of ``lowered`` (Devito's lowered equations, from
    :func:`_lowered`) that write ``fields``, by ``((field, time offset, space
    offsets), increment)``, with every temporary inlined (None where one does not
    map back)."""
    scalars, arrays, writes = {}, {}, {}
    for eq, starts in lowered:
        lhs = eq.lhs
        if lhs.is_Symbol:
            scalars[lhs] = eq.rhs
        elif getattr(lhs.function, 'is_Array', False):
            arrays[lhs.function] = (lhs.indices, eq.rhs, starts)
        elif lhs.function in fields:
            key = (_indexed_offsets(lhs), bool(getattr(eq, 'is_Increment', False)))
            try:
                rhs = _inlined(eq.rhs, scalars, arrays, starts)
            except _NotMappedError:
                rhs = None
            writes.setdefault(key, []).append(rhs)
    return writes


def _inlined(expr, scalars, arrays, starts, depth=8):
    """``expr`` with Devito's temporaries replaced by what they hold. An array
    indexed from the first point of its loop (``r[ys]``, ``ys = y - start``) holds at
    ``ys + k``, read in a loop from ``start``, its right-hand side at ``y + k +
    written - start``, where ``written`` is the first point of the loop that wrote
    it."""
    from devito.types import Indexed
    for _ in range(depth):
        subs = {s: scalars[s] for s in expr.free_symbols if s in scalars}
        for i in expr.atoms(Indexed):
            if i.function in arrays:
                indices, rhs, written = arrays[i.function]
                shift = {}
                for used, own in zip(i.indices, indices, strict=True):
                    k = sympy.simplify(used - own)
                    dims = [d for d in own.free_symbols if d.is_Dimension]
                    if len(dims) != 1:
                        raise _NotMappedError
                    (d,) = dims
                    if d in written or d in starts:
                        if d not in written or d not in starts:
                            raise _NotMappedError
                        k = sympy.simplify(k + written[d] - starts[d])
                        # the loop's own dimension, in the right-hand side
                        targets = [e for e in rhs.free_symbols
                                   if getattr(e, 'is_Dimension', False) and e is not d
                                   and e.root is d.root]
                    else:
                        targets = [d]
                    if not k.is_Integer:
                        raise _NotMappedError
                    shift.update({e: e + k for e in targets})
                subs[i] = rhs.subs(shift, simultaneous=True)
        if not subs:
            return expr
        expr = expr.xreplace(subs)
    raise _NotMappedError


def _indexed_offsets(indexed):
    """``(field, time offset, space offsets)`` of a lowered array access."""
    from devito.types.dimension import ModuloDimension
    f, time, space = indexed.function, None, []
    try:
        for index, dim, halo in zip(indexed.indices, f.dimensions, f._offset_domain,
                                    strict=True):
            if dim.is_Time:
                if isinstance(index, ModuloDimension):
                    index = index.offset
                time = int(sympy.simplify(index - dim.root))
            else:
                # a blocked loop's own ``x`` (same name and root) stands for the grid's
                index = index.xreplace({d: dim for d in index.free_symbols
                                        if getattr(d, 'is_Dimension', False)
                                        and d is not dim and d.root is dim.root})
                k = sympy.simplify(index - dim - halo)
                space.append(int(k))
    except (TypeError, ValueError, AttributeError):
        return None
    return f, time, tuple(space)


def _mapped(write, stmt):
    """The lowered right-hand side of ``write`` in ``stmt``'s field accesses, or
    None."""
    from devito.types import Indexed
    rhs = write
    if rhs is None:
        return None
    reads = {(a.field, a.time, a.space): a.expr for a in stmt.reads}
    subs = {}
    for i in rhs.atoms(Indexed):
        key = _indexed_offsets(i)
        if key is None or key not in reads:
            return None
        subs[i] = reads[key]
    mapped = rhs.xreplace(subs)
    bare = rhs.xreplace({i: sympy.S.One for i in subs})
    if mapped.atoms(Indexed) or any(getattr(s, 'is_Dimension', False)
                                    for s in bare.free_symbols):
        return None
    return mapped


class _NotMappedError(Exception):
    """A lowered expression whose temporaries do not map back."""
