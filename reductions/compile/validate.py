"""Pass 1 of the compiler: refuse what cannot be compiled, listing every reason."""
from __future__ import annotations

from mpc_sim import ConfigError, MPCConfig, Protocol

from .errors import UnsupportedProtocol

__all__ = ["validate_protocol"]


def validate_protocol(protocol: object, config: object, *, rounds: int | None, alpha: int | None) -> None:
    """Raise :class:`UnsupportedProtocol` with all reasons the pair cannot be compiled."""
    reasons: list[str] = []
    name = getattr(protocol, "name", type(protocol).__name__)
    if not isinstance(protocol, Protocol):
        raise UnsupportedProtocol(str(name), [f"not an mpc_sim Protocol (got {type(protocol).__name__})"])
    if not isinstance(config, MPCConfig):
        reasons.append(f"config must be an MPCConfig, got {type(config).__name__}")
    if not protocol.has_step():
        reasons.append("it has no per-machine step: the compiler puts each machine's local computation into "
                       "token-wise maps, which needs the per-machine style (batch_step sees the whole cluster)")
    if rounds is not None and (not isinstance(rounds, int) or rounds < 0):
        reasons.append(f"rounds must be a non-negative int, got {rounds!r}")
    if alpha is not None and (not isinstance(alpha, int) or alpha < 1):
        reasons.append(f"alpha must be a positive int, got {alpha!r}")
    if isinstance(config, MPCConfig):
        try:
            protocol.check_config(config)
        except ConfigError as exc:
            reasons.append(f"the protocol refuses the config: {exc}")
        if rounds is None:
            try:
                bound = protocol.rounds_bound(config)
                if not isinstance(bound, (int,)) or bound < 0:
                    reasons.append(f"rounds_bound returned {bound!r}, not a non-negative int")
            except NotImplementedError:
                reasons.append("it declares no rounds_bound, and no rounds= budget was given")
        fanout = protocol.fanout_bound(config)
        if not isinstance(fanout, int) or fanout < 1:
            reasons.append(f"fanout_bound returned {fanout!r}, not a positive int")
    if reasons:
        raise UnsupportedProtocol(str(name), reasons)
