"""Where a simulation runs: the engine's shared checks and accounting, and the Dask backend.

* :mod:`~mpc_sim.backends.base`: the backend-neutral parts of a round (limit checks, message
  checks, the per-machine style, the accounting), used by the local engine and by block tasks;
* :mod:`~mpc_sim.backends.blocks`: one round of one block of machines, as pure functions of
  arrays (what a Dask task runs), and the all-to-all split of messages by destination block;
* :mod:`~mpc_sim.backends.checkpoint`: the state after a round as ``.npz`` files plus a JSON
  manifest, written atomically, and read back to resume;
* :mod:`~mpc_sim.backends.dask`: the driver (``Simulator(..., backend="dask")``), fault
  tolerance and the connection to a scheduler. It imports ``distributed`` only when used (the
  optional extra ``anna-mpc[dask]``).
"""
from .base import BackendError, CheckpointError

__all__ = ["BackendError", "CheckpointError"]
