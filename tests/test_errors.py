"""Mistakes a Devito user makes end in a short, clear error, raised before anything runs.

Each error names the user's own field or equation and says what to do; none shows
generated code or a derived expression. The seismic cases use Devito's acoustic model
(``conftest.acoustic_problem``), whose stencil is a long solved expression.
"""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import acoustic_problem, make_grid
from devito import Eq, Function, Operator, SparseTimeFunction, TimeFunction

from devito_perforad import (
    AdjointError,
    AdjointOperator,
    CheckpointedAdjoint,
    TangentOperator,
    adjoint,
    adjoint_function,
    tangent,
)

MAX_LENGTH = 400  # characters: a few lines


@pytest.fixture(scope='module')
def seismic():
    """Devito's acoustic forward model with its adjoint fields, built once."""
    p = acoustic_problem(so=4, shape=(21, 21), nbl=4, tn=50.0)
    p['ub'] = TimeFunction(name='ub', grid=p['model'].grid, time_order=2, space_order=4)
    p['vpb'], p['recb'] = adjoint_function(p['model'].vp), adjoint_function(p['rec'])
    return p


def full_map(p):
    return {p['u']: p['ub'], p['model'].vp: p['vpb'], p['rec']: p['recb']}


def short_and_clean(message):
    """A few lines, with no generated code and no derived (expanded) expression."""
    assert len(message) < MAX_LENGTH, message
    assert '#include' not in message and '{\n' not in message, message
    for derived in ('Mod(', 'time_M + 1', '0.0', 'damp(x, y)/dt', '**(-2)*'):
        assert derived not in message, (derived, message)
    return message


def error_of(call, kind=AdjointError):
    with pytest.raises(kind) as info:
        call()
    return short_and_clean(str(info.value))


# -- the adjoints map -----------------------------------------------------------------

def test_adjoints_given_as_a_list_fail_at_once_without_growing_memory():
    """``dict([u, ...])`` iterates a Devito Function forever (16.7 GB before this
    check). In a child process with a memory cap and a time limit, so a regression
    fails the test instead of the machine."""
    code = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
        sys.path.insert(0, 'tests')
        from conftest import acoustic_problem
        from devito_perforad import AdjointOperator, adjoint_function
        p = acoustic_problem(so=2, shape=(11, 11), nbl=2, tn=20.0)
        ub, vpb = adjoint_function(p['u']), adjoint_function(p['model'].vp)
        for wrong in ([ub, vpb], (ub, vpb), ub):
            try:
                AdjointOperator(p['primal'], wrong, subs=p['subs'])
            except TypeError as e:
                print('TypeError:', e)
    """)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout
    for line in lines:
        assert 'must be a dict that maps each primal field' in line, line
        short_and_clean(line)


def test_empty_map(seismic):
    message = error_of(lambda: adjoint(seismic['primal'], {}, seismic['subs']))
    assert 'map is empty' in message


def test_written_wavefield_missing(seismic):
    p = seismic
    message = error_of(lambda: adjoint(p['primal'], {p['model'].vp: p['vpb'],
                                                     p['rec']: p['recb']}, p['subs']))
    assert re.search(r"writes `u` \(in `Eq\(u\(time \+ dt, x, y\), \.\.\.\)`\)", message)
    assert 'adjoint_function(u)' in message and 'None' in message


def test_receivers_missing_is_not_a_silent_zero_gradient(seismic):
    p = seismic
    message = error_of(lambda: adjoint(p['primal'], {p['u']: p['ub'],
                                                     p['model'].vp: p['vpb']}, p['subs']))
    assert "writes `rec` (in `rec.interpolate(expr=u(time, x, y))`)" in message
    assert 'None to mark it inactive' in message


@pytest.mark.slow   # the default run's time
def test_receivers_marked_inactive():
    """``rec: None`` is the explicit way to leave the receivers out: the adjoint then
    only carries the wavefield's own seed, exactly as if ``recb`` were zero."""
    p = acoustic_problem(so=4, shape=(21, 21), nbl=4, tn=50.0)
    u, rec, vp = p['u'], p['rec'], p['model'].vp
    Operator(p['primal'], subs=p['subs']).apply(**p['apply'])
    results = []
    for receivers in ('inactive', 'zero seed'):
        ub = TimeFunction(name='ub', grid=u.grid, time_order=2, space_order=4)
        vpb = adjoint_function(vp)
        ub.data[:] = 1e-3 * np.arange(ub.data.size).reshape(ub.data.shape) % 1
        adjoints = {u: ub, vp: vpb, rec: None}
        if receivers == 'zero seed':
            adjoints[rec] = adjoint_function(rec)
        AdjointOperator(p['primal'], adjoints, subs=p['subs']).apply(**p['apply'])
        results.append(vpb.data.copy())
    assert np.abs(results[0]).max() > 0
    assert np.allclose(results[0], results[1], rtol=1e-12, atol=0)


def test_every_field_inactive(seismic):
    p = seismic
    message = error_of(lambda: adjoint(p['primal'], {p['u']: None, p['rec']: None},
                                       p['subs']))
    assert 'marked inactive' in message


def test_inactive_field_the_derivative_flows_through():
    grid = make_grid(1, 2)
    u, w, q = (Function(name=n, grid=grid, space_order=2) for n in 'uwq')
    message = error_of(lambda: adjoint([Eq(w, u.dx), Eq(q, w.dx)],
                                       {u: adjoint_function(u), w: None,
                                        q: adjoint_function(q)}))
    assert 'field `w`' in message and 'marked inactive' in message


def test_float32_adjoint_of_a_float64_field(seismic):
    p = seismic
    ub32 = TimeFunction(name='ub32', grid=p['model'].grid, time_order=2, space_order=4,
                        dtype=np.float32)
    message = error_of(lambda: adjoint(p['primal'], {**full_map(p), p['u']: ub32},
                                       p['subs']))
    assert 'ub32' in message and 'float32' in message and 'dtype=float64' in message


def test_sparse_adjoint_of_another_dtype(seismic):
    p = seismic
    rec = p['rec']
    recb = SparseTimeFunction(name='recb32', grid=rec.grid, npoint=rec.npoint,
                              nt=rec.nt, coordinates=rec.coordinates.data,
                              dtype=np.float32)
    message = error_of(lambda: adjoint(p['primal'], {**full_map(p), rec: recb},
                                       p['subs']))
    assert '`recb32` of `rec`' in message and 'float32' in message


def test_model_m_as_key_names_model_vp(seismic):
    p = seismic
    adjoints = {p['u']: p['ub'], p['model'].m: p['vpb'], p['rec']: p['recb']}
    message = error_of(lambda: adjoint(p['primal'], adjoints, p['subs']))
    assert 'is an expression, not a field' in message and '`model.vp`' in message


def test_adjoint_function_of_model_m(seismic):
    message = error_of(lambda: adjoint_function(seismic['model'].m))
    assert '`vp`' in message and '`model.vp`' in message


def test_shifted_access_as_key(seismic):
    p = seismic
    adjoints = dict(full_map(p))
    adjoints[p['u'].forward] = adjoints.pop(p['u'])
    message = error_of(lambda: adjoint(p['primal'], adjoints, p['subs']))
    assert 'shifted access of `u`' in message


def test_swapped_map(seismic):
    p = seismic
    adjoints = {p['ub']: p['u'], p['model'].vp: p['vpb'], p['rec']: p['recb']}
    message = error_of(lambda: adjoint(p['primal'], adjoints, p['subs']))
    assert '`ub` is in the adjoints map but the expressions neither read nor write it' \
        in message
    assert 'from primal to adjoint' in message


def test_field_the_program_does_not_use(seismic):
    p = seismic
    other = Function(name='other', grid=p['model'].grid)
    message = error_of(lambda: adjoint(p['primal'], {**full_map(p),
        other: adjoint_function(other)}, p['subs']))
    assert '`other` is in the adjoints map' in message


def test_one_adjoint_for_two_fields(seismic):
    p = seismic
    message = error_of(lambda: adjoint(p['primal'], {**full_map(p),
        p['model'].damp: p['vpb']}, p['subs']))
    assert '`vp_b` is the adjoint of `vp` and `damp`' in message


def _wrong_adjoint(name, grid, u):
    other = make_grid(2, 4)
    return {
        'kind': Function(name='ub', grid=grid, space_order=4),
        'grid': TimeFunction(name='ub', grid=other, space_order=4, time_order=2),
        'shape': TimeFunction(name='ub', grid=make_grid(2, 4, n=14), space_order=4,
                              time_order=2),
        'time order': TimeFunction(name='ub', grid=grid, space_order=4, time_order=1),
        'saved for buffered': TimeFunction(name='ub', grid=grid, space_order=4,
                                           time_order=2, save=7),
        'itself': u,
        'expression': 2 * u,
        'array': np.zeros(3),
    }[name]


@pytest.mark.parametrize('name', ['kind', 'grid', 'shape', 'time order',
                                  'saved for buffered', 'itself', 'expression', 'array'])
def test_wrong_adjoint_objects(name):
    grid = make_grid(2, 4)
    u = TimeFunction(name='u', grid=grid, space_order=4, time_order=2)
    primal = [Eq(u.forward, 2 * u - u.backward + u.laplace)]
    message = error_of(lambda: adjoint(primal, {u: _wrong_adjoint(name, grid, u)}))
    assert re.match(r"The adjoint `.*` of `u`", message), message
    assert 'adjoint_function(u)' in message or 'buffered adjoint' in message


# -- the expressions and the options --------------------------------------------------

def test_operator_with_other_subs(seismic):
    """An Operator's own subs are used: other subs given with it are refused."""
    p = seismic
    op = Operator(p['primal'], subs=p['subs'])
    for call in (lambda: AdjointOperator(op, full_map(p), subs={}),
                 lambda: TangentOperator(op, full_map(p), subs={})):
        message = error_of(call, TypeError)
        assert 'was built with other subs than the ones given' in message


def test_a_name_the_program_does_not_use(seismic):
    p = seismic
    op = Operator(p['primal'], subs=p['subs'])
    message = error_of(lambda: adjoint(op, {'w': p['ub'], 'rec': p['recb']}))
    assert "The key 'w' of the adjoints map names no field of the expressions" in message
    assert '`u`' in message and '`rec`' in message


def test_a_field_by_name_and_as_itself(seismic):
    p = seismic
    message = error_of(lambda: adjoint(p['primal'], {**full_map(p), 'u': p['ub']},
                                       subs=p['subs']))
    assert '`u` is in the adjoints map twice, by name and as a field' in message


@pytest.mark.parametrize('expressions', ['u.forward = u', {'a': 1}, np.zeros(3)],
                         ids=['str', 'dict', 'array'])
def test_expressions_of_the_wrong_type(expressions):
    grid = make_grid(1, 2)
    u = Function(name='u', grid=grid)
    message = error_of(lambda: adjoint(expressions, {u: adjoint_function(u)}), TypeError)
    assert 'must be Devito equations' in message


def test_something_else_in_the_list():
    grid = make_grid(1, 2)
    u = Function(name='u', grid=grid)
    message = error_of(lambda: adjoint([Eq(u, 1), 3.5], {u: adjoint_function(u)}))
    assert '`3.5` is a float, not a devito Eq, Inc' in message


def test_a_bare_expression_in_the_list():
    grid = make_grid(1, 2)
    u, w = Function(name='u', grid=grid), Function(name='w', grid=grid)
    message = error_of(lambda: adjoint([Eq(w, u), u + 1], {u: adjoint_function(u),
                                                           w: adjoint_function(w)}))
    assert '`u(x) + 1` is an expression, not an equation: wrap it in `Eq(' in message


def test_a_program_running_backward_in_time():
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2)
    message = error_of(lambda: adjoint([Eq(u.backward, u + u.dx)],
                                       {u: adjoint_function(u)}))
    assert 'runs backward in time, which is not supported' in message
    assert 'u.forward' in message


def test_no_equations():
    grid = make_grid(1, 2)
    u = Function(name='u', grid=grid)
    message = error_of(lambda: adjoint([], {u: adjoint_function(u)}))
    assert 'hold no equation' in message


def test_subs_of_the_wrong_type(seismic):
    p = seismic
    message = error_of(lambda: adjoint(p['primal'], full_map(p), subs=[1, 2]), TypeError)
    assert 'subs must be a dict' in message


def test_apply_arguments_given_to_the_constructor(seismic):
    p = seismic
    message = error_of(lambda: AdjointOperator(p['primal'], full_map(p), subs=p['subs'],
                                               dt=1.0, time_M=10), TypeError)
    assert '`dt` and `time_M`' in message and '.apply()' in message


@pytest.mark.parametrize('options, phrase', [
    (dict(mode='reverse'), "choose 'gather' or 'scatter'"),
    (dict(checkpointing='yes'), 'choose True or False'),
    (dict(n_checkpoints=10), 'checkpointing=True only'),
    (dict(checkpointing=True, n_checkpoints=0), 'at least 1'),
    (dict(checkpointing=True, n_checkpoints=2.5), 'whole number'),
])
def test_options(seismic, options, phrase):
    p = seismic
    message = error_of(lambda: AdjointOperator(p['primal'], full_map(p), subs=p['subs'],
                                               **options))
    assert phrase in message


def test_checkpointing_with_a_saved_wavefield(seismic):
    p = seismic
    message = error_of(lambda: CheckpointedAdjoint(p['primal'], full_map(p),
                                                   subs=p['subs']))
    assert 'buffered TimeFunctions' in message


# -- the same rules for the tangent and the checkpointed adjoint -----------------------

def test_tangent_map_checked_alike(seismic):
    p = seismic
    dvp, du = adjoint_function(p['model'].vp, 'dvp'), adjoint_function(p['u'], 'du')
    message = error_of(lambda: tangent(p['primal'], {p['u']: du, p['model'].vp: dvp},
                                       p['subs']))
    assert '`rec` is not in the tangents map' in message
    with pytest.raises(TypeError, match='tangents must be a dict'):
        tangent(p['primal'], [du, dvp], p['subs'])


def test_checkpointed_map_checked_alike(seismic):
    p = seismic
    with pytest.raises(TypeError, match='adjoints must be a dict'):
        CheckpointedAdjoint(p['primal'], [p['ub'], p['vpb']], subs=p['subs'])


# -- space orders and halos -----------------------------------------------------------

def test_adjoint_with_too_small_a_space_order(seismic):
    p = seismic
    ub = TimeFunction(name='ub1', grid=p['model'].grid, time_order=2, space_order=1)
    message = error_of(lambda: adjoint(p['primal'], {**full_map(p), p['u']: ub},
                                       p['subs']))
    assert message == ("The adjoint reads `ub1`, the adjoint of `u`, 2 points away along "
                       "`x`, but its halo holds 1. Create it with space_order=4, like "
                       "`u` (adjoint_function(u) does).")


def test_coefficient_read_past_its_halo():
    """The adjoint evaluates ``1/m`` at every neighbour the stencil reaches."""
    grid = make_grid(1, 4)
    u = Function(name='u', grid=grid, space_order=4)
    w = Function(name='w', grid=grid, space_order=4)
    m = Function(name='m', grid=grid, space_order=1)
    message = error_of(lambda: adjoint([Eq(w, u.dx2 / m)], {u: adjoint_function(u),
                                                            w: adjoint_function(w)}))
    assert 'evaluates `m`' in message and 'space_order of at least 2' in message


def test_primal_stencil_past_its_halo_names_the_short_equation():
    grid = make_grid(1, 4)
    u = Function(name='u', grid=grid, space_order=1)
    w = Function(name='w', grid=grid, space_order=4)
    x = grid.dimensions[0]
    message = error_of(lambda: adjoint([Eq(w, u.shift(x, 2 * x.spacing))],
                                       {u: adjoint_function(u), w: adjoint_function(w)}))
    assert message.startswith('In `Eq(w(x), u(x + 2*h_x))`, field `u`: `u` is read 2 '
                              'points away along `x` but its halo holds 1')


# -- what the README says is not supported yet ------------------------------------------

def _unsupported():
    """Per row of the README's table of what is not supported yet: the program that
    shows it, the error type and message it gets."""
    from devito import NODE
    grid = make_grid(2, 2)
    p = TimeFunction(name='p', grid=grid, space_order=2, staggered=NODE)
    pb = adjoint_function(p)
    return {
        'programs running backward': lambda: adjoint([Eq(p.backward, p + p.dx)],
                                                      {p: pb}),
    }


def test_the_readme_names_the_errors_of_what_is_not_supported():
    from pathlib import Path
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    table = readme[readme.index('Not yet supported'):readme.index('## The main job')]
    rows = [r.split(' | ') for r in table.splitlines() if r.startswith('| ')
            and not r.startswith('| what') and not r.startswith('|---')]
    cases = _unsupported()
    assert len(rows) == len(cases)
    for what, kind, phrase in rows:
        (name,) = [n for n in cases if what.strip('| ').startswith(n)]
        kind = {'`AdjointError`': AdjointError, '`TypeError`': TypeError}[kind]
        message = error_of(cases[name], kind)
        for part in phrase.strip('| `').split(' ... '):
            assert part in message, (what, part, message)


def test_keywords_devito_ignores_are_ignored_with_a_warning(seismic):
    """Devito's first-order visco-acoustic ``ForwardOperator`` passes ``v=v`` to
    ``Operator``, which ignores it: so does ``AdjointOperator``, naming it."""
    p = seismic
    with pytest.warns(UserWarning, match='AdjointOperator ignores `v`, as '
                                         'devito.Operator does'):
        op = AdjointOperator(p['primal'], full_map(p), subs=p['subs'], v=p['u'])
    assert op.name == 'Adjoint'
