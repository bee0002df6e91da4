"""Compilers between MPC protocols and ANNA-transformers, resource reports and executable claims.

Imports :mod:`mpc_sim` and :mod:`anna`; neither of them imports this package.
"""
from _anna_mpc_numba_cache import configure_numba_cache as _configure_numba_cache

_configure_numba_cache()   # first: numba reads its cache directory as kernel modules import

__all__: list[str] = []
