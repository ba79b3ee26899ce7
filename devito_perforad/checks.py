"""Checks of the user's input, run before anything is derived or built.

Every public entry point (:func:`~devito_perforad.adjoint`,
:func:`~devito_perforad.AdjointOperator`, :func:`~devito_perforad.tangent`,
:func:`~devito_perforad.TangentOperator`, :class:`~devito_perforad.CheckpointedAdjoint`)
starts with :func:`check_inputs`. A mistake gets a short error that names the user's
own equation or field and says what to do: a ``TypeError`` for an argument of the
wrong type, an :class:`~devito_perforad.AdjointError` otherwise. No message shows
generated code or derived expressions.

The map from primal to adjoint fields must name every field the program writes
(receivers included): to its adjoint field, or to ``None`` to mark it inactive. A
field the program only reads is a constant unless it is in the map.

Examples
--------
>>> from devito import Eq, Function, Grid
>>> from devito_perforad import AdjointError, adjoint, adjoint_function
>>> grid = Grid(shape=(8,))
>>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
>>> try:
...     adjoint([Eq(w, u.dx)], {u: adjoint_function(u)})
... except AdjointError as e:
...     print(e)  # doctest: +NORMALIZE_WHITESPACE
The program writes `w` (in `Eq(w(x), Derivative(u(x), x))`), but `w` is not in the
adjoints map. Map it to its adjoint, `adjoint_function(w)`, or to None to mark it
inactive.
"""

import re
import warnings
from collections import defaultdict
from collections.abc import Mapping

import numpy as np
from devito import (
    Eq,
    Function,
    Operator,
    SparseFunction,
    SparseTimeFunction,
    TimeFunction,
)
from devito.mpi import MPI
from devito.symbolics import retrieve_functions
from devito.types.basic import AbstractFunction
from devito.types.tensor import TensorFunction
from sympy import Basic

from .devito_compat import operator_inputs
from .errors import (
    AdjointError,
    BufferSizeError,
    InternalError,
    check_field,
    describe,
    located,
    short,
)
from .fields import buffer_size, is_saved, several_ranks
from .ir.access import access_of, analyse, at_offsets, space_offsets
from .ir.symbolic import unrepresentable
from .levels import Levels, prologue, written_levels

__all__ = ['check_inputs', 'check_primal', 'check_options', 'check_operator_kwargs',
           'check_halos', 'check_time_free', 'check_primal_values', 'check_window',
           'check_tangent_values',
           'check_sparse_reads', 'check_buffers', 'check_checkpointed', 'check_numbers']


def check_inputs(expressions, adjoints, subs=None, what='adjoints'):
    """Check the primal ``expressions`` and the map ``adjoints``; analyse the program.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, or nested lists of them
        The primal, exactly as passed to ``devito.Operator``.
    adjoints : dict
        Primal field -> adjoint field, or ``None`` for a written field that is inactive.
    subs : dict, optional
        The primal Operator's ``subs``.
    what : str, optional
        The map's name in messages (``'adjoints'`` or ``'tangents'``).

    Returns
    -------
    program : list of Statement
        The analysed primal (:func:`devito_perforad.ir.access.analyse`).
    active : dict
        The map without its inactive (``None``) entries.

    Raises
    ------
    TypeError
        If ``expressions``, ``adjoints`` or ``subs`` is not of a kind these functions
        take (an Operator, a list of pairs, ...).
    AdjointError
        If the map and the program do not fit together, or the program has a form the
        transform does not reverse.

    Examples
    --------
    >>> from devito import Eq, Function, Grid
    >>> from devito_perforad import adjoint_function
    >>> grid = Grid(shape=(8,))
    >>> u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    >>> program, active = check_inputs([Eq(w, 2*u)], {u: adjoint_function(u), w: None})
    >>> [s.write.field.name for s in program], [f.name for f in active]
    (['w'], ['u'])
    """
    _check_expressions(expressions)
    pairs = _check_map(adjoints, what)
    if subs is not None and not isinstance(subs, Mapping):
        raise TypeError(f"subs must be a dict, like the primal Operator's (e.g. "
                        f"model.spacing_map); got a {type(subs).__name__}.")
    program = analyse(expressions, subs)
    if not program:
        raise AdjointError("The expressions hold no equation: pass the list given to "
                           "devito.Operator for the primal.")
    pairs = _by_name(pairs, program, what)
    _check_against_program(program, pairs, what)
    active = {f: fb for f, fb in pairs.items() if fb is not None}
    check_halos([s.eq.evaluate for s in program if s.is_dense])
    check_program(program, active)
    check_injections(program)
    return program, active


# -- the arguments --------------------------------------------------------------------

OPERATOR_KWARGS = ('name', 'subs', 'opt', 'openmp', 'sym_opt', 'platform', 'language',
                   'compiler', 'allocator')


def check_options(mode='gather', checkpointing=False, n_checkpoints=None):
    """Check the options of :func:`~devito_perforad.AdjointOperator`.

    Raises
    ------
    AdjointError
        For a ``mode`` other than ``'gather'`` or ``'scatter'``, a ``checkpointing``
        that is not a bool, or an ``n_checkpoints`` that is not a positive whole number
        or comes without ``checkpointing=True``.

    Examples
    --------
    >>> try:
    ...     check_options(checkpointing=False, n_checkpoints=10)
    ... except AdjointError as e:
    ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
    n_checkpoints=10 is used with checkpointing=True only: add checkpointing=True,
    or drop n_checkpoints.
    """
    if mode not in ('gather', 'scatter'):
        raise AdjointError(f"mode={mode!r}: choose 'gather' or 'scatter'.")
    if not isinstance(checkpointing, (bool, np.bool_)):
        raise AdjointError(f"checkpointing={checkpointing!r}: choose True or False.")
    if n_checkpoints is None:
        return
    if not checkpointing:
        raise AdjointError(f"n_checkpoints={n_checkpoints!r} is used with "
                           "checkpointing=True only: add checkpointing=True, or drop "
                           "n_checkpoints.")
    if (isinstance(n_checkpoints, (bool, np.bool_))
            or not isinstance(n_checkpoints, (int, np.integer)) or n_checkpoints < 1):
        raise AdjointError(f"n_checkpoints={n_checkpoints!r}: give a whole number of "
                           "snapshots, at least 1, or None for Revolve's choice.")


# run-time arguments: Devito takes them in apply(), and a constructor would lose them
RUN_TIME = re.compile(r'(dt|time|nthreads\w*|autotune|\w+_[mM])$')


def check_operator_kwargs(kwargs, caller):
    """Check the keyword arguments ``caller`` passes on to ``devito.Operator``: those
    it passes on.

    Devito takes run-time arguments in ``apply`` and ignores keywords it does not
    know at construction: an ``apply`` argument given here (``dt``, ``time_M``, ...)
    would be lost without a word, so it is an error; another keyword Devito ignores
    (Devito's first-order visco-acoustic ``ForwardOperator`` passes ``v=v``) is
    ignored here too, with a warning that names it.

    Returns
    -------
    dict
        ``kwargs`` without the keywords Devito ignores.

    Raises
    ------
    TypeError
        For a run-time argument.

    Examples
    --------
    >>> try:
    ...     check_operator_kwargs({'subs': {}, 'dt': 0.5}, 'AdjointOperator')
    ... except TypeError as e:
    ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
    AdjointOperator got `dt`, which devito.Operator does not take; pass run-time
    arguments (dt, time_m, time_M, ...) to .apply(). It passes on subs, opt, name,
    platform, language, compiler and allocator.
    """
    unknown = [k for k in kwargs if k not in OPERATOR_KWARGS]
    run_time = [k for k in unknown if RUN_TIME.match(k)]
    if run_time:
        raise TypeError(f"{caller} got {_names(run_time)}, which devito.Operator does "
                        "not take; pass run-time arguments (dt, time_m, time_M, ...) to "
                        ".apply(). It passes on subs, opt, name, platform, language, "
                        "compiler and allocator.")
    if unknown:
        warnings.warn(f"{caller} ignores {_names(unknown)}, as devito.Operator does.",
                      stacklevel=3)
    return {k: v for k, v in kwargs.items() if k in OPERATOR_KWARGS}


def check_primal(expressions, subs=None, kwargs=None):
    """The primal's expressions, ``subs`` and Operator keywords: as given, or, for a
    ``devito.Operator``, the ones it was built from
    (:func:`~devito_perforad.devito_compat.operator_inputs`).

    An Operator's keywords (``subs``, ``opt``, ``language``, ``platform``, ...) are
    those of the Operators derived from it, but its ``name``; ``kwargs`` given here
    are added to them, and override them.

    Raises
    ------
    TypeError
        If ``subs`` other than the Operator's own are given with it.
    AdjointError
        If the Operator was built before ``devito_perforad`` was imported.

    Examples
    --------
    >>> from devito import Eq, Function, Grid, Operator
    >>> grid = Grid(shape=(4,))
    >>> f = Function(name='f', grid=grid)
    >>> op = Operator([Eq(f, 2 * f)], subs=grid.spacing_map, name='Double')
    >>> expressions, subs, kwargs = check_primal(op, kwargs={'opt': 'noop'})
    >>> expressions, sorted(kwargs)
    ([Eq(f(x), 2*f(x))], ['opt', 'subs'])
    """
    kwargs = dict(kwargs or {})
    if not isinstance(expressions, Operator):
        return expressions, subs, kwargs
    recorded, built = operator_inputs(expressions)
    built = {k: v for k, v in built.items() if k in OPERATOR_KWARGS and k != 'name'}
    given = subs if subs is not None else kwargs.get('subs')
    if given is not None and dict(given) != dict(built.get('subs') or {}):
        raise TypeError(f"The Operator `{expressions.name}` was built with other subs "
                        "than the ones given; its own are used: leave subs out.")
    kwargs = {**built, **kwargs}
    if 'subs' in built:
        kwargs['subs'] = built['subs']
    return recorded, kwargs.get('subs'), kwargs


def _check_expressions(expressions):
    if isinstance(expressions, (str, bytes, Mapping, np.ndarray)):
        raise TypeError(f"The expressions must be Devito equations (Eq, Inc, "
                        f"S.inject, S.interpolate) or a list of them; got a "
                        f"{type(expressions).__name__}.")


def _check_map(adjoints, what):
    """The map as a plain dict, its keys and values checked one by one."""
    if not isinstance(adjoints, Mapping):
        raise TypeError(f"{what} must be a dict that maps each primal field to its "
                        f"adjoint field, e.g. {{u: ub, model.vp: vp_b, rec: rec_b}}; got "
                        f"a {type(adjoints).__name__}.")
    if not adjoints:
        raise AdjointError(f"The {what} map is empty: map each field the program writes, "
                           "and each parameter to differentiate, to its adjoint field "
                           "(adjoint_function(f)).")
    pairs = {}
    for f, fb in _components(adjoints).items():
        if not isinstance(f, str):  # a name: looked up in the program
            _check_key(f, what)
        pairs[f] = fb
    if all(fb is None for fb in pairs.values()):
        raise AdjointError(f"Every field in the {what} map is marked inactive (None): "
                           "map at least one field to its adjoint (adjoint_function(f)).")
    return pairs


def _components(adjoints):
    """The map with each vector or tensor field (and its adjoint) as its components."""
    out = {}
    for f, fb in adjoints.items():
        if isinstance(f, TensorFunction):
            parts = fb.values() if isinstance(fb, TensorFunction) else [fb] * len(
                f.values())
            if len(parts) != len(f.values()):
                raise AdjointError(f"The adjoint of `{f.name}` has {len(parts)} "
                                   f"components, `{f.name}` {len(f.values())}; use "
                                   f"adjoint_function({f.name}).")
            out.update(zip(f.values(), parts, strict=True))
        else:
            out[f] = fb
    return out


def _by_name(pairs, program, what):
    """The map with its keys given by name replaced by the program's fields of that
    name (Devito's seismic solvers make their fields themselves)."""
    fields = {}
    for s in program:
        for f in [s.write.field, s.sparse, *(a.field for a in s.reads)]:
            if f is not None:
                fields.setdefault(f.name, f)
    out = {}
    for f, fb in pairs.items():
        if isinstance(f, str):
            if f not in fields:
                raise AdjointError(f"The key '{f}' of the {what} map names no field of "
                                   f"the expressions; they use {_names(sorted(fields))}.")
            f = fields[f]
        if f in out:
            raise AdjointError(f"`{f.name}` is in the {what} map twice, by name and as "
                               "a field; keep one.")
        out[f] = fb
    return out


def _check_key(f, what):
    check_field(f, f"The key `{short(f)}` of the {what} map")


def _check_pair(f, fb, wider=False):
    """Check that ``fb`` can be the adjoint (or tangent) of the primal field ``f``.

    A saved primal TimeFunction (``save=nt``) may have a buffered adjoint: the usual
    set-up for gradients, where the forward wavefield is stored and the adjoint
    wavefield is not. Where ``wider``, a buffered adjoint may have more time slots
    than the primal's buffer (``save=Buffer(n)``): its first slots hold the seeds and
    the results, laid out as the primal's buffer.

    Raises
    ------
    AdjointError
        If ``fb`` is of another kind, grid, shape, dtype, time order, staggering or
        storage than ``f``.
    """
    where = f"The adjoint `{getattr(fb, 'name', short(fb))}` of `{f.name}`"
    make = f"use adjoint_function({f.name}), which matches the primal"
    if _kind(fb) != _kind(f):
        raise AdjointError(f"{where} is a {_kind(fb)}; it must be a {_kind(f)}, like "
                           f"`{f.name}`; {make}.")
    if fb is f or fb.name == f.name:
        raise AdjointError(f"{where} must be a distinct field with a name of its own; "
                           f"{make}.")
    if fb.grid is not f.grid:
        raise AdjointError(f"{where} lives on another grid; {make}.")
    if np.dtype(fb.dtype) != np.dtype(f.dtype):
        raise AdjointError(f"{where} has dtype {np.dtype(fb.dtype).name} but `{f.name}` "
                           f"has {np.dtype(f.dtype).name}; create it with "
                           f"dtype={np.dtype(f.dtype).name}, or {make}.")
    if isinstance(f, SparseFunction):
        if fb.shape != f.shape:
            raise AdjointError(f"{where} has shape {fb.shape}, not the primal's "
                               f"{f.shape}; {make}.")
        if not np.array_equal(fb.coordinates.data, f.coordinates.data):
            raise AdjointError(f"{where} has other coordinates than the primal's; "
                               f"{make}.")
        return
    timed = isinstance(f, TimeFunction)
    if timed:
        if fb.time_order != f.time_order:
            raise AdjointError(f"{where} has time_order {fb.time_order}, not the "
                               f"primal's {f.time_order}; {make}.")
        if is_saved(fb) and not is_saved(f):
            raise AdjointError(f"{where} is saved (save=nt) but `{f.name}` is buffered; "
                               "a buffered primal needs a buffered adjoint.")
    same_storage = not timed or is_saved(fb) == is_saved(f)
    if timed and not is_saved(fb) and not is_saved(f) and (
            buffer_size(fb) > buffer_size(f) and wider):
        same_storage = False
    shape, primal_shape = ((fb.shape, f.shape) if same_storage
                           else (fb.shape[1:], f.shape[1:]))
    if shape != primal_shape:
        raise AdjointError(f"{where} has shape {fb.shape}, not the primal's {f.shape}; "
                           f"{make}.")
    if ([d.is_Time for d in fb.dimensions] != [d.is_Time for d in f.dimensions]
            or fb.space_dimensions != f.space_dimensions):
        raise AdjointError(f"{where} has dimensions {fb.dimensions}, not the primal's "
                           f"{f.dimensions}; {make}.")
    if fb.staggered != f.staggered:
        raise AdjointError(f"{where} is staggered differently from `{f.name}`; {make}.")


def _kind(f):
    for kind in (SparseTimeFunction, SparseFunction, TimeFunction, Function):
        if isinstance(f, kind):
            return kind.__name__
    return type(f).__name__


# -- the map against the program ------------------------------------------------------

def _check_against_program(program, pairs, what):
    writers = {}
    for s in program:
        writers.setdefault(s.write.field, s)
    read = {a.field for s in program for a in s.reads} | {
        s.sparse for s in program if s.sparse is not None}
    for f, fb in pairs.items():
        if f in writers or f in read:
            continue
        swapped = isinstance(fb, AbstractFunction) and (fb in writers or fb in read)
        hint = (f" It maps `{f.name}` to `{fb.name}`, which the program uses: the map "
                "goes from primal to adjoint, {u: ub}." if swapped else
                " Remove it, or pass the expressions that use it.")
        raise AdjointError(f"`{f.name}` is in the {what} map but the expressions neither "
                           f"read nor write it.{hint}")
    owners = defaultdict(list)
    for f, fb in pairs.items():
        if fb is not None:
            _check_pair(f, fb, wider=what == 'adjoints')
            owners[fb].append(f.name)
    for fb, names in owners.items():
        if len(names) > 1:
            raise AdjointError(f"`{fb.name}` is the adjoint of {_names(names)}; give "
                               "each field an adjoint of its own.")
    missing = [f for f in writers if f not in pairs]
    if missing:
        f = missing[0]
        others = (f" (and {_names([g.name for g in missing[1:]])})"
                  if missing[1:] else "")
        raise AdjointError(f"The program writes `{f.name}` (in "
                           f"`{describe(writers[f].eq)}`){others}, but `{f.name}` is not "
                           f"in the {what} map. Map it to its adjoint, "
                           f"`adjoint_function({f.name})`, or to None to mark it "
                           "inactive.")


# -- the program ----------------------------------------------------------------------

def check_halos(eqs, adjoints=None):
    """Raise if an access reaches past its field's halo.

    Devito would otherwise shrink the loop bounds and silently skip points. ``eqs``
    are the user's (``adjoints`` is None) or the derived adjoint equations; for the
    latter the message names the fields, never the derived equation.
    """
    primal_of = {fb: f for f, fb in (adjoints or {}).items()}
    for eq in eqs:
        if not isinstance(eq, Eq) or eq.implicit_dims:
            continue  # sparse operations index through positions, not offsets
        reach = defaultdict(int)
        for app in retrieve_functions([eq.lhs, eq.rhs], mode='unique'):
            f = app.function
            if not hasattr(f, '_size_halo'):
                continue
            dims = [d for d in f.dimensions if not d.is_Time]
            for d, k in zip(dims, space_offsets(app, eq), strict=True):
                left, right = f._size_halo[d]
                if -k > left or k > right:
                    reach[(f, d)] = max(reach[(f, d)], abs(k))
        for (f, d), k in sorted(reach.items(), key=lambda item: (
                item[0][0].name, item[0][0].dimensions.index(item[0][1]))):
            halo = min(f._size_halo[d])
            fix = f"Give `{f.name}` a space_order of at least {k}."
            if adjoints is None:
                raise located(eq, f, f"`{f.name}` is read {k} points away along `{d}` "
                                     f"but its halo holds {halo}; Devito would silently "
                                     f"shrink the loop. {fix}")
            if f in primal_of:
                g = primal_of[f]
                fix = (f"Create it with space_order={g.space_order}, like `{g.name}` "
                       f"(adjoint_function({g.name}) does)." if g.space_order >= k else
                       f"Give `{f.name}` a space_order of at least {k} (create "
                       f"`{g.name}` with it, then adjoint_function({g.name})).")
                raise AdjointError(
                    f"The adjoint reads `{f.name}`, the adjoint of `{g.name}`, {k} "
                    f"points away along `{d}`, but its halo holds {halo}. {fix}")
            raise AdjointError(f"The adjoint evaluates `{f.name}` at the neighbours the "
                               f"stencils reach, {k} points away along `{d}`, but its "
                               f"halo holds {halo}. {fix}")


def check_numbers(exprs, stage):
    """Postcondition of every pass: no number C cannot take exactly.

    gcc only warns on an integer literal too large for its type, then truncates it:
    a derived expression holding one would compile into a silently wrong adjoint.

    Parameters
    ----------
    exprs : iterable of sympy.Basic
        What ``stage`` produced (equations, coefficients).
    stage : str
        The pass, named in the message.

    Raises
    ------
    InternalError
        Naming ``stage`` and the first such number.

    Examples
    --------
    >>> import sympy
    >>> a = sympy.Symbol('a')
    >>> check_numbers([a / 3], 'through-write')
    >>> try:
    ...     check_numbers([10**30 * a], 'through-write')
    ... except InternalError as e:
    ...     print(e)  # doctest: +NORMALIZE_WHITESPACE
    Internal error in the through-write pass: it produced the number
    1000000000000000000000000000000, which C cannot represent exactly (integers
    beyond 2**53, or rationals whose terms are not exact doubles). Nothing was
    compiled. Please report this with your program.
    """
    for e in exprs:
        bad = unrepresentable(e if isinstance(e, Basic) else getattr(e, 'expr', 0))
        if bad:
            raise InternalError(
                f"Internal error in the {stage} pass: it produced the number "
                f"{short(bad[0], 80)}, which C cannot represent exactly (integers "
                "beyond 2**53, or rationals whose terms are not exact doubles). "
                "Nothing was compiled. Please report this with your program.")


def _writers(program):
    writers = defaultdict(list)
    for i, s in enumerate(program):
        writers[(s.write.field, s.write.time)].append(i)
    return writers


def check_program(program, adjoints):
    """Check the program's structure against the level model the transform uses.

    ``adjoints`` holds the active fields only: a written field missing from it was
    marked inactive (mapped to None).
    """
    timed = any(s.is_timed for s in program)
    before = prologue(program)
    writers = _writers(program)
    top_level = written_levels(program)
    for i, s in enumerate(program):
        w = s.write
        bad = unrepresentable(s.rhs)
        if bad:
            raise located(s.eq, w.field, f"the number {short(bad[0], 40)} is beyond what "
                          "C takes exactly (integers up to 2**53); gcc would truncate "
                          f"it with only a warning. Write it as a float, "
                          f"{float(bad[0])!r}.")
        if w.time is not None and any(a.field is w.field and a.time is not None
                                      and a.time > w.time for a in s.reads):
            raise located(s.eq, w.field, f"`{w.expr}` is computed from later levels: the "
                          "program runs backward in time, which is not supported. "
                          "Differentiate the forward-running program (writing "
                          f"`{w.field.name}.forward`); its adjoint runs backward.")
        if any(w.space):
            raise located(s.eq, w.field, f"the left-hand side `{w.expr}` is shifted in "
                                         "space; write at the iteration point.")
        eqs = [j for j in writers[(w.field, w.time)] if not program[j].increment]
        if (not eqs and w.time is not None and not is_saved(w.field)
                and w.field in adjoints):
            raise located(s.eq, w.field,
                          f"level `{w.expr}` of a buffered TimeFunction is only "
                          "incremented, never assigned; its old value is another time "
                          "level. Assign it with Eq first.")
        if eqs and s.increment and eqs[0] > i:
            raise located(s.eq, w.field,
                          f"`{w.expr}` is incremented before it is assigned.")
        for a in s.reads:
            written = writers.get((a.field, a.time), [])
            if timed and a.time is None and i >= before:
                # a Function the loop writes: read before this step's write, it
                # holds the previous step's value
                written = [j for j in written if j <= i] if any(a.space) else []
            if i in written and any(a.space):
                raise located(s.eq, a.field,
                              f"`{a.expr}` is read at an offset by the equation that "
                              "writes its level: an in-place update, whose result "
                              "depends on the order Devito visits the points. Write "
                              "to a separate field or time level.")
            if i in written and not any(j < i for j in written):
                raise located(s.eq, a.field,
                              f"`{a.expr}` is read in place: the equation overwrites "
                              "the value it reads. Write to a separate field or time "
                              "level.")
            if any(j > i for j in written) and not any(j < i for j in written):
                raise located(s.eq, a.field,
                              f"`{a.expr}` is read before the step writes its level, "
                              "so it reads what the level held before the step (in a "
                              "buffered field, an older level). Write the level "
                              "first, or read another one.")
            if a.time is not None and a.time > top_level.get(a.field, a.time):
                raise located(s.eq, a.field, f"`{a.expr}` reads a time level above the "
                                             "highest level the program writes.")
    # Derivatives flow through every field computed from an active one.
    varied = set(adjoints)
    changed = True
    while changed:
        changed = False
        for s in program:
            if s.write.field not in varied and any(a.field in varied for a in s.reads):
                varied.add(s.write.field)
                changed = True
    written = {s.write.field for s in program}
    for s in program:
        if s.write.field not in adjoints:
            continue
        for a in s.reads:
            if a.field not in adjoints and a.field in varied and a.field in written:
                raise located(s.eq, a.field,
                              f"`{a.field.name}` is marked inactive (None), but it "
                              "depends on active "
                              "fields and this active field is computed from it: the "
                              "adjoint must propagate through it. Map it to its adjoint "
                              f"(adjoint_function({a.field.name})).")


def _names(names):
    names = [f'`{n}`' for n in names]
    return names[0] if len(names) == 1 else ', '.join(names[:-1]) + ' and ' + names[-1]


# -- the derivation's own checks, before anything is emitted ---------------------------

def check_time_free(program):
    """Sparse operations are reversed inside time loops only."""
    for stmt in program:
        if not stmt.is_dense:
            raise AdjointError(f"`{describe(stmt.eq)}`: sparse operations are supported "
                               "inside "
                               "time loops only.")


def check_overwritten(active, derivs, versions, temporaries):
    """Raise if a partial of the ``active`` statements (``derivs``) needs values the
    primal overwrites: a level's value between two writes of it (a field of
    ``versions``, see :mod:`~devito_perforad.ir.versions`), or a ``Function``'s value
    at each step of the loop (``temporaries``, see
    :mod:`~devito_perforad.ir.temporaries`)."""
    for stmt, ds in zip(active, derivs, strict=True):
        for _, partial in ds:
            for app in retrieve_functions(partial, mode='unique'):
                f = app.function
                if f in versions:
                    f = temporaries.get(versions[f], versions[f])
                    raise located(stmt.eq, f,
                                  f"the adjoint needs the value `{f.name}` holds between "
                                  "two writes of one level, which the program overwrites "
                                  "within the step. Write that value to a field of its "
                                  "own.")
                if f in temporaries:
                    f = temporaries[f]
                    raise located(stmt.eq, f,
                                  f"the adjoint needs the value `{f.name}` takes at "
                                  "every step, but the loop overwrites it. Make it a "
                                  "TimeFunction with save=nt.")


def check_tangent_values(program, derivs, versions=None):
    """Raise if a tangent that runs without its primal (``primal=False``) has a partial
    (``derivs``, per statement) that needs a value the primal overwrites within the
    step: a level's value between two writes of it that is not recomputed (a read of
    one of the ``versions``, :mod:`~devito_perforad.ir.versions`), or a ``Function``
    the time loop writes. The fields then hold their final values, not those the
    statement read."""
    versions = versions or {}
    for i, (stmt, ds) in enumerate(zip(program, derivs, strict=True)):
        for _, partial in ds:
            for app in retrieve_functions(partial, mode='unique'):
                try:
                    a = access_of(app)
                except AdjointError:   # a sparse position: not a field's value
                    continue
                key = (a.field, a.time)
                writes = [j for j, s in enumerate(program)
                          if (s.write.field, s.write.time) == key]
                between = a.field in versions or (
                    any(j < i for j in writes) and any(j >= i for j in writes))
                # a Function the loop writes (one written before it keeps its value)
                temporary = a.time is None and any(program[j].is_timed for j in writes)
                if between or temporary:
                    field = versions.get(a.field, a.field)
                    value = at_offsets(field, time=a.time, space=a.space)
                    raise located(stmt.eq, field,
                                  f"the tangent needs the value `{value}` "
                                  "has when this equation reads it, which the program "
                                  "overwrites later in the step; without its primal the "
                                  "tangent sees the last one. Use primal=True (the "
                                  "default).")


def check_primal_values(active, derivs, program):
    """Raise if a partial of the ``active`` statements (``derivs``) needs values of a
    buffered TimeFunction the program overwrites: they are gone by the time the
    adjoint runs."""
    written = {s.write.field for s in program}
    for stmt, ds in zip(active, derivs, strict=True):
        for _, partial in ds:
            _check_primal_values(stmt, partial, written)


def _check_primal_values(stmt, partial, written):
    for app in retrieve_functions(partial, mode='unique'):
        f = app.function
        if isinstance(f, TimeFunction) and not is_saved(f) and f in written:
            raise located(stmt.eq, f,
                          f"the adjoint needs primal values `{app}` at every time step, "
                          "but a buffered TimeFunction only keeps its last "
                          f"{f.time_order + 1} levels. Create it with save=nt (or "
                          "recompute it by checkpointing).")


def check_window(stmt, partial, step, top):
    """Raise if ``partial``, from the primal step ``step`` counters away, reads a level
    of a recomputed (buffered) TimeFunction that the buffer no longer holds right after
    the primal step of the current counter (``top``: the highest level each field is
    written at, :func:`~devito_perforad.levels.written_levels`)."""
    for app in retrieve_functions(partial, mode='unique'):
        f = app.function
        if not isinstance(f, TimeFunction) or is_saved(f) or f not in top:
            continue
        level = access_of(app).time + (step or 0)
        if not top[f] - f.time_order <= level <= top[f]:
            raise located(stmt.eq, f,
                          f"with checkpointing, the adjoint at counter t needs "
                          f"`{f.name}` at level t{level:+d}, but after the primal step "
                          f"t the buffer "
                          f"holds levels t{top[f] - f.time_order:+d}..t{top[f]:+d}. "
                          "Save the field (save=nt) instead.")


def check_sparse_reads(active, derivs, levels):
    """What the sparse rules reverse: in an injected expression, unshifted reads of
    time-invariant fields and the sparse function at the current time; in an
    interpolation, TimeFunctions at or above the lowest level the stencils read."""
    for stmt, ds in zip(active, derivs, strict=True):
        if stmt.is_dense:
            continue
        for a, _ in ds:
            interpolated = stmt.kind == 'interpolate' and isinstance(a.field,
                                                                    TimeFunction)
            if interpolated and a.time < levels.w[a.field]:
                raise located(stmt.eq, a.field,
                              "an interpolation reads this field below the lowest "
                              "level the stencils read; this is not supported.")
            if interpolated:
                continue
            if any(a.space) and not isinstance(a.field, SparseFunction):
                raise located(stmt.eq, a.field, "a sparse operation reads this field at "
                                                "a shifted point; only unshifted reads "
                                                "of dense fields are supported.")
            if stmt.kind == 'inject' and (isinstance(a.field, TimeFunction)
                                          or (a.time or 0) != 0):
                raise located(stmt.eq, a.field,
                              "the injected expression may depend on time-invariant "
                              "fields and on the sparse function at the current time "
                              "only.")


def check_buffers(updates, adjoints):
    """A buffered adjoint must fit all the levels one counter touches
    (:meth:`~devito_perforad.levels.Levels.span`).

    Raises
    ------
    BufferSizeError
        With the ``Buffer(n)`` each adjoint that does not fit needs.
    """
    sizes = {}
    for f, levels in Levels.span(updates).items():
        fb = adjoints[f]
        if isinstance(fb, TimeFunction) and not is_saved(fb):
            need = max(levels) - min(levels) + 1
            if need > buffer_size(fb):
                sizes[f] = need
    if sizes:
        f, need = next(iter(sizes.items()))
        fb = adjoints[f]
        raise BufferSizeError(
            f"The adjoint `{fb.name}` of `{f.name}` must hold {need} time levels at "
            f"once, but it holds {buffer_size(fb)}: create it with "
            f"save=Buffer({need}) (devito.Buffer), or make the map with "
            "adjoint_functions(expressions), which sizes every adjoint.", sizes)


def check_injections(program):
    """Refuse a primal injection whose points reach past the domain's edge.

    There the injection writes the field's halo, which the primal's stencils read at
    later steps and never overwrite: the halo carries state from step to step, and
    the adjoint, whose updates cover the domain, does not follow it (a sinc source 0.3
    points from the edge of a 1D wave gave a dot test off by 2e-2). A point reaches
    past the edge when its interpolation support (``r`` points on either side) does:
    for linear interpolation, only a point outside the domain. The check reads the
    coordinates the sparse function holds now; points moved after the adjoint is
    built are not checked again.
    """
    for stmt in program:
        if stmt.kind == 'inject' and _reaches_halo(stmt.sparse):
            r = stmt.sparse.r
            raise located(stmt.eq, stmt.write.field,
                          f"`{stmt.sparse.name}` has points whose interpolation (radius "
                          f"{r}) reaches past the edge of the domain, so the injection "
                          "writes this field's halo, which the primal then carries from "
                          "step to step and the adjoint does not follow. Keep every "
                          f"point at least {r - 1} grid spacings inside the domain.")


def _reaches_halo(sparse):
    grid = sparse.grid
    coordinates = np.asarray(sparse.coordinates.data, dtype=np.float64)
    position = ((coordinates.reshape(-1, grid.dim) - np.asarray(grid.origin, float))
                / np.asarray(grid.spacing, float))
    last = np.asarray(grid.shape) - 1
    if sparse.r == 1:
        # linear: the second point has weight 0 at a grid point (tolerance for the
        # rounding of float32 coordinates)
        tol = 1e-4
        out = (position < -tol) | (position > last + tol)
    else:
        p = np.floor(position)
        out = (p - sparse.r + 1 < 0) | (p + sparse.r > last)
    reaches = bool(out.any())
    if several_ranks(grid):
        reaches = bool(grid.distributor.comm.allreduce(reaches, op=MPI.LOR))
    return reaches


def check_checkpointed(program):
    """Checkpointing recomputes the buffered TimeFunctions the primal steps: there must
    be some, of one dtype (Revolve's snapshots are one array)."""
    buffered = [f for f in written_levels(program)
                if isinstance(f, TimeFunction) and not is_saved(f)]
    if not buffered:
        raise AdjointError("Checkpointing needs a primal that steps buffered "
                           "TimeFunctions (without save=nt).")
    if len({f.dtype for f in buffered}) > 1:
        raise AdjointError("Checkpointed TimeFunctions must share one dtype.")
