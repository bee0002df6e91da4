"""The paper's theorems as executable claims, checked by ``anna-mpc verify``."""
from __future__ import annotations

from .base import Claim, ClaimResult, Fit, SweepPoint, fit_loglog, results_table
from .theorem34 import Theorem34
from .theorem41 import Theorem41
from .theorem42 import Theorem42
from .theorem44 import Theorem44
from .theorem5 import Theorem52, Theorem54, Theorem56, ThreeSumWidth

__all__ = ["Claim", "ClaimResult", "Fit", "SweepPoint", "fit_loglog", "results_table", "Theorem34", "Theorem41",
           "Theorem42", "Theorem44", "Theorem52", "Theorem54", "Theorem56", "ThreeSumWidth", "all_claims"]


def all_claims() -> list[Claim]:
    """Every claim, in the order ``anna-mpc verify`` prints them (Theorem 3.4 first)."""
    return [Theorem34(), Theorem41(), Theorem42(), Theorem44(), Theorem52(), Theorem54(), Theorem56(), ThreeSumWidth()]
