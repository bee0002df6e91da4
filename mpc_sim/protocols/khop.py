"""k-hop induction heads (THEORY.md §5) in ``O(log k)`` rounds after one sort: pointer doubling.

The task, 1-indexed as in the theory::

    find¹(i)   = max({0} ∪ {j ≤ i : X_{j-1} = X_i})
    find^k     = find¹ ∘ find^{k-1},   find⁰(i) = i,   find^k(0) = 0
    hop_k(X)_i = X_{find^k(i)} if find^k(i) ≠ 0, else ⊥

0-based convention (the same as :mod:`anna.tasks.khop`): ``x[p] = X_{p+1}``; a *pointer* is a
0-based position or ``-1`` for "none" (``find = 0``). ``find¹(p) = r + 1`` where ``r`` is the last
``r < p`` with ``x[r] = x[p]`` (the position just after the previous occurrence), ``-1`` if there is
none; ``hop_k[p] = x[find^k(p)]``, or the protocol's ``bottom`` word (default ``-1``) where the
pointer is ``-1``. ``k = 0`` gives ``hop_0 = x``. Tokens are arbitrary int64 words (negative ones
included) except ``bottom`` itself, which the input may not contain.

Algorithm
---------
Positions are moved to *working machines*, ``B = floor((s - 1) / 7)`` per machine (``P =
ceil(n / B)`` of them), position ``p`` living on ``home(p) = p // B``.

1. ``find¹`` by sorting: the records ``(x[p], p)`` are sorted by a bitonic block sort
   (:mod:`._blocks`, ``T = t(t+1)/2`` rounds, ``t = ceil(log2 P)``); in sorted order the record just
   before ``(x[p], p)`` is the previous occurrence ``r`` of ``x[p]`` when its token is equal. Every
   machine gets its predecessor record from the machine before it (one round) and sends
   ``(p, find¹(p), x[p])`` home (one round).
2. Pointer doubling along the bits of ``k' = min(k, n)`` (chains ``p, find¹(p), ...`` strictly
   decrease until they stop, so ``find^k = find^n`` for ``k >= n``): ``g`` holds ``find^{2^j}``,
   ``a`` holds ``find^{(k' mod 2^j)}``. One round trip (request round, response round) per bit
   computes ``g ← g ∘ g`` and, for a set bit, ``a ← g ∘ a`` (a request ``(target, tag)`` goes to
   ``home(target)``, which answers ``(tag, g[target])``; ``tag = 2p + kind``). The lowest set bit
   costs nothing (``a`` is still the identity, so ``a ← g`` is local). A last round trip fetches
   the token ``x[a(p)]``, and one round moves the answers to the output layout (``s`` per machine).

Hot spots. ``find¹`` is injective where it is not ``-1``: if ``find¹(p) = find¹(p') = r + 1``
then ``p`` and ``p'`` are both the next occurrence of ``x[r]`` after ``r``. Compositions of
injective partial maps are injective, so every target position gets at most one ``g``-request and
one ``a``-request per round trip: a machine receives at most ``2 * 2B`` words of requests or
responses while keeping ``3B`` words ``(x, g, a)``, plus a one-word heartbeat: ``7B + 1 <= s``.

Rounds (data-independent; ``P > 1`` adds the predecessor round)::

    R = 0                                           if k' = 0
    R = 5 + T(P) + [P > 1] + 2 J,   J = (bit_length(k') - 1) + [popcount(k') > 1]
      <= 6 + T(P) + 2 ceil(log2(k' + 1))

Requirements (``check_config``, only when ``k' >= 1``): ``s >= 8`` and ``P <= machines``.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError, InputError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch
from ._blocks import (HEARTBEAT, INT_MAX, bitonic_stages, build_state, delivery_records, inbox_records,
                      pack_batch, pack_local, relayout_batch, relayout_local, smallest_config, sort_round_batch,
                      sort_round_local, spanned, with_heartbeat)

__all__ = ["KHop", "hop_k_reference", "doubling_steps"]

_X, _G, _A = 0, 1, 2  # columns of a working machine's state: token, g pointer, a pointer


def hop_k_reference(x: np.ndarray, k: int, bottom: int = -1) -> np.ndarray:
    """``hop_k`` in plain numpy: ``find¹`` from a stable sort by token, then ``min(k, n)`` single hops.

    Examples
    --------
    ``X = aabcbabca`` (a, b, c = 0, 1, 2): ``hop_1`` at position 9 is ``b``, ``hop_2`` there is ``a``.

    >>> x = np.array([0, 0, 1, 2, 1, 0, 1, 2, 0])
    >>> hop_k_reference(x, 1).tolist()
    [-1, 0, -1, -1, 2, 1, 0, 1, 1]
    >>> int(hop_k_reference(x, 2)[8])
    0
    """
    x = np.asarray(x, dtype=np.int64)
    order = np.argsort(x, kind="stable")  # equal tokens stay in increasing position
    same = x[order[1:]] == x[order[:-1]]
    find1 = np.full(x.shape[0], -1, dtype=np.int64)
    find1[order[1:][same]] = order[:-1][same] + 1
    pointer = np.arange(x.shape[0], dtype=np.int64)
    for _ in range(min(int(k), x.shape[0])):
        pointer = np.where(pointer >= 0, find1[np.maximum(pointer, 0)], -1)
    return np.where(pointer >= 0, x[np.maximum(pointer, 0)], bottom).astype(np.int64)


@dataclass(frozen=True)
class _Trip:
    """One request/response round trip: ``copy`` sets ``a ← g`` before requesting; ``g_req``
    computes ``g ∘ g``, ``a_req`` computes ``g ∘ a``; ``token`` fetches ``x[a]``."""

    copy: bool = False
    g_req: bool = False
    a_req: bool = False
    token: bool = False


def doubling_steps(k: int) -> tuple[tuple[bool, bool, bool], ...]:
    """Pointer doubling along the bits of ``k >= 1``, low bit first: per bit ``(copy, g_req, a_req)``.

    With ``g = find^(2^j)`` and ``a`` the composition of the bits done so far: ``copy`` sets
    ``a <- g`` (the first set bit, while ``a`` is the identity), ``a_req`` sets ``a <- g o a`` (a
    later set bit), ``g_req`` sets ``g <- g o g`` (every bit but the top one). A step with neither
    request is the top bit of a power of two: ``find^k`` is ``g`` itself.

    Examples
    --------
    >>> doubling_steps(3)
    ((True, True, False), (False, False, True))
    >>> doubling_steps(4)
    ((False, True, False), (False, True, False), (True, False, False))
    """
    if k < 1:
        raise ValueError(f"the doubling program needs k >= 1, got {k}")
    steps, a_is_identity = [], True
    length = k.bit_length()
    for j in range(length):
        copy = a_req = False
        if (k >> j) & 1:
            if a_is_identity:
                copy, a_is_identity = True, False
            else:
                a_req = True
        steps.append((copy, j < length - 1, a_req))
    return tuple(steps)


def _trips(k: int) -> tuple[_Trip, ...]:
    """The doubling program for ``k >= 1``: one trip per bit that needs a request, then the token trip."""
    trips, pending_copy = [], False
    for copy, g_req, a_req in doubling_steps(k):
        if g_req or a_req:
            trips.append(_Trip(copy=copy, g_req=g_req, a_req=a_req))
        else:  # the top bit of a power of two: a <- g, done while sending the token trip
            pending_copy = copy
    trips.append(_Trip(copy=pending_copy, token=True))
    return tuple(trips)


@dataclass(frozen=True)
class _Plan:
    """Everything a machine derives from the config: layout and round schedule."""

    n: int
    s: int
    machines: int
    k_eff: int
    B: int = 1
    P: int = 1
    stages: tuple = ()
    trips: tuple = ()

    @property
    def r_sorted(self) -> int:  # the round in which every block is final
        return 2 + len(self.stages)

    @property
    def r_answers(self) -> int:  # find¹ answers are sent home
        return self.r_sorted + (1 if self.P > 1 else 0)

    @property
    def r_output(self) -> int:  # answers are sent to the output layout
        return self.r_answers + 2 * len(self.trips) + 1

    @property
    def rounds(self) -> int:
        return 0 if self.k_eff == 0 else self.r_output

    def home(self, position: np.ndarray) -> np.ndarray:
        return position // self.B

    def positions(self, machine: int) -> np.ndarray:
        return np.arange(machine * self.B, min(self.n, (machine + 1) * self.B), dtype=np.int64)


@lru_cache(maxsize=64)
def _plan(config: MPCConfig, k: int) -> _Plan:
    k_eff = min(k, config.n)
    if k_eff == 0:
        return _Plan(config.n, config.s, config.machines, 0)
    B = max(1, (config.s - 1) // 7)
    P = -(-config.n // B)
    return _Plan(config.n, config.s, config.machines, k_eff, B, P, bitonic_stages(P), _trips(k_eff))


def _by_token_then_position(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return records[:, 0], records[:, 1]


@dataclass(frozen=True)
class KHop(Protocol):
    """k-hop induction heads: ``hop_k`` of a token sequence (module docstring for the algorithm).

    Parameters
    ----------
    k : int
        Number of hops, ``>= 0``; default 1 (induction heads, the paper's test task).
    bottom : int
        The word written for ⊥ (no such position); the input may not contain it.

    Examples
    --------
    >>> from mpc_sim import MPCConfig, Simulator
    >>> x = np.array([0, 0, 1, 2, 1, 0, 1, 2, 0])          # aabcbabca
    >>> cfg = MPCConfig(n=9, eps=0.5, memory_factor=3, machines_factor=4)
    >>> run = Simulator(cfg).run(KHop(k=2), x)
    >>> run.output.tolist()                                # ⊥ a ⊥ ⊥ ⊥ ⊥ b c a
    [-1, 0, -1, -1, -1, -1, 1, 2, 0]
    >>> run.trace.num_rounds == KHop(k=2).rounds_bound(cfg), run.trace.check()
    (True, [])
    """

    summary = "k-hop induction heads, by pointer doubling"
    round_formula = ("R = 5 + T(P) + [P > 1] + 2 J: one sort (T(P) bitonic stages), then J = (bit_length(k') - 1)"
                     " + [popcount(k') > 1] doubling steps of 2 rounds, k' = min(k, n)")
    """The round count as a formula (the listing prints it; :meth:`rounds_formula` fills in the numbers)."""

    k: int = 1
    bottom: int = -1
    name = "khop"

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, (int, np.integer)) or self.k < 0:
            raise ConfigError(f"khop: k must be an integer >= 0, got {self.k!r}")
        if isinstance(self.bottom, bool) or not isinstance(self.bottom, (int, np.integer)):
            raise ConfigError(f"khop: bottom must be an integer word, got {self.bottom!r}")
        object.__setattr__(self, "k", int(self.k))
        object.__setattr__(self, "bottom", int(self.bottom))

    # --- declared facts ------------------------------------------------------------------------
    def rounds_bound(self, config: MPCConfig) -> int:
        """Exactly the rounds the schedule takes (module docstring); 0 for ``min(k, n) = 0``."""
        return _plan(config, self.k).rounds

    def rounds_formula(self, config: MPCConfig) -> str:
        """:attr:`round_formula` with this config's numbers, with what ``T``, ``P`` and ``J`` are.

        Examples
        --------
        >>> from mpc_sim import MPCConfig
        >>> KHop(k=5).rounds_formula(MPCConfig(n=1000, eps=0.5, memory_factor=2)).split(";")[0]
        '5 + T(P) + [P > 1] + 2 J = 5 + 28 + 1 + 2 x 3 = 40'
        """
        plan = _plan(config, self.k)
        if plan.k_eff == 0:
            return "0 (k' = min(k, n) = 0: the output is the input)"
        k_eff, T, more = plan.k_eff, len(plan.stages), int(plan.P > 1)
        top, extra = k_eff.bit_length() - 1, int(bin(k_eff).count("1") > 1)
        J = top + extra
        return (f"5 + T(P) + [P > 1] + 2 J = 5 + {T} + {more} + 2 x {J} = {5 + T + more + 2 * J}; "
                f"T(P) = t(t+1)/2 = {T}, t = ceil(log2 P), P = {plan.P} machines of B = {plan.B} positions; "
                f"J = (bit_length(k') - 1) + [popcount(k') > 1] = {top} + {extra}, k' = min(k, n) = {k_eff} "
                f"(2 rounds per doubling step: request, response)")

    def fanout_bound(self, config: MPCConfig) -> int:
        """Messages a machine sends in one round: to the homes of its input words (round 1), of its
        sorted records (at most ``B``), of its ``2B`` requests or responses, or to 2 output machines."""
        plan = _plan(config, self.k)
        if plan.k_eff == 0:
            return 1
        return max(min(plan.P, spanned(config.s, plan.B)), min(plan.P, 2 * plan.B), 2)

    def check_config(self, config: MPCConfig) -> None:
        plan = _plan(config, self.k)
        if plan.k_eff == 0:
            return
        if config.s < 8:
            raise ConfigError(f"khop needs s >= 8 words per machine (7 per position + a heartbeat), got s = {config.s}")
        if plan.P > config.machines:
            raise ConfigError(f"khop needs {plan.P} working machines of {plan.B} positions (B = (s - 1) // 7) for "
                              f"n = {config.n}, but the cluster has {config.machines} (raise machines_factor)")

    def default_config(self, n: int, eps: float) -> MPCConfig:
        """The smallest constants (from 1, 1, growing by 25%) under which this protocol runs."""
        return smallest_config(self, n, eps)

    def validate_input(self, config: MPCConfig, data: object) -> np.ndarray:
        words = super().validate_input(config, data)
        hits = np.flatnonzero(words == self.bottom)
        if hits.size:
            raise InputError(f"khop: token {self.bottom} at position {int(hits[0])} equals bottom (the ⊥ word); "
                             f"choose another bottom")
        return words

    def reference(self, data: np.ndarray) -> np.ndarray:
        return hop_k_reference(data, self.k, self.bottom)

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        """THEORY §6 data: 4 symbols, no immediate repeats (each next symbol uniform over the others)."""
        rng = np.random.default_rng(seed)
        steps = np.r_[rng.integers(0, 4, size=1), rng.integers(1, 4, size=config.n - 1)]
        return (np.cumsum(steps) % 4).astype(np.int64)

    # --- per-machine style ---------------------------------------------------------------------
    def step(self, ctx, machine, memory, inbox):
        plan, r = _plan(ctx.config, self.k), ctx.round
        if plan.k_eff == 0:
            return memory, []
        if r == 1:  # tokens to their homes; positions are implicit in the layout
            return memory[:0], relayout_local(machine, memory, plan.s, plan.home)
        if r == plan.r_output + 1:  # the output has arrived
            return inbox.words.copy(), []
        if machine >= plan.P:
            return memory, []
        if r <= plan.r_sorted:
            return self._sort_round(plan, r, machine, memory, inbox)
        if r == plan.r_answers:
            return memory[:0], self._answers(plan, machine, memory.reshape(plan.B, 2), inbox.words)
        if r == plan.r_output:
            hop = self._apply_responses(plan, machine, memory.reshape(-1, 3), inbox, plan.trips[-1])
            return memory[:0], relayout_local(machine, hop, plan.B, lambda i: i // plan.s)
        trip_index, responding = divmod(r - plan.r_answers - 1, 2)
        if responding:
            state = memory.reshape(-1, 3)
            messages = self._respond(plan, machine, state, inbox, plan.trips[trip_index])
        else:
            state = self._state_before_trip(plan, machine, memory, inbox, trip_index)
            messages = self._requests(plan, machine, state, plan.trips[trip_index])
        if machine == 0 and not messages:
            messages = [(0, np.array([HEARTBEAT]))]
        return state.ravel(), messages

    def _sort_round(self, plan, r, machine, memory, inbox):
        q = r - 2
        if q == 0:  # fresh block: (token, position), padded with records that sort last
            positions = plan.positions(machine)
            block = np.full((plan.B, 2), INT_MAX, dtype=np.int64)
            block[:positions.size] = np.c_[inbox.words, positions]
        else:
            block = memory.reshape(plan.B, 2)
        block, messages = sort_round_local(block, inbox.words if q else None, q, machine, plan.P, plan.stages,
                                           _by_token_then_position)
        if q < len(plan.stages):
            return block.ravel(), messages
        if plan.P > 1:  # sorted: my last record is the predecessor of the next machine's first
            return block.ravel(), ([(machine + 1, block[-1])] if machine + 1 < plan.P else [])
        return memory[:0], self._answers(plan, machine, block, inbox.words[:0])

    @staticmethod
    def _answers(plan, machine, block, predecessor):
        """``(p, find¹(p), x[p])`` for my sorted records, sent to ``home(p)``."""
        previous = np.empty_like(block)
        previous[1:] = block[:-1]
        has_previous = np.ones(plan.B, dtype=bool)
        if predecessor.size:
            previous[0] = predecessor
        else:
            has_previous[0] = False
        real = block[:, 1] != INT_MAX
        find1 = np.where(has_previous & (previous[:, 0] == block[:, 0]), previous[:, 1] + 1, -1)
        answers = np.c_[block[:, 1], find1, block[:, 0]][real]
        return pack_local(plan.home(answers[:, 0]), answers)

    def _state_before_trip(self, plan, machine, memory, inbox, trip_index):
        if trip_index == 0:  # the find¹ answers: g = find¹, a = identity
            answers = inbox_records(inbox, 3)
            state = np.empty((answers.shape[0], 3), dtype=np.int64)
            local = answers[:, 0] - machine * plan.B
            state[local, _X], state[local, _G], state[local, _A] = answers[:, 2], answers[:, 1], answers[:, 0]
            return state
        state = memory.reshape(-1, 3).copy()
        self._apply_responses(plan, machine, state, inbox, plan.trips[trip_index - 1])
        return state

    def _apply_responses(self, plan, machine, state, inbox, trip):
        """Install the answers of ``trip``: new ``g``/``a`` columns in place, or the hop values."""
        responses = inbox_records(inbox, 2, skip_single=True)
        local, kind, value = (responses[:, 0] >> 1) - machine * plan.B, responses[:, 0] & 1, responses[:, 1]
        if trip.token:
            hop = np.full(state.shape[0], self.bottom, dtype=np.int64)
            hop[local] = value
            return hop
        for column, wanted, flag in ((_G, 0, trip.g_req), (_A, 1, trip.a_req)):
            if flag:  # a -1 pointer asked nothing and stays -1
                fresh = np.full(state.shape[0], -1, dtype=np.int64)
                fresh[local[kind == wanted]] = value[kind == wanted]
                state[:, column] = fresh
        return state

    @staticmethod
    def _requests(plan, machine, state, trip):
        if trip.copy:
            state[:, _A] = state[:, _G]
        positions = plan.positions(machine)
        wanted = []
        if trip.g_req:
            wanted.append((_G, 0))
        if trip.a_req or trip.token:
            wanted.append((_A, 1))
        parts = [np.c_[state[live, column], 2 * positions[live] + kind]
                 for column, kind in wanted for live in [state[:, column] >= 0]]
        requests = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
        return pack_local(plan.home(requests[:, 0]), requests)

    @staticmethod
    def _respond(plan, machine, state, inbox, trip):
        requests = inbox_records(inbox, 2, skip_single=True)
        target, tag = requests[:, 0], requests[:, 1]
        table = state[:, _X] if trip.token else state[:, _G]
        return pack_local(plan.home(tag >> 1), np.c_[tag, table[target - machine * plan.B]])

    # --- batch style ---------------------------------------------------------------------------
    def batch_step(self, ctx, state, delivery):
        plan, r, machines = _plan(ctx.config, self.k), ctx.round, ctx.config.machines
        empty = ClusterState.empty(machines)
        if plan.k_eff == 0:
            return state, MessageBatch.empty(np.int64)
        if r == 1:
            return empty, relayout_batch(state.words, plan.s, plan.home)
        if r == plan.r_output + 1:
            return delivery.inbox_state(), MessageBatch.empty(np.int64)
        if r <= plan.r_sorted:
            return self._batch_sort_round(plan, r, machines, state, delivery)
        if r == plan.r_answers:
            _, _, predecessors = delivery_records(delivery, 2)
            return empty, self._batch_answers(plan, state.words.reshape(plan.P, plan.B, 2), predecessors)
        if r == plan.r_output:
            hop = self._batch_apply(plan, state.words.reshape(plan.n, 3).copy(), delivery, plan.trips[-1])
            return empty, relayout_batch(hop, plan.B, lambda i: i // plan.s)
        trip_index, responding = divmod(r - plan.r_answers - 1, 2)
        if responding:
            columns = state.words.reshape(plan.n, 3)
            batch = self._batch_respond(plan, columns, delivery, plan.trips[trip_index])
        else:
            if trip_index == 0:
                _, _, answers = delivery_records(delivery, 3)
                columns = np.empty((plan.n, 3), dtype=np.int64)
                columns[answers[:, 0]] = answers[:, [2, 1, 0]]
            else:
                columns = self._batch_apply(plan, state.words.reshape(plan.n, 3).copy(), delivery,
                                            plan.trips[trip_index - 1])
            batch = self._batch_requests(plan, columns, plan.trips[trip_index])
        return self._working_state(plan, machines, columns), with_heartbeat(batch)

    @staticmethod
    def _working_state(plan, machines, columns):
        sizes = np.diff(np.minimum(np.arange(plan.P + 1) * plan.B, plan.n)) * 3
        return build_state(machines, [(0, sizes, columns)])

    def _batch_sort_round(self, plan, r, machines, state, delivery):
        q = r - 2
        if q == 0:
            blocks = np.full((plan.P * plan.B, 2), INT_MAX, dtype=np.int64)
            blocks[:plan.n] = np.c_[delivery.inbox_state().words, np.arange(plan.n)]
            blocks = blocks.reshape(plan.P, plan.B, 2)
        else:
            blocks = state.words.reshape(plan.P, plan.B, 2)
        blocks, batch = sort_round_batch(blocks, q, plan.stages, _by_token_then_position)
        block_state = build_state(machines, [(0, np.full(plan.P, 2 * plan.B), blocks)])
        if q < len(plan.stages):
            return block_state, batch
        if plan.P > 1:
            senders = np.arange(plan.P - 1)
            return block_state, pack_batch(senders, senders + 1, blocks[:-1, -1])
        return ClusterState.empty(machines), self._batch_answers(plan, blocks, np.zeros((0, 2), dtype=np.int64))

    @staticmethod
    def _batch_answers(plan, blocks, predecessors):
        flat = blocks.reshape(-1, 2)
        previous = np.empty_like(flat)
        previous[1:] = flat[:-1]
        has_previous = np.ones(flat.shape[0], dtype=bool)
        has_previous[0] = False
        previous[plan.B::plan.B] = predecessors  # machine m's first record follows machine m-1's last
        real = flat[:, 1] != INT_MAX
        find1 = np.where(has_previous & (previous[:, 0] == flat[:, 0]), previous[:, 1] + 1, -1)
        holder = np.arange(flat.shape[0]) // plan.B
        answers = np.c_[flat[:, 1], find1, flat[:, 0]]
        return pack_batch(holder[real], plan.home(answers[real, 0]), answers[real])

    def _batch_apply(self, plan, columns, delivery, trip):
        _, _, responses = delivery_records(delivery, 2, skip_single=True)
        position, kind, value = responses[:, 0] >> 1, responses[:, 0] & 1, responses[:, 1]
        if trip.token:
            hop = np.full(plan.n, self.bottom, dtype=np.int64)
            hop[position] = value
            return hop
        for column, wanted, flag in ((_G, 0, trip.g_req), (_A, 1, trip.a_req)):
            if flag:
                fresh = np.full(plan.n, -1, dtype=np.int64)
                fresh[position[kind == wanted]] = value[kind == wanted]
                columns[:, column] = fresh
        return columns

    @staticmethod
    def _batch_requests(plan, columns, trip):
        if trip.copy:
            columns[:, _A] = columns[:, _G]
        positions = np.arange(plan.n, dtype=np.int64)
        wanted = ([(_G, 0)] if trip.g_req else []) + ([(_A, 1)] if trip.a_req or trip.token else [])
        parts = [np.c_[positions[live], columns[live, column], 2 * positions[live] + kind]
                 for column, kind in wanted for live in [columns[:, column] >= 0]]
        requests = np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)
        return pack_batch(plan.home(requests[:, 0]), plan.home(requests[:, 1]), requests[:, 1:])

    @staticmethod
    def _batch_respond(plan, columns, delivery, trip):
        holder, _, requests = delivery_records(delivery, 2, skip_single=True)
        target, tag = requests[:, 0], requests[:, 1]
        table = columns[:, _X] if trip.token else columns[:, _G]
        return pack_batch(holder, plan.home(tag >> 1), np.c_[tag, table[target]])
