"""Compilers between MPC protocols and ANNA-transformers, resource reports and executable claims.

Imports :mod:`mpc_sim` and :mod:`anna`; neither of them imports this package.
"""
__all__: list[str] = []
