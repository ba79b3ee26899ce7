"""Shots on a Dask cluster: each worker builds its modelling object once (its solver
and Operators) and keeps it; each task calls one of its methods.

A shot's misfit and gradient need the model, the Operators and the shot's data. The
Operators are costly to build and never change, so they stay on the workers; the
model and the data travel. Results come back in task order, so that sums over shots
are the same whichever worker ran which shot, and the same as in one process.
"""

import os
import sys
import threading

from distributed import WorkerPlugin

__all__ = ['ShotPool']


class ShotPool:
    """Tasks that call the methods of one object per worker, ``factory(*args)``.

    Parameters
    ----------
    factory : callable
        Builds the per-worker object (e.g. a class whose ``__init__`` builds the
        solver). It may be defined in a script or a notebook: it is sent by value.
    args : tuple
        Its arguments (picklable).
    workers : int, optional
        Processes of a local Dask cluster (``LocalCluster``); ``0`` runs the tasks in
        this process, on one object. Default: one per core.
    scheduler : str, optional
        The address of a running Dask scheduler, instead of a local cluster.
    threads : int, optional
        OpenMP threads of each worker's Operators (``OMP_NUM_THREADS``). Default:
        the cores shared between the local workers; 1 on a running cluster.

    Raises
    ------
    OSError
        If no scheduler answers at ``scheduler``.

    Examples
    --------
    >>> from devito_perforad.shots import ShotPool
    >>> class Square:
    ...     def __init__(self, offset):
    ...         self.offset = offset
    ...     def value(self, x):
    ...         return x * x + self.offset
    >>> pool = ShotPool(Square, (1,), workers=0)
    >>> pool.run('value', [(1,), (2,), (3,)])
    [2, 5, 10]
    >>> pool.close()
    """

    def __init__(self, factory, args=(), workers=None, scheduler=None, threads=None):
        self.client = self.cluster = self.local = None
        if not scheduler and workers == 0:
            self.local = factory(*args)
            self.where = 'this process'
            return
        import logging

        from distributed import Client, LocalCluster
        if scheduler:
            self.client = Client(scheduler)
        else:
            workers = workers or os.cpu_count() or 1
            threads = threads or max(1, (os.cpu_count() or 1) // workers)
            self.cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.ERROR)
            self.client = Client(self.cluster)
        self.client.register_plugin(_Builder(_by_value(factory, args), threads or 1))
        self.where = f"{len(self.client.scheduler_info()['workers'])} Dask worker(s)"

    def run(self, method, tasks, progress=None):
        """``obj.method(*task)`` for each of ``tasks``, on the workers; the results in
        task order.

        Parameters
        ----------
        method : str
        tasks : list of tuple
            Numpy arrays of more than a thousand entries that several tasks share
            (the same object) are sent once to each worker.
        progress : callable, optional
            Called with the number of tasks done, as they finish.

        Returns
        -------
        list
        """
        if self.client is None:
            results = []
            for task in tasks:
                results.append(getattr(self.local, method)(*task))
                if progress:
                    progress(len(results))
            return results
        import numpy as np
        from distributed import as_completed
        shared, futures = {}, []
        for task in tasks:
            task = list(task)
            for i, a in enumerate(task):
                if isinstance(a, np.ndarray) and a.size > 1000:
                    if id(a) not in shared:
                        shared[id(a)] = self.client.scatter(a, broadcast=True,
                                                            hash=False)
                    task[i] = shared[id(a)]
            futures.append(self.client.submit(_call, method, *task, pure=False))
        for done, _ in enumerate(as_completed(futures), 1):
            if progress:
                progress(done)
        return self.client.gather(futures)

    def close(self):
        """Shut the local cluster down (a running one stays).

        Parameters
        ----------
        None

        Returns
        -------
        None
        """
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _by_value(factory, args):
    """``(factory, args)`` pickled with the code of ``factory``'s module, which the
    workers may not be able to import (a script, a notebook, a file loaded by
    path)."""
    import cloudpickle
    module = sys.modules.get(getattr(factory, '__module__', None))
    registered = module is not None and module.__name__ != '__main__' and \
        module.__name__ not in cloudpickle.list_registry_pickle_by_value()
    if registered:
        cloudpickle.register_pickle_by_value(module)
    try:
        return cloudpickle.dumps((factory, args))
    finally:
        if registered:
            cloudpickle.unregister_pickle_by_value(module)


class _Builder(WorkerPlugin):
    """A Dask worker plugin: the worker's object, built when the worker starts (a
    worker that replaces a dead one too). A lock runs one task at a time on it."""

    name = 'devito-perforad-shots'

    def __init__(self, payload, threads):
        self.payload, self.threads = payload, threads

    def setup(self, worker):
        import cloudpickle
        os.environ['OMP_NUM_THREADS'] = str(self.threads)   # OpenMP Operators
        factory, args = cloudpickle.loads(self.payload)
        self.obj, self.lock = factory(*args), threading.Lock()


def _call(method, *args):
    """``obj.method(*args)`` with the object of the worker this runs on."""
    from distributed import get_worker
    builder = get_worker().plugins[_Builder.name]
    with builder.lock:
        return getattr(builder.obj, method)(*args)
