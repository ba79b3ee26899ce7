"""emit/layout.py and the buffer sizes: an adjoint that touches more time levels in one
step than the primal keeps gets a Devito ``Buffer(n)``, never a request for
``save=nt``; its first slots hold the seeds and results as the primal's buffer."""

import numpy as np
import pytest
from conftest import dot_test, make_grid
from devito import Buffer, Eq, Function, TimeFunction

from devito_perforad import AdjointError, adjoint, adjoint_function, adjoint_functions


def _coupled():
    """``g`` reads ``f`` at its new level and ``f`` reads its own previous level at
    neighbours: ``f``'s adjoint touches four levels in a step, one more than ``f``'s
    buffer holds."""
    grid = make_grid(1, so=4, n=17)
    f = TimeFunction(name='f', grid=grid, space_order=4, time_order=2)
    g = TimeFunction(name='g', grid=grid, space_order=4, time_order=1)
    c = Function(name='c', grid=grid, space_order=4)
    c.data[:] = 1.3
    primal = [Eq(f.forward, 1.5 * f - 0.5 * f.backward - 0.01 * f.backward.dx),
              Eq(g.forward, 0.01 * c * f.forward.dx + g + 0.008 * f.dx)]
    return f, g, primal


def test_adjoint_functions_sizes_the_buffer():
    f, g, primal = _coupled()
    adjoints = adjoint_functions(primal)
    assert adjoints[f].save == Buffer(4) and adjoints[f].data.shape[0] == 4
    assert adjoints[g].save is None          # the default buffer is wide enough
    assert f.save is None                    # the primal keeps its own


def test_too_small_a_buffer_names_its_size():
    f, g, primal = _coupled()
    with pytest.raises(AdjointError, match=r"`f_b` of `f` must hold 4 time levels at "
                                           r"once, but it holds 3: create it with "
                                           r"save=Buffer\(4\)"):
        adjoint(primal, {f: adjoint_function(f), g: adjoint_function(g)})


@pytest.mark.parametrize('time_m', [1, pytest.param(2, marks=pytest.mark.slow)])
def test_a_wider_buffer_is_exact(time_m):
    """Seeds in the primal's layout, noise in the other slots (``dot_test``): exact. The
    moves between the layouts run in loop nests of their own (in one loop with the
    last edge update, which reads a slot at neighbours, a move overwrote it first:
    dot test 2.5e-2 on random program 21)."""
    f, g, primal = _coupled()
    adjoints = adjoint_functions(primal)
    inputs = {f: np.ones(3, dtype=bool), g: np.ones(2, dtype=bool)}
    inputs[f][(time_m + 1) % 3] = inputs[g][(time_m + 1) % 2] = False
    assert dot_test(primal, adjoints, inputs,
                    apply=dict(time_m=time_m, time_M=time_m + 4)) < 1e-13
