"""Shared hypothesis strategies: random MPC protocols/message patterns and random attention inputs.

One helper package for the whole suite (DESIGN.md): ``mpc_sim.strategies`` for the simulator,
``anna.strategies`` for the ANNA kernels and references.
"""
