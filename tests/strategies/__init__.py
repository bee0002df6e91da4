"""Shared hypothesis strategies: random MPC protocols/message patterns and random attention inputs.

One helper package for the whole suite (DESIGN.md): ``tests.strategies.mpc`` for the simulator,
``tests.strategies.attention`` for the ANNA kernels and references.
"""
