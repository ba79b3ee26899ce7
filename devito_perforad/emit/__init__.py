"""Emitters: how an adjoint update becomes Devito equations.

:mod:`.gather` (the default) gathers every contribution into the adjoint point, so
every update writes only its own point; :mod:`.scatter` scatters from the primal
point, textbook reverse mode, for comparison. :mod:`.sparse` emits the sparse rules'
injections and interpolations.
"""
