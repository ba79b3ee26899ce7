"""Derived solvers for Devito's ``examples.seismic``: exact adjoints, Born pairs and
gradients with respect to any model parameter, from the solver a script already has.

:func:`derived_solver` wraps a solver (``AcousticWaveSolver``,
``AnisotropicWaveSolver`` with the centred or the staggered kernel,
``ViscoacousticWaveSolver`` at time orders 1 and 2, ``SaIsoAcousticWaveSolver``,
``ElasticWaveSolver``, ``ViscoelasticWaveSolver``).
Everything it derives comes from the solver's own forward Operator,
``solver.op_fwd(save=...)``, through the public API
(:func:`~devito_perforad.AdjointOperator`, :func:`~devito_perforad.TangentOperator`,
:class:`~devito_perforad.CheckpointedAdjoint`): no stencil is written here. The
derived Operators are built once per solver and reused for every shot.

The methods have the wrapped solver's names, arguments and return values:
``forward``, ``adjoint``, ``jacobian`` (Born modelling) and ``jacobian_adjoint``; and
one of their own, ``gradient``, for any parameters. Devito's elastic and viscoelastic
solvers have no adjoint: theirs is derived all the same, with the data of each
receiver set (``rec1``, ``rec2``) as its arguments. They have no Born modelling
either: their ``jacobian`` takes perturbations by parameter name, and their
``jacobian_adjoint`` the arguments of ``gradient``.
"""

import inspect
from dataclasses import dataclass

import numpy as np
import sympy
from devito import Function, TimeFunction
from devito.operations.interpolators import Injection, Interpolation
from devito.tools import as_tuple, flatten

from .api import AdjointOperator, TangentOperator
from .checkpoint import CheckpointedAdjoint
from .devito_compat import arguments_of_apply, operator_inputs
from .errors import AdjointError
from .fields import adjoint_function

__all__ = ['derived_solver', 'DerivedSolver']


@dataclass(frozen=True)
class Convention:
    """What a Devito solver's methods return, and what its Born perturbation is.

    Attributes
    ----------
    returns : tuple of str
        The wavefields ``forward`` returns after the receivers, by name (a name the
        forward model does not write stands for a ``None`` there, like the
        visco-acoustic ``v`` at time order 2). ``adjoint`` returns their adjoints in
        the same places, ``jacobian`` the primal and then the perturbed wavefields.
    born : {'m', 'vp'}
        The parameter ``jacobian``'s ``dmin`` perturbs and ``jacobian_adjoint``'s
        gradient is taken with respect to: the squared slowness ``m = 1/vp**2`` or
        the velocity.
    """

    returns: tuple
    born: str


CONVENTIONS = {
    'AcousticWaveSolver': Convention(('u',), 'm'),
    'AnisotropicWaveSolver': Convention(('u', 'v'), 'm'),
    'ViscoacousticWaveSolver': Convention(('p', 'v'), 'm'),
    'SaIsoAcousticWaveSolver': Convention(('u',), 'vp'),
    # vector and tensor wavefields by their name (`v` for `v_x`, `v_y`, ...)
    'ElasticWaveSolver': Convention(('v', 'tau'), None),
    'ViscoelasticWaveSolver': Convention(('v', 't'), None),
}


def derived_solver(solver):
    """Exact adjoints, Born pairs and gradients of a Devito ``examples.seismic``
    solver, derived from its forward Operator.

    Parameters
    ----------
    solver : examples.seismic solver
        E.g. ``AcousticWaveSolver(model, geometry, space_order=8)``, built after
        ``devito_perforad`` was imported.

    Returns
    -------
    DerivedSolver

    Raises
    ------
    AdjointError
        If the solver's forward model has a form that cannot be differentiated.

    Examples
    --------
    >>> import numpy as np
    >>> from examples.seismic import demo_model, setup_geometry
    >>> from examples.seismic.acoustic import AcousticWaveSolver
    >>> from devito_perforad.seismic import derived_solver
    >>> model = demo_model('layers-isotropic', shape=(31, 31), spacing=(10., 10.),
    ...                    nbl=6, space_order=4, dtype=np.float64)
    >>> solver = AcousticWaveSolver(model, setup_geometry(model, 150.), space_order=4)
    >>> ds = derived_solver(solver)
    >>> rec, u, _ = ds.forward(save=True)
    >>> grads = ds.gradient(rec, u, params=('vp',))   # of <F(vp), rec>
    >>> grads['vp'].shape == model.vp.shape
    True
    """
    return DerivedSolver(solver)


class DerivedSolver:
    """A Devito seismic solver with derived ``adjoint``, ``jacobian``,
    ``jacobian_adjoint`` and ``gradient`` (made by :func:`derived_solver`).

    Each derived Operator is built the first time it is needed and reused: one
    solver serves every shot.

    Parameters
    ----------
    solver : examples.seismic solver
        The solver wrapped; ``forward`` is its own.

    Raises
    ------
    AdjointError
        As :func:`derived_solver`.

    Examples
    --------
    Code written against Devito's solver runs against the derived one: here the
    Born pair ``<J dm, d> = <dm, J^T d>``, in the solver's own parameter ``m``.

    >>> import numpy as np
    >>> from devito import Function
    >>> from examples.seismic import demo_model, setup_geometry
    >>> from examples.seismic.acoustic import AcousticWaveSolver
    >>> model = demo_model('layers-isotropic', shape=(31, 31), spacing=(10., 10.),
    ...                    nbl=6, space_order=4, dtype=np.float64)
    >>> solver = derived_solver(AcousticWaveSolver(model, setup_geometry(model, 150.),
    ...                                            space_order=4))
    >>> dm = Function(name='dm', grid=model.grid)
    >>> dm.data[:] = np.random.default_rng(0).standard_normal(dm.shape)
    >>> d_born = solver.jacobian(dm)[0].data.copy()
    >>> rec, u, _ = solver.forward(save=True)
    >>> grad, _ = solver.jacobian_adjoint(rec, u)
    >>> bool(abs(np.vdot(d_born, rec.data) - np.vdot(dm.data, grad.data))
    ...      < 1e-11 * abs(np.vdot(d_born, rec.data)))
    True
    """

    def __init__(self, solver):
        self.solver = solver
        self.model, self.geometry = solver.model, solver.geometry
        self.convention = CONVENTIONS.get(type(solver).__name__)
        self._ops, self._analysed = {}, {}
        # the wavefields and source of the last forward run with save=True
        self._saved, self._saved_src = {}, None
        fields = self._fields(False)
        if self.convention is None:
            names = [f.name for f in fields['wavefields']]
            self.convention = Convention(tuple(names), 'vp')

    # -- the forward model ------------------------------------------------------------

    def _fields(self, save):
        """The forward Operator's fields: wavefields and receivers it writes, the
        sources it injects, the model parameters it reads."""
        if save not in self._analysed:
            self._analysed[save] = self._analyse(save)
        return self._analysed[save]

    def _analyse(self, save):
        expressions, _ = operator_inputs(self.solver.op_fwd(save))
        wavefields, receivers, sources, read = {}, {}, {}, set()
        for e in flatten(as_tuple(expressions)):
            if isinstance(e, Injection):
                sources[e.interpolator.sfunction.name] = e.interpolator.sfunction
                for f in _components(e.field):
                    wavefields.setdefault(f.function.name, f.function)
                read |= _functions(e.expr)
            elif isinstance(e, Interpolation):
                receivers[e.interpolator.sfunction.name] = e.interpolator.sfunction
                read |= _functions(e.expr)
            else:
                for f in _components(e.lhs):
                    wavefields.setdefault(f.function.name, f.function)
                read |= _functions(e.rhs)
        parameters = {n: getattr(self.model, n) for n in self.model.physical_parameters
                      if getattr(self.model, n, None) in read}
        return dict(wavefields=list(wavefields.values()),
                    receivers=list(receivers.values()), sources=list(sources.values()),
                    parameters=parameters)

    def _bind(self, method, args, kwargs):
        """The arguments of the wrapped solver's ``method``, as it would take them:
        its required ones in order; the overrides (``model``, ``dt``, model
        parameters such as ``vp=``); and the others by name."""
        signature = inspect.signature(getattr(self.solver, method))
        arguments = dict(signature.bind(*args, **kwargs).arguments)
        overrides = {}
        for name, q in signature.parameters.items():
            if q.kind is q.VAR_KEYWORD:
                overrides.update(arguments.pop(name, {}))
        required = [arguments.pop(n) for n, q in signature.parameters.items()
                    if q.default is q.empty and q.kind is q.POSITIONAL_OR_KEYWORD
                    and n in arguments]
        for name in list(arguments):
            if name in ('model', 'dt') or name in self.model.physical_parameters:
                overrides[name] = arguments.pop(name)
        return required, {k: v for k, v in overrides.items() if v is not None}, arguments

    def _run(self, op, save, overrides, **fields):
        """``op.apply`` over the primal's range, with the solver's ``dt`` and the
        model's parameters (``model=`` and ``vp=...`` overrides as Devito's solvers
        take them), and the fields given by name."""
        overrides = dict(overrides)
        model = overrides.pop('model', None) or self.model
        dt = overrides.pop('dt', self.solver.dt)
        args = dict(dt=dt, **model.physical_params(**overrides))
        primal = self.solver.op_fwd(save)
        known = {p.name for p in primal.parameters}
        ranged = primal.arguments(**{k: v for k, v in {**args, **fields}.items()
                                     if k in known})
        args.update(time_m=ranged['time_m'], time_M=ranged['time_M'])
        names = {p.name for p in op.parameters}
        return op.apply(**{k: v for k, v in {**args, **fields}.items() if k in names})

    def forward(self, *args, **kwargs):
        """The wrapped solver's ``forward``.

        With ``save=True``, the wavefields it saves are kept (the memory variable of
        the visco-acoustic model too, which Devito's solver does not return), so
        that :meth:`gradient` and :meth:`jacobian_adjoint` can use them.

        Parameters
        ----------
        *args, **kwargs
            As the wrapped solver's ``forward`` takes them (``src=``, ``save=``,
            ``vp=``, ...).

        Returns
        -------
        tuple
            What the wrapped solver's ``forward`` returns (receivers, wavefields,
            summary).
        """
        save = kwargs.get('save')
        if not save:
            return self.solver.forward(*args, **kwargs)
        # the Operator the solver runs: op_fwd is memoised by its arguments as given
        with arguments_of_apply(self.solver.op_fwd(save)) as ran:
            result = self.solver.forward(*args, **kwargs)
        fields = self._fields(True)
        self._saved = {f.name: ran[f.name] for f in fields['wavefields']
                       if f.name in ran}
        self._saved_src = next((ran[s.name] for s in fields['sources']
                                if s.name in ran), None)
        return result

    # -- gradients ----------------------------------------------------------------------

    def gradient(self, residual, u=None, params=('vp',), checkpointing=False, **kwargs):
        """The gradient of ``<F(m), residual>`` with respect to each of ``params``.

        Parameters
        ----------
        residual : SparseTimeFunction or tuple of them
            Receiver data (for a least-squares misfit, the data residual), one set per
            receiver set the forward model records, in the order ``forward`` returns
            them.
        u : TimeFunction, tuple of them, or None
            The saved wavefield(s) as :meth:`forward` returned them (``save=True``);
            ``None`` to run the forward here.
        params : tuple of str
            Model parameters: ``vp``, ``b``, ``qp``, ``epsilon``, ``delta``,
            ``theta``, ``phi``, as the forward model reads them. An elastic or
            viscoelastic model holds the Lamé parameters ``lam``, ``mu`` and the
            buoyancy ``b``: ``vp``, ``vs`` and ``b`` there are the velocities'
            parametrisation (``lam = (vp**2 - 2 vs**2)/b``, ``mu = vs**2/b``), ``b``
            at fixed velocities; with ``lam`` or ``mu`` asked for, ``b`` is at fixed
            Lamé parameters.
        checkpointing : bool, optional
            Run the forward here, in bounded memory (Revolve checkpointing).
        **kwargs
            ``src`` (default: the one of the last ``forward`` with ``save=True``, or
            the geometry's), ``dt``, ``model`` and parameter overrides (``vp=...``), as
            the solver's methods take them.

        Returns
        -------
        dict
            Parameter name -> gradient, a Function on the model's grid.

        Raises
        ------
        AdjointError
            For a parameter the forward model does not read, or wavefields that are
            not all the forward model saves.
        """
        saved = u is not None and not checkpointing
        fields = self._fields(saved)
        asked = tuple(dict.fromkeys(as_tuple(params)))
        params, velocities = _program_parameters(fields['parameters'], asked)
        values = (kwargs.get('model') or self.model).physical_params(
            **{k: v for k, v in kwargs.items() if k != 'model'})
        state = self._saved_state(u, fields) if saved else {}
        key = ('gradient', params, saved)
        if key not in self._ops:
            self._ops[key] = self._gradient_operator(fields, params, saved)
        op, adjoints = self._ops[key]
        for fb in adjoints.values():
            fb.data[:] = 0
        # one receiver set's data (an array, a SparseTimeFunction), or a tuple of them
        residuals = (residual,) if isinstance(residual, np.ndarray) or hasattr(
            residual, 'data') else tuple(residual)
        for rec, data in zip(fields['receivers'], residuals, strict=True):
            adjoints[rec].data[:] = getattr(data, 'data', data)
        src = kwargs.pop('src', None) or (
            self._saved_src if saved and state is self._saved else None) \
            or self.geometry.src
        sources = {s.name: src for s in fields['sources']}
        if saved:
            self.summary = self._run(op, True, kwargs, **sources, **state)
        else:  # the checkpointed run finds the primal's range itself
            model = kwargs.pop('model', None) or self.model
            self.summary = op.apply(dt=kwargs.pop('dt', self.solver.dt),
                                    **model.physical_params(**kwargs), **sources)
        grads = {p: adjoints[fields['parameters'][p]].data for p in params}
        if velocities:
            grads = _by_velocities(grads, {p: getattr(values[p], 'data', values[p])
                                           for p in params})
        out = {}
        for p in asked:
            out[p] = Function(name=f'grad_{p}', grid=self.model.grid,
                              dtype=self.model.dtype)
            out[p].data[:] = grads[p]
        return out

    def _saved_state(self, u, fields):
        """Every wavefield the forward model saves, by name: those of the last
        :meth:`forward` that returned ``u``, or ``u`` itself where it is all of them."""
        given = {c.name: c for f in as_tuple(u) if f is not None
                 for c in _components(f)}
        if any(self._saved.get(n) is f for n, f in given.items()):
            return self._saved
        names = {f.name for f in fields['wavefields']}
        if names <= set(given):
            return {n: given[n] for n in names}
        raise AdjointError(
            "The wavefields given are not all the forward model saves "
            f"({', '.join(sorted(names))}): pass those the derived solver's forward "
            "(save=True) returned, or u=None to run the forward here.")

    def _gradient_operator(self, fields, params, saved):
        adjoints = _new(fields, '_b')
        adjoints.update({fields['parameters'][p]: adjoint_function(
            fields['parameters'][p]) for p in params})
        primal = self.solver.op_fwd(saved)
        if saved:
            return AdjointOperator(primal, adjoints), adjoints
        return CheckpointedAdjoint(primal, adjoints), adjoints

    def jacobian_adjoint(self, *args, **kwargs):
        """The wrapped solver's ``jacobian_adjoint``, with its arguments (the
        receiver data, then the saved wavefields; ``grad=`` to fill, ``model=``,
        parameter overrides, ``checkpointing=``): the gradient with respect to the
        parameter its ``jacobian`` perturbs (``m = 1/vp**2`` or ``vp``), derived.
        A solver without one (Devito's elastic and viscoelastic) gets one with
        :meth:`gradient`'s arguments: ``jacobian_adjoint((res1, res2), (v, tau),
        params=('vp', 'vs'))``, returning the gradients by name and the summary.

        Parameters
        ----------
        *args, **kwargs
            As the wrapped solver's ``jacobian_adjoint`` takes them. Work buffers it
            takes (adjoint wavefields) are not needed, and not used.

        Returns
        -------
        (Function, summary)
            The gradient, and the run's summary (a dict of gradients for a solver
            without its own).
        """
        if self.convention.born is None:
            return self._jacobian_adjoint_by_parameters(*args, **kwargs)
        (rec, *saved), overrides, named = self._bind('jacobian_adjoint', args, kwargs)
        if named.get('src') is not None:
            overrides['src'] = named['src']
        g = self.gradient(rec, tuple(saved) or None, params=('vp',),
                          checkpointing=named.get('checkpointing', False),
                          **overrides)['vp']
        if self.convention.born == 'm':  # dJ/dm = dJ/dvp * dvp/dm, vp = m**-1/2
            g.data[:] *= -0.5 * (overrides.get('model') or self.model).vp.data ** 3
        out = named.get('grad') or named.get('dm')
        if out is not None:
            out.data[:] = g.data
            g = out
        return g, self.summary

    def _jacobian_adjoint_by_parameters(self, residual, u=None, params=('vp',),
                                        checkpointing=False, **kwargs):
        """``jacobian_adjoint`` of a solver that has none (Devito's elastic and
        viscoelastic): the gradients by ``params``, as :meth:`gradient`, and the
        run's summary."""
        grads = self.gradient(residual, u, params=params, checkpointing=checkpointing,
                              **kwargs)
        return grads, self.summary

    def _jacobian_by_parameters(self, dmin, src=None, **overrides):
        """``jacobian`` of a solver that has none (Devito's elastic and
        viscoelastic): Born modelling of the perturbations ``dmin``, a map from
        parameter names (as :meth:`gradient` takes them) to arrays or Functions."""
        fields = self._fields(False)
        dmin = {p: getattr(v, 'data', v) for p, v in dict(dmin).items()}
        params, velocities = _program_parameters(fields['parameters'], tuple(dmin))
        key = ('jacobian', params)
        if key not in self._ops:
            tangents = _new(fields, '_d')
            tangents.update({fields['parameters'][p]: adjoint_function(
                fields['parameters'][p], f'd{p}') for p in params})
            self._ops[key] = (TangentOperator(self.solver.op_fwd(False), tangents),
                              tangents)
        op, tangents = self._ops[key]
        for fd in tangents.values():
            fd.data[:] = 0
        model = overrides.get('model') or self.model
        values = model.physical_params(**{k: v for k, v in overrides.items()
                                          if k != 'model'})
        if velocities:
            dmin = _perturbed_by_velocities(dmin, {p: getattr(values[p], 'data',
                                                              values[p])
                                                   for p in ('lam', 'mu', 'b')})
        for p in params:
            tangents[fields['parameters'][p]].data[:] = dmin.get(p, 0)
        primals = {f.name: _like(f, f.name, save=None) for f in fields['wavefields']}
        summary = self._run(op, False, overrides, **{s.name: src or self.geometry.src
                                                     for s in fields['sources']},
                            **primals)
        recs = []
        for r in fields['receivers']:
            rec = self.geometry.new_rec(name=r.name)
            rec.data[:] = tangents[r].data
            recs.append(rec)
        return (*recs, *self._returned(fields, primals),
                *self._returned(fields, {f.name: tangents[f]
                                         for f in fields['wavefields']}), summary)

    def _returned(self, fields, by_name):
        """The fields of ``by_name`` (keyed by the primal's names) in the places
        ``forward`` returns the wavefields: a field, a vector's or tensor's
        components as a tuple, or ``None``."""
        out = []
        for n in self.convention.returns:
            if n in by_name:
                out.append(by_name[n])
            else:  # a vector's or tensor's components (`v_x`, `v_y`), or none
                group = tuple(by_name[f.name] for f in fields['wavefields']
                              if f.name.startswith(f'{n}_'))
                out.append(group or None)
        return out

    # -- Born modelling and the adjoint --------------------------------------------------

    def jacobian(self, *args, **kwargs):
        """The wrapped solver's ``jacobian`` (Born modelling), with its arguments
        (the perturbation ``dmin`` of ``m`` or ``vp``, as the solver's own; ``src=``,
        ``rec=``, ``model=``, parameter overrides), derived: the tangent of the
        forward model.

        A solver without one (Devito's elastic and viscoelastic) gets one: the
        perturbations as a map from parameter names (those :meth:`gradient` takes)
        to arrays or Functions, ``jacobian({'vp': dvp, 'vs': dvs})``; then
        ``src=``, ``model=`` and parameter overrides.

        Parameters
        ----------
        *args, **kwargs
            As the wrapped solver's ``jacobian`` takes them. Work buffers it takes
            (wavefields) are not used: the ones returned are new.

        Returns
        -------
        tuple
            The Born data (one set per receiver set), the primal wavefields, the
            perturbed wavefields, and the run's summary, as the solver's own.
        """
        if self.convention.born is None:
            return self._jacobian_by_parameters(*args, **kwargs)
        (dmin,), overrides, named = self._bind('jacobian', args, kwargs)
        fields = self._fields(False)
        if 'jacobian' not in self._ops:
            tangents = _new(fields, '_d')
            tangents[self.model.vp] = adjoint_function(self.model.vp, 'dvp')
            self._ops['jacobian'] = (TangentOperator(self.solver.op_fwd(False),
                                                     tangents), tangents)
        op, tangents = self._ops['jacobian']
        for fd in tangents.values():
            fd.data[:] = 0
        dvp = tangents[self.model.vp]
        dvp.data[:] = getattr(dmin, 'data', dmin)
        if self.convention.born == 'm':  # dvp = dvp/dm * dm
            dvp.data[:] *= -0.5 * (overrides.get('model') or self.model).vp.data ** 3
        src = named.get('src') or self.geometry.src
        primals = {f.name: _like(f, f.name, save=None) for f in fields['wavefields']}
        summary = self._run(op, False, overrides,
                            **{s.name: src for s in fields['sources']}, **primals)
        rec = named.get('rec') or self.geometry.rec
        (r,) = fields['receivers']
        rec.data[:] = tangents[r].data
        perturbed = {f.name: tangents[f] for f in fields['wavefields']}
        names = [n for n in self.convention.returns if n in primals]
        return (rec, *(primals[n] for n in names), *(perturbed[n] for n in names),
                summary)

    def adjoint(self, *args, **kwargs):
        """The wrapped solver's ``adjoint``, with its arguments (the receiver data;
        ``srca=`` to fill, ``model=``, parameter overrides), derived: the exact
        transpose of its forward model from the sources to the receivers. A solver
        without one (Devito's elastic and viscoelastic) gets one: the receiver data
        of each set ``forward`` returns, in its order, then ``srca=``, ``model=``
        and parameter overrides.

        Parameters
        ----------
        *args, **kwargs
            As the wrapped solver's ``adjoint`` takes them. Work buffers it takes
            (adjoint wavefields) are not used: the ones returned are new.

        Returns
        -------
        tuple
            The adjoint source, the adjoint wavefields in the places ``forward``
            returns the wavefields (``None`` where it returns ``None``; a vector's or
            tensor's as the tuple of its components), and the run's summary.
        """
        fields = self._fields(False)
        if hasattr(self.solver, 'adjoint'):
            recs, overrides, named = self._bind('adjoint', args, kwargs)
        else:
            recs, named = args, {'srca': kwargs.pop('srca', None)}
            overrides = {k: v for k, v in kwargs.items() if v is not None}
        if len(recs) != len(fields['receivers']):
            raise TypeError(f"adjoint takes the data of {len(fields['receivers'])} "
                            f"receiver sets, {len(recs)} given.")
        if 'adjoint' not in self._ops:
            adjoints = _new(fields, '_a', sources=True)
            self._ops['adjoint'] = (AdjointOperator(self.solver.op_fwd(False),
                                                    adjoints), adjoints)
        op, adjoints = self._ops['adjoint']
        for fb in adjoints.values():
            fb.data[:] = 0
        for r, data in zip(fields['receivers'], recs, strict=True):
            adjoints[r].data[:] = getattr(data, 'data', data)
        summary = self._run(op, False, overrides)
        srca = named.get('srca') or self.geometry.new_src(name='srca', src_type=None)
        (s,) = fields['sources']
        srca.data[:] = adjoints[s].data
        returned = self._returned(fields, {f.name: adjoints[f]
                                           for f in fields['wavefields']})
        return (srca, *returned, summary)


def _program_parameters(parameters, asked):
    """The parameters the forward model reads that the gradients or perturbations
    by ``asked`` go through (``lam``, ``mu``, ``b`` for ``vp``, ``vs``), and whether
    ``asked`` are by the velocities (:func:`_velocities`)."""
    velocities = _velocities(parameters, asked)
    has = list(parameters) + (['vp', 'vs'] if velocities is not None else [])
    unknown = [p for p in asked if p not in has]
    if unknown:
        has = ', '.join(f'`{p}`' for p in has)
        raise AdjointError(f"{', '.join(f'`{p}`' for p in unknown)}: not a parameter "
                           f"of this forward model; it has {has}.")
    if not velocities:
        return asked, velocities
    return tuple(dict.fromkeys([p for p in ('lam', 'mu', 'b') if p in parameters]
                               + [p for p in asked if p not in ('vp', 'vs', 'b')])), \
        velocities


def _velocities(parameters, asked):
    """``None`` for a model without Lamé parameters; for one with them, whether the
    gradients ``asked`` for are by the velocities ``vp``, ``vs`` (and ``b`` at fixed
    velocities) rather than by ``lam``, ``mu`` (and ``b`` at fixed Lamé
    parameters)."""
    if not {'lam', 'mu'} <= set(parameters):
        return None
    lame = [p for p in asked if p in ('lam', 'mu')]
    speeds = [p for p in asked if p in ('vp', 'vs')]
    if lame and speeds:
        raise AdjointError(f"{', '.join(f'`{p}`' for p in lame + speeds)}: ask for the "
                           "gradients by the velocities (vp, vs, b) or by the Lamé "
                           "parameters (lam, mu, b), not both.")
    return not lame


def _by_velocities(g, m):
    """Gradients by ``lam``, ``mu``, ``b`` as gradients by ``vp``, ``vs``, ``b`` (at
    fixed velocities), with ``lam = (vp**2 - 2 vs**2) b**-1``, ``mu = vs**2 b**-1``
    (Devito's elastic models), at the parameters ``m``."""
    lam, mu, b = m['lam'], m['mu'], m['b']
    vp, vs = np.sqrt(b * (lam + 2 * mu)), np.sqrt(b * mu)
    return {**g, 'vp': 2 * vp / b * g['lam'],
            'vs': 2 * vs / b * (g['mu'] - 2 * g['lam']),
            'b': g['b'] - (g['lam'] * lam + g['mu'] * mu) / b}


def _perturbed_by_velocities(d, m):
    """Perturbations of ``vp``, ``vs``, ``b`` (at fixed velocities) as perturbations
    of ``lam``, ``mu``, ``b`` at the parameters ``m`` (:func:`_by_velocities`'s
    transpose)."""
    lam, mu, b = m['lam'], m['mu'], m['b']
    vp, vs = np.sqrt(b * (lam + 2 * mu)), np.sqrt(b * mu)
    dvp, dvs, db = (d.get(p, 0) for p in ('vp', 'vs', 'b'))
    return {**{p: v for p, v in d.items() if p not in ('vp', 'vs')},
            'lam': (2 * vp * dvp - 4 * vs * dvs - lam * db) / b,
            'mu': (2 * vs * dvs - mu * db) / b, 'b': db}


def _components(expr):
    """The scalar fields of a field, or of a vector's or tensor's (``v.forward``,
    ``tau.forward.diagonal()``)."""
    if isinstance(expr, sympy.MatrixBase):
        return list(expr.values()) if hasattr(expr, 'values') else list(expr)
    return list(as_tuple(expr))


def _functions(expr):
    """The fields ``expr`` reads (a vector's or tensor's components)."""
    exprs = expr if isinstance(expr, sympy.MatrixBase) else [expr]
    return {a.function for e in exprs for a in sympy.sympify(e).atoms(Function)}


def _new(fields, suffix, sources=False):
    """A new zero field for each wavefield (buffered) and receiver set (and source)
    of a forward model, named with ``suffix``."""
    out = {f: _like(f, f'{f.name}{suffix}', save=None) for f in fields['wavefields']}
    sparse = fields['receivers'] + (fields['sources'] if sources else [])
    out.update({r: adjoint_function(r, f'{r.name}{suffix}') for r in sparse})
    return out


def _like(f, name, save):
    """A zero TimeFunction like ``f``, named ``name``, saved over ``save`` steps or
    buffered (``None``)."""
    return TimeFunction(name=name, grid=f.grid, time_order=f.time_order,
                        space_order=f.space_order, staggered=f.staggered, dtype=f.dtype,
                        save=save)
