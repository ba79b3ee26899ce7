"""Checkpointed adjoints: gradients in bounded memory, through pyrevolve.

A saved forward wavefield costs ``nt`` copies of the grid. With checkpointing the
primal keeps its buffered fields, Revolve stores a few snapshots of them, and the
adjoint runs one counter at a time, from the top down: before the adjoint counter
``t``, the primal is recomputed from the nearest snapshot up to and including its step
``t``, so the buffer holds exactly the levels the adjoint of that step reads. The
adjoint operator knows the whole run's range (``time_first``, ``time_last``, see
:func:`devito_perforad.region.run_range`), so applying it counter by counter computes
exactly what one application over the whole range computes.

Revolve counts steps from 0; Devito counts the primal's counters from ``time_m``. A
snapshot taken before Revolve step ``i`` holds, for each buffered field, every slot
but the one the primal step at counter ``time_m + i`` is about to overwrite.
"""

import numpy as np
from devito import CheckpointOperator, Operator, TimeFunction

from .checks import (
    check_checkpointed,
    check_inputs,
    check_operator_kwargs,
    check_options,
    check_primal,
)
from .derive import derive
from .devito_compat import as_devito_runs, build
from .fields import buffer_size, is_saved
from .levels import written_levels

__all__ = ['CheckpointedAdjoint']


class CheckpointedAdjoint:
    """Primal and adjoint of ``expressions``, run together with Revolve checkpointing.

    The primal's TimeFunctions stay buffered (no ``save``); the adjoint's results are
    the same as :func:`devito_perforad.AdjointOperator` with a saved primal.

    Parameters
    ----------
    expressions : Eq, Inc, sparse operations, lists of them, or devito.Operator
        The primal, with buffered TimeFunctions; or its Operator (see
        :func:`devito_perforad.adjoint`), which is then the forward run.
    adjoints : dict
        As for :func:`devito_perforad.adjoint`.
    n_checkpoints : int, optional
        Snapshots kept in memory; default: what Revolve's ``adjust`` picks for the
        number of steps (about its logarithm).
    **kwargs
        Passed to both ``devito.Operator`` s (``subs``, ``opt``, ...).

    Raises
    ------
    TypeError, AdjointError
        As :func:`devito_perforad.AdjointOperator`; an ``AdjointError`` also if the
        primal steps no buffered TimeFunction, or its TimeFunctions differ in dtype.

    Examples
    --------
    In a seismic FWI, ``CheckpointedAdjoint(forward, {u: ub, rec: recb, model.vp:
    vpb}, subs=model.spacing_map).apply(dt=dt)`` runs the primal (filling ``rec``),
    then leaves the gradient in ``vpb``. Here a 1D diffusion with a buffered ``u``
    (``tests/test_checkpoint.py`` checks this gradient against a saved wavefield's):

    >>> import numpy as np
    >>> from devito import Eq, Function, Grid, TimeFunction
    >>> from devito_perforad import CheckpointedAdjoint, adjoint_function
    >>> grid = Grid(shape=(32,), extent=(31.,), dtype=np.float64)
    >>> m = Function(name='m', grid=grid)
    >>> m.data[:] = 1 + np.linspace(0, 1, 32)
    >>> u = TimeFunction(name='u', grid=grid, space_order=2)      # buffered
    >>> ub, mb = TimeFunction(name='ub', grid=grid, space_order=2), adjoint_function(m)
    >>> gradient = CheckpointedAdjoint([Eq(u.forward, u + 0.2 * u.dx2 / m)],
    ...                                {u: ub, m: mb}, n_checkpoints=4)
    >>> u.data[0, 16] = 1      # the initial state
    >>> ub.data[20 % 2] = 1    # J = sum(u) at the final level, 20: its seed
    >>> gradient.apply(time_M=19)  # doctest: +SKIP

    (Skipped as a doctest only: pyrevolve writes to the process's own stdout.)
    """

    def __init__(self, expressions, adjoints, n_checkpoints=None, **kwargs):
        check_options(checkpointing=True, n_checkpoints=n_checkpoints)
        kwargs = check_operator_kwargs(kwargs, 'CheckpointedAdjoint')
        primal = expressions if isinstance(expressions, Operator) else None
        expressions, _, kwargs = check_primal(expressions, kwargs.get('subs'), kwargs)
        program, active = check_inputs(expressions, adjoints, kwargs.get('subs'))
        check_checkpointed(program)
        self.states = _states(program)
        self.n_checkpoints = n_checkpoints
        # a primal Operator given is the forward run itself; the adjoint is that of
        # what it runs
        self.forward = primal or Operator(expressions, **kwargs)
        program = as_devito_runs(program, expressions, kwargs.get('subs'))
        eqs = derive(program, active, checkpointed=True)
        self.reverse = build(eqs, **dict(kwargs, name='Adjoint'))

    def apply(self, **kwargs):
        """Run the primal with snapshots, then the adjoint, over the primal's range.

        Parameters
        ----------
        **kwargs
            The primal's ``apply`` arguments (``time_m``, ``time_M``, ``dt``, ...).

        Returns
        -------
        pyrevolve.Revolver
            The Revolve schedule that ran (its ``profiler`` holds the timings).
        """
        from pyrevolve import Revolver  # optional: only checkpointing needs it
        args = self.forward.arguments(**kwargs)
        first, last = args['time_m'], args['time_M']
        kwargs = dict(kwargs, time_m=first, time_M=last)
        forward = CheckpointOperator(self.forward, **kwargs)
        # the run's range, where the adjoint tests a counter against it
        run = {k: v for k, v in dict(time_first=first, time_last=last).items()
               if k in {p.name for p in self.reverse.parameters}}
        # the primal's arguments that the adjoint takes too (a source it does not
        # read is the primal's alone)
        known = {p.name for p in self.reverse.parameters}
        reverse = CheckpointOperator(self.reverse, **run, **{
            k: v for k, v in kwargs.items() if k in known})
        snapshots = _Snapshots(self.states, first)
        revolver = Revolver(snapshots, forward, reverse, self.n_checkpoints,
                            last - first + 1)
        revolver.apply_forward()
        revolver.apply_reverse()
        return revolver


def _states(program):
    """The buffered TimeFunctions the primal writes, with the level each step writes."""
    return {f: level for f, level in written_levels(program).items()
            if isinstance(f, TimeFunction) and not is_saved(f)}


class _Snapshots:
    """The primal's state before a Revolve step: every slot of each buffered field
    except the one that step overwrites.

    It has what pyrevolve's ``Checkpoint`` interface asks for (``dtype``, ``size``,
    ``nbytes``, ``get_data``, ``get_data_location``), without importing pyrevolve, so
    the package imports where pyrevolve is not installed and checkpointing is not used.
    """

    def __init__(self, states, first):
        self.states, self.first = states, first

    @property
    def dtype(self):
        return next(iter(self.states)).dtype

    @property
    def size(self):
        return sum(int(np.prod(f._data.shape[1:])) * f.time_order for f in self.states)

    @property
    def nbytes(self):
        return self.size * np.dtype(self.dtype).itemsize

    def get_data(self, timestep):
        counter = self.first + timestep
        slots = []
        for f, top in self.states.items():
            nb = buffer_size(f)
            written = (counter + top) % nb
            slots += [f._data[k] for k in range(nb) if k != written]
        return slots

    def get_data_location(self, timestep):
        return self.get_data(timestep)
