"""Checkpointed adjoints (Revolve): equal to the saved-wavefield adjoint."""

import numpy as np
import pytest
from conftest import acoustic_problem, make_grid
from devito import Eq, Function, Operator, TimeFunction

from devito_perforad import AdjointError, AdjointOperator, adjoint_function


def _gradients(p, ranges, checkpointing, n_checkpoints=None):
    """FWI gradient, source adjoint and adjoint wavefield of the acoustic problem
    ``p``, with a saved primal or with checkpointing (buffered primal)."""
    u, src, rec, model = p['u'], p['src'], p['rec'], p['model']
    ub = TimeFunction(name='ub', grid=u.grid, space_order=u.space_order, time_order=2)
    recb, srcb, vpb = (adjoint_function(f) for f in (rec, src, model.vp))
    recb.data[:] = np.random.default_rng(0).standard_normal(recb.data.shape)
    adjoints = {u: ub, rec: recb, src: srcb, model.vp: vpb}
    apply = dict(p['apply'], **ranges)
    if checkpointing:
        AdjointOperator(p['primal'], adjoints, subs=p['subs'], checkpointing=True,
                        n_checkpoints=n_checkpoints).apply(**apply)
    else:
        Operator(p['primal'], subs=p['subs']).apply(**apply)
        AdjointOperator(p['primal'], adjoints, subs=p['subs']).apply(**apply)
    return {'vp': vpb.data.copy(), 'src': srcb.data.copy(), 'ub': ub.data.copy(),
            'rec': rec.data.copy()}


@pytest.mark.parametrize('n_checkpoints, ranges', [
    (None, {}),                         # Revolve's choice, the primal's whole range
    # few snapshots, much recomputation: in the slow run, for the default run's time
    pytest.param(3, {}, marks=pytest.mark.slow),
    # a sub-range: counters do not start at 1 (slow, for the default run's time)
    pytest.param(4, dict(time_m=3, time_M=40), marks=pytest.mark.slow),
], ids=['default', 'three-snapshots', 'sub-range'])
def test_equals_saved_wavefield(n_checkpoints, ranges):
    saved = _gradients(acoustic_problem(save=True), ranges, False)
    checkpointed = _gradients(acoustic_problem(save=False), ranges, True, n_checkpoints)
    for name, g in saved.items():
        assert np.abs(checkpointed[name] - g).max() <= 1e-12 * np.abs(g).max(), name


def test_levels_outside_the_buffer_are_refused():
    """The adjoint of ``u * u.backward`` needs the primal two steps back at the
    counter that gathers ``ub[t-1]``: a 3-slot buffer no longer holds it."""
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2)
    primal = [Eq(u.forward, 2 * u - u.backward + 0.1 * u * u.backward + 0.2 * u.dx2)]
    with pytest.raises(AdjointError, match="with checkpointing"):
        AdjointOperator(primal, {u: adjoint_function(u)}, checkpointing=True)


def test_needs_a_buffered_primal():
    grid = make_grid(1, 2)
    u = TimeFunction(name='u', grid=grid, space_order=2, time_order=2, save=10)
    with pytest.raises(AdjointError, match="buffered"):
        AdjointOperator([Eq(u.forward, 2 * u - u.backward + u.dx2)],
                        {u: adjoint_function(u)}, checkpointing=True)


def test_adjoint_without_counter_conditions():
    """A parameter gradient whose adjoint tests no counter against the run's range
    (its Operator takes no ``time_first``/``time_last``) checkpoints too."""
    grid = make_grid(1, 2, n=32)
    m = Function(name='m', grid=grid)
    m.data[:] = 1 + np.linspace(0, 1, 32)
    gradients = []
    for save in (None, 21):
        u = TimeFunction(name='u', grid=grid, space_order=2, save=save)
        ub = TimeFunction(name='ub', grid=grid, space_order=2)
        mb = adjoint_function(m)
        primal = [Eq(u.forward, u + 0.2 * u.dx2 / m)]
        u.data[0, 16] = 1
        ub.data[20 % 2] = 1  # J = sum(u) at the final level
        if save:
            Operator(primal).apply(time_M=19)
            AdjointOperator(primal, {u: ub, m: mb}).apply(time_M=19)
        else:
            AdjointOperator(primal, {u: ub, m: mb}, checkpointing=True,
                            n_checkpoints=4).apply(time_M=19)
        gradients.append(mb.data.copy())
    assert np.abs(gradients[1]).max() > 0
    assert np.allclose(gradients[0], gradients[1], rtol=1e-12, atol=0)
