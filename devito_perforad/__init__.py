"""devito-perforad: exact gather-form adjoints of Devito stencil equations.

The user's input is checked first, before anything is built
(:mod:`~devito_perforad.checks`); :mod:`~devito_perforad.api` holds the entry points.
Then the pipeline, one floor per stage:

1. :mod:`~devito_perforad.ir` analyses accesses (field, time offset, space offsets)
   into statements; :mod:`~devito_perforad.levels` the program's time levels;
2. :mod:`~devito_perforad.differentiate` differentiates locally;
3. :mod:`~devito_perforad.rules` reverses each statement by the rule of its kind
   (offset reversal for stencils, scatter to gather) into contributions;
4. :mod:`~devito_perforad.passes` rewrite contributions, and
   :mod:`~devito_perforad.region` restricts them to valid regions;
5. :mod:`~devito_perforad.derive` sums them per adjoint target,
   :mod:`~devito_perforad.schedule` orders the updates, and
   :mod:`~devito_perforad.emit` writes them as Devito equations (gather form, or the
   textbook scatter form for comparison).

The tangent (forward) mode uses the rules' sibling table;
:mod:`~devito_perforad.checkpoint` runs gradients in bounded memory (Revolve
checkpointing); :mod:`~devito_perforad.devito_compat` holds the workarounds for Devito.
"""

from .api import AdjointOperator, TangentOperator, adjoint, tangent
from .checkpoint import CheckpointedAdjoint
from .devito_compat import record_operator_inputs
from .errors import AdjointError, InternalError
from .fields import adjoint_function, adjoint_functions

__all__ = ['adjoint', 'AdjointOperator', 'CheckpointedAdjoint', 'tangent',
           'TangentOperator', 'adjoint_function', 'adjoint_functions', 'AdjointError',
           'InternalError']

__version__ = '0.1.0'

# From here on every devito.Operator keeps a reference to what it was built from, so
# that it can be passed where its equations can (devito_compat.record_operator_inputs).
record_operator_inputs()
