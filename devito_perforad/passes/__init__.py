"""Passes: each optimisation of the adjoint, one module each.

* :mod:`.composition`: reverse a nested derivative as the reversed composition of
  its transposes;
* :mod:`.through_write`: a parameter's partial through the saved value a statement
  wrote (the hand-written gradient's ``u * v.dt2``);
* :mod:`.scaling`: carry an adjoint scaled by the statement's pointwise factor;
* :mod:`.cancellation`: cancel a parameter's gradient term as a rational function;
* :mod:`.time_shift`: move a gradient term's time offsets from the saved field onto
  the adjoint;
* :mod:`.factoring`: compute a product read at many offsets once, into a temporary;
* :mod:`.core_shell`: run an update bare on the core and guarded on thin shells.

Each takes contributions (or the partials the rules receive) and returns new ones;
none changes what it is given.
"""
