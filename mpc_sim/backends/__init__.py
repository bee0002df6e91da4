"""Where a simulation runs: the backend interface, its registry, and the local and Dask backends.

* :mod:`~mpc_sim.backends.interface`: what a backend implements (:class:`Backend`, whose
  :class:`BackendRun` hooks run a round's local computation and its routing); the engine
  (:class:`~mpc_sim.simulator.Simulator`) owns the round loop, the checks and the trace;
* :mod:`~mpc_sim.backends.registry`: backends by name (``local``, ``dask``, and any added with
  :func:`register_backend`);
* :mod:`~mpc_sim.backends.base`: the backend-neutral parts of a round (limit checks, message
  checks, the per-machine style, the accounting), used by every backend and by block tasks;
* :mod:`~mpc_sim.backends.local`: the default backend, this process;
* :mod:`~mpc_sim.backends.blocks`: one round of one block of machines, as pure functions of
  arrays (what a Dask task runs), and the all-to-all split of messages by destination block;
* :mod:`~mpc_sim.backends.checkpoint`: the state after a round as ``.npz`` files plus a JSON
  manifest, written atomically, and read back to resume;
* :mod:`~mpc_sim.backends.dask`: the Dask backend (``Simulator(..., backend="dask")``) and its
  :class:`DaskOptions`, fault tolerance and the connection to a scheduler. It imports
  ``distributed`` only when used (the optional extra ``anna-mpc[dask]``).
"""
from .base import BackendError, CheckpointError
from .dask import DaskBackend, DaskOptions
from .interface import Backend, BackendRun, Computed, History, Job, Lost, Routed
from .local import LocalBackend
from .registry import backend_names, make_backend, register_backend, unregister_backend

__all__ = ["BackendError", "CheckpointError", "Backend", "BackendRun", "Job", "History", "Computed", "Routed",
           "Lost", "LocalBackend", "DaskBackend", "DaskOptions", "register_backend", "unregister_backend",
           "backend_names", "make_backend"]
