"""Test-only helpers: the shared table of cases run at every stage (``cases``), small protocols and
error tables for the engine and the backends (``engine``), protocols for the distributed backend
(``backends``) and random protocols for the compiler (``compiled``).

The hypothesis strategies for configs, library inputs, random protocols (schedules) and attention
inputs are public modules of the library: :mod:`mpc_sim.strategies` and :mod:`anna.strategies`.
"""
