"""The one config search of the library: the smallest constants under which a protocol runs.

:func:`smallest_config` walks ``memory_factor`` over the grid ``1, g, g**2, ...`` (``g`` =
``growth``) and, for each, either walks ``machines_factor`` over the same grid until
``protocol.check_config`` accepts, or (``machines_for``) takes exactly the machines a plan for
that memory addresses. :class:`SearchedDefaultConfig` makes the first the protocol's
``default_config``. Users: the graph protocols of :mod:`mpc_sim.protocols` and the transformer
protocols of :mod:`reductions.decompile`.
"""
from __future__ import annotations

from collections.abc import Callable

from ..config import MPCConfig
from ..errors import ConfigError

__all__ = ["smallest_config", "SearchedDefaultConfig", "FACTOR_GROWTH"]

FACTOR_GROWTH = 1.25
"""The grid of the search: factors ``1, 1.25, 1.25**2, ...``."""


def smallest_config(protocol, n: int, eps: float, *, growth: float = FACTOR_GROWTH, steps: int = 80,
                    machines_for: Callable[[int, int], int] | None = None) -> MPCConfig:
    """The config with the smallest ``memory_factor``, then the smallest ``machines_factor``, both
    on the grid ``growth**i`` (``i < steps``), that ``protocol.check_config`` accepts.

    With ``machines_for(n, s)`` (the machines a plan for memory ``s`` addresses, ConfigError when
    none fits) the machines are exactly that many instead of searched; ``protocol`` may then be
    None (no ``check_config`` consulted). ConfigError naming the largest factor tried and the last
    rejection when nothing fits.

    Examples
    --------
    >>> class NeedsRoom:
    ...     name = "needs-room"
    ...     def check_config(self, config):
    ...         if config.s < 20 or config.machines < 12:
    ...             raise ConfigError("too small")
    >>> config = smallest_config(NeedsRoom(), 100, 0.5)
    >>> config.s, config.machines, round(config.memory_factor, 4), round(config.machines_factor, 4)
    (20, 13, 1.9531, 1.25)
    >>> smallest_config(None, 100, 0.5, machines_for=lambda n, s: n // s + 3).machines
    13
    """
    if protocol is None and machines_for is None:
        raise ConfigError("smallest_config needs a protocol to check configs, or machines_for")
    name = f"{protocol.name}: " if protocol is not None else ""
    last_error: Exception | None = None
    for i in range(steps):
        memory = growth ** i
        if machines_for is None:
            factors = [growth ** j for j in range(steps)]
        else:
            s = MPCConfig(n=n, eps=eps, memory_factor=memory, machines_factor=float(n)).s
            try:
                machines = machines_for(n, s)
            except ConfigError as exc:
                last_error = exc
                continue
            factors = [machines / n ** (1.0 - eps)]
        for factor in factors:
            try:
                config = MPCConfig(n=n, eps=eps, memory_factor=memory, machines_factor=factor)
                if protocol is not None:
                    protocol.check_config(config)
                return config
            except ConfigError as exc:
                last_error = exc
    raise ConfigError(f"{name}no config with factors up to {growth ** (steps - 1):.3g} fits n = {n}, eps = {eps} "
                      f"({last_error})")


class SearchedDefaultConfig:
    """Mixin for a :class:`~mpc_sim.protocol.Protocol` whose ``default_config`` is the
    :func:`smallest_config` its ``check_config`` accepts (list it before ``Protocol``)."""

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """The smallest constants (from 1, 1, growing by 25%) under which this protocol runs."""
        return smallest_config(self, n, eps)
