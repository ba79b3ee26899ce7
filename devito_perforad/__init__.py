"""devito-perforad: exact gather-form adjoints of Devito stencil equations.

The user's input is checked first, before anything is built
(:mod:`~devito_perforad.checks`). Then the pipeline, one module per stage:

1. :mod:`~devito_perforad.access` analyses accesses (field, time offset, space offsets);
2. :mod:`~devito_perforad.differentiate` differentiates locally;
3. :mod:`~devito_perforad.reverse` reverses offsets (scatter to gather);
4. :mod:`~devito_perforad.region` restricts to valid regions;
5. :mod:`~devito_perforad.assemble` assembles the adjoint operator.

:mod:`~devito_perforad.sparse` holds the rule for sparse operators (injection and
interpolation transpose in pairs); :mod:`~devito_perforad.tangent` gives the
forward-mode linearisation (Born modelling); :mod:`~devito_perforad.scatter` the
textbook scatter form, for comparison; :mod:`~devito_perforad.checkpoint` runs
gradients in bounded memory (Revolve checkpointing).
"""

from .assemble import AdjointOperator, adjoint
from .checkpoint import CheckpointedAdjoint
from .errors import AdjointError
from .fields import adjoint_function
from .tangent import TangentOperator, tangent

__all__ = ['adjoint', 'AdjointOperator', 'CheckpointedAdjoint', 'tangent',
           'TangentOperator', 'adjoint_function', 'AdjointError']
__version__ = '0.1.0'
