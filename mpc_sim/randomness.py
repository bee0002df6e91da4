"""Seeds and stable hashes: the only sources of randomness protocols may use.

Randomness must be identical on every backend and in both protocol styles, so it is derived
from counters (seed, round, machine, index) by a stable 64-bit mixer (splitmix64), never from
Python's ``hash`` or from a generator whose state depends on call order.
"""
from __future__ import annotations

import numpy as np

from .errors import ParameterError

__all__ = ["normalize_seed", "hash64", "uniform01", "machine_rng", "stable_string_hash"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def normalize_seed(seed: int | np.integer | None) -> int:
    """A non-negative int seed; ``None`` means 0, so runs are deterministic by default."""
    if seed is None:
        return 0
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be a non-negative integer or None, got {seed!r}")
    return int(seed)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def hash64(*keys: int | np.ndarray) -> np.ndarray:
    """splitmix64 of a tuple of integer keys (broadcast), as uint64.

    Examples
    --------
    >>> int(hash64(1, 2, 3)) == int(hash64(1, 2, 3)), int(hash64(1, 2, 3)) == int(hash64(1, 2, 4))
    (True, False)
    """
    with np.errstate(over="ignore"):
        h = np.uint64(0x243F6A8885A308D3)
        for key in keys:
            k = np.asarray(key).astype(np.int64).view(np.uint64) if np.asarray(key).dtype != np.uint64 else np.asarray(key)
            h = _mix(h ^ (k + _GOLDEN + (h << np.uint64(6)) + (h >> np.uint64(2))))
        return np.asarray(h, dtype=np.uint64)


def uniform01(*keys: int | np.ndarray) -> np.ndarray:
    """Uniform floats in [0, 1) from :func:`hash64` of the keys (53 random bits)."""
    return (hash64(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def machine_rng(seed: int, round: int, machine: int) -> np.random.Generator:
    """A numpy Generator private to one machine in one round (identical on every backend)."""
    return np.random.default_rng([normalize_seed(seed), int(round), int(machine)])


def stable_string_hash(text: str) -> int:
    """A 63-bit hash of a string that is the same in every process (unlike ``hash``)."""
    data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
    return int(hash64(len(data), *data.tolist()) >> np.uint64(1)) if data.size else 0
