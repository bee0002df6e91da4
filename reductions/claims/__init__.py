"""The paper's theorems as executable claims, checked by ``anna-mpc verify``."""
from __future__ import annotations

from .base import Claim, ClaimResult, SweepPoint, fit_loglog, results_table
from .theorem41 import Theorem41

__all__ = ["Claim", "ClaimResult", "SweepPoint", "fit_loglog", "results_table", "Theorem41", "all_claims"]


def all_claims() -> list[Claim]:
    """Every claim, in the order ``anna-mpc verify`` prints them (Theorem 4.1 first)."""
    return [Theorem41()]
