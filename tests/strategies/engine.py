"""Small protocols and case tables shared by the engine's tests and the backends' tests.

Every backend must raise the local engine's error for the same malformed protocol
(:data:`BATCH_MALFORMED`, :data:`MACHINE_MALFORMED`), stop the same never-halting protocol
(:class:`Rounds`) and refuse the same unknown destinations (:class:`SendTo`);
:func:`reference_rounds` gives a schedule's deliveries and per-machine amounts by plain loops.
"""
from __future__ import annotations

import numpy as np

from mpc_sim import (ClusterState, MemoryLimitExceeded, MessageBatch, Protocol, ReceiveLimitExceeded,
                     SendLimitExceeded)

__all__ = ["LIMIT_ERRORS", "SendTo", "Returns", "BATCH_MALFORMED", "MACHINE_MALFORMED", "Rounds",
           "reference_rounds"]

LIMIT_ERRORS = {"memory": MemoryLimitExceeded, "send": SendLimitExceeded, "receive": ReceiveLimitExceeded}


class SendTo(Protocol):
    """Machine 0 sends ``payload`` to ``destination`` in round 1 (both styles)."""

    name = "send-to"

    def __init__(self, destination, payload=(1,)):
        self.destination, self.payload = destination, payload

    def rounds_bound(self, config):
        return 1

    def step(self, ctx, machine, memory, inbox):
        if ctx.round == 1 and machine == 0:
            return memory[:0], [(self.destination, np.asarray(self.payload, dtype=np.int64))]
        return memory[:0], []

    def batch_step(self, ctx, state, delivery):
        empty = ClusterState.empty(state.machines)
        if ctx.round > 1:
            return empty, MessageBatch.empty()
        return empty, MessageBatch.from_list([(0, self.destination, np.asarray(self.payload, dtype=np.int64))])


class Returns(Protocol):
    """A protocol whose round 1 returns whatever ``make(ctx, state_or_memory)`` builds."""

    name = "returns"

    def __init__(self, make):
        self.make = make

    def rounds_bound(self, config):
        return 1

    def step(self, ctx, machine, memory, inbox):
        return self.make(ctx, memory) if machine == 1 else (memory, [])

    def batch_step(self, ctx, state, delivery):
        return self.make(ctx, state)


BATCH_MALFORMED = {
    "nothing": (lambda ctx, st: None, "must return"),
    "state only": (lambda ctx, st: st, "must return"),
    "no batch": (lambda ctx, st: (st, None), "not a MessageBatch"),
    "list batch": (lambda ctx, st: (st, [(0, 1, [1])]), "not a MessageBatch"),
    "no state": (lambda ctx, st: (None, MessageBatch.empty()), "not a ClusterState"),
    "too few machines": (lambda ctx, st: (ClusterState.empty(2), MessageBatch.empty()), "state of 2 machines"),
    "float state": (lambda ctx, st: (ClusterState.empty(st.machines, np.float64), MessageBatch.empty()),
                    "float64 words"),
    "float messages": (lambda ctx, st: (st, MessageBatch.from_list([(0, 1, [1.5])], np.float64)), "carry float64"),
    "bad source": (lambda ctx, st: (st, MessageBatch.from_list([(9, 1, [1])])), "source 9"),
    "negative length": (lambda ctx, st: (st, MessageBatch(np.array([0, 0]), np.array([1, 1]),
                                                          np.array([0, 2, 1]), np.array([1]))), "carries -1 words"),
}
MACHINE_MALFORMED = {
    "nothing": (lambda ctx, mem: None, "step must return"),
    "three things": (lambda ctx, mem: (mem, [], []), "step must return"),
    "2-D memory": (lambda ctx, mem: (mem.reshape(1, -1), []), "must be a 1-D array"),
    "float memory": (lambda ctx, mem: (mem + 0.5, []), "must hold integer words"),
    "messages not pairs": (lambda ctx, mem: (mem, [(1,)]), "must be \\(destination, payload\\) pairs"),
    "messages None": (lambda ctx, mem: (mem, None), "must be \\(destination, payload\\) pairs"),
    "2-D payload": (lambda ctx, mem: (mem, [(0, np.ones((2, 2), dtype=np.int64))]), "must be a 1-D array"),
    "float payload": (lambda ctx, mem: (mem, [(0, [0.5])]), "must hold integer words"),
    "float destination": (lambda ctx, mem: (mem, [(1.7, [1])]), "machine ids must be integers"),
}


class Rounds(Protocol):
    """Machine 0 sends one word to itself in each of its first ``k`` rounds."""

    name = "rounds"

    def __init__(self, k):
        self.k = k

    def rounds_bound(self, config):
        return self.k

    def step(self, ctx, machine, memory, inbox):
        if machine == 0 and ctx.round <= self.k:
            return memory[:0], [(0, np.array([ctx.round]))]
        return memory[:0], []


def reference_rounds(schedule):
    """Per round: delivered messages (src, dst, words) by destination in inbox order, and the
    per-machine holding / sent / received amounts, by plain loops over the schedule."""
    q = schedule.config.machines
    kept = [len(m) for m in schedule.initial]
    inbox = [0] * q
    out = []
    for r in range(1, schedule.rounds + 1):
        holding = [kept[i] + inbox[i] for i in range(q)]
        messages = sorted(schedule.messages[r - 1], key=lambda m: m[0])     # per-machine order: by source
        delivered = sorted(((s, d, len(p)) for s, d, p in messages), key=lambda m: m[1])   # stable by destination
        sent, received = [0] * q, [0] * q
        for s, d, p in messages:
            sent[s] += len(p)
            received[d] += len(p)
        out.append((delivered, holding, sent, received))
        kept = [len(m) for m in schedule.memories[r - 1]]
        inbox = received
    return out
