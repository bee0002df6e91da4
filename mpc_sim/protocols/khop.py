"""k-hop induction heads (docs/theory.md §5) in ``O(log k)`` doubling steps after one sample sort.

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

1. ``find¹`` by sorting the records ``(x[p], p)`` in (token, position) order: in sorted order
   the record just before ``(x[p], p)`` is the previous occurrence ``r`` of ``x[p]`` when its
   token is equal. With ``P = 1`` the working machine does it locally. Otherwise a *sample sort*
   (:mod:`._splitters`): working machines sample records with a public probability to a leader
   (machine ``P``; machine 0 always sends, a marker at least), the leader spreads every
   ``r``-th sample as a splitter down an in-place tree over the working machines (``Ts``
   rounds), the working machines send every record to its bucket (machines ``0 .. K-1``), the
   buckets sort and pass their last record to the next bucket (every bucket before the last
   holds its splitter, so none is skipped), and each bucket sends ``(p, find¹(p), x[p])`` home.
   When all ``n`` records fit one bucket (``n <= (s - 2) / 3``) they go to machine 0 directly.
   The sort fails (a bucket or the leader over ``s`` words, which the simulator reports as a
   typed limit error) with probability at most ``MAX_FAILURE`` (:func:`._splitters.sort_plan`).
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

Rounds (data-independent; :meth:`KHop.rounds_formula` prints them with their numbers)::

    R = 0                     if k' = 0
    R = S + 3 + 2 J,          J = (bit_length(k') - 1) + [popcount(k') > 1] <= 2 ceil(log2(k' + 1))
    S = 2 (P = 1),  3 (all records in one bucket),  5 + Ts (sample sort; Ts = max(1, ceil(log_d P)),
                                                    d the splitter tree's degree: O(1/eps))

Requirements (``check_config``, only when ``k' >= 1``): ``s >= 8``, a sample sort within the
failure bound, and ``max(P + 1, K)`` machines.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..config import MPCConfig
from ..errors import ConfigError, InputError
from ..protocol import Protocol
from ..state import ClusterState, MessageBatch
from ..randomness import uniform01
from .toolkit import (HEARTBEAT, SearchedDefaultConfig, SortPlan, build_state, delivery_records, inbox_records,
                      pack_batch, pack_local, relayout_batch, relayout_local, sort_plan, spanned, splitter_roots,
                      splitter_sends, with_heartbeat)

__all__ = ["KHop", "hop_k_reference", "doubling_steps"]

_X, _G, _A = 0, 1, 2  # columns of a working machine's state: token, g pointer, a pointer
MAX_FAILURE = 1e-9    # bound on the probability that the sample sort overflows a bucket or its leader
_SAMPLE_TAG = 21      # hash domain of the sampling coins
_MARKER = np.array([0, -1], dtype=np.int64)   # machine 0's sample message always exists (position -1)


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
    sort: SortPlan | None = None   # the sample sort of (token, position) records (P > 1)
    trips: tuple = ()

    @property
    def leader(self) -> int:        # samples the records; the first machine after the working ones
        return self.P

    @property
    def r_classify(self) -> int:    # working machines send their records to the buckets
        return 2 if self.sort.trivial else 3 + self.sort.rounds

    @property
    def r_answers(self) -> int:     # find¹ answers are sent home
        if self.P == 1:
            return 2
        return self.r_classify + (1 if self.sort.trivial else 2)

    @property
    def r_output(self) -> int:      # answers are sent to the output layout
        return self.r_answers + 2 * len(self.trips) + 1

    @property
    def rounds(self) -> int:
        return 0 if self.k_eff == 0 else self.r_output

    @property
    def buckets(self) -> int:
        return 1 if self.sort is None else self.sort.buckets

    def home(self, position: np.ndarray) -> np.ndarray:
        return position // self.B

    def positions(self, machine: int) -> np.ndarray:
        return np.arange(machine * self.B, min(self.n, (machine + 1) * self.B), dtype=np.int64)


@lru_cache(maxsize=64)
def _plan(config: MPCConfig, k: int) -> _Plan | str:
    k_eff = min(k, config.n)
    if k_eff == 0:
        return _Plan(config.n, config.s, config.machines, 0)
    B = max(1, (config.s - 1) // 7)
    P = -(-config.n // B)
    if P == 1:
        return _Plan(config.n, config.s, config.machines, k_eff, B, P, None, _trips(k_eff))
    sort = sort_plan(config.n, (config.s - 2) // 3, config.s, MAX_FAILURE, leaves=P, width=2, room=config.s - B)
    if isinstance(sort, str):
        return f"sorting the (token, position) records: {sort}"
    return _Plan(config.n, config.s, config.machines, k_eff, B, P, sort, _trips(k_eff))


def _below(splitters: np.ndarray, records: np.ndarray) -> np.ndarray:
    """Bucket of every record ``(token, position)``: the splitters (payload ``[count, tokens,
    positions]``) strictly below it in (token, position) order."""
    count = int(splitters[0])
    tokens, positions = splitters[1:1 + count], splitters[1 + count:1 + 2 * count]
    both_tokens = np.r_[records[:, 0], tokens]
    both_positions = np.r_[records[:, 1], positions]
    is_splitter = np.r_[np.zeros(records.shape[0], dtype=np.int64), np.ones(count, dtype=np.int64)]
    order = np.lexsort((is_splitter, both_positions, both_tokens))   # a record before an equal splitter
    before = np.cumsum(is_splitter[order]) - is_splitter[order]
    bucket = np.empty(both_tokens.shape[0], dtype=np.int64)
    bucket[order] = before
    return bucket[:records.shape[0]]


def _sorted_records(records: np.ndarray) -> np.ndarray:
    """Records ``(token, position)`` in (token, position) order."""
    return records[np.lexsort((records[:, 1], records[:, 0]))]


def _splitter_payload(samples: np.ndarray, spacing: int) -> np.ndarray:
    """``[count, tokens, positions]`` of every ``spacing``-th sample (markers dropped)."""
    chosen = _sorted_records(samples[samples[:, 1] >= 0])[spacing - 1::spacing]
    return np.r_[chosen.shape[0], chosen[:, 0], chosen[:, 1]].astype(np.int64)


@dataclass(frozen=True)
class KHop(SearchedDefaultConfig, Protocol):
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
    >>> cfg = KHop(k=2).default_config(9, 0.5)
    >>> run = Simulator(cfg).run(KHop(k=2), x)
    >>> run.output.tolist()                                # ⊥ a ⊥ ⊥ ⊥ ⊥ b c a
    [-1, 0, -1, -1, -1, -1, 1, 2, 0]
    >>> run.trace.num_rounds == KHop(k=2).rounds_bound(cfg), run.trace.check()
    (True, [])
    """

    summary = "k-hop induction heads, by pointer doubling"
    round_formula = ("R = S + 3 + 2 J: find¹ by one sample sort (S = 5 + Ts rounds, Ts the splitter tree's depth; "
                     "2 or 3 when small), then J = (bit_length(k') - 1) + [popcount(k') > 1] doubling steps of "
                     "2 rounds, k' = min(k, n)")
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
    def _checked_plan(self, config: MPCConfig) -> _Plan:
        plan = _plan(config, self.k)
        if isinstance(plan, str):
            raise ConfigError(f"khop: {plan}")
        return plan

    def rounds_bound(self, config: MPCConfig) -> int:
        """Exactly the rounds the schedule takes (module docstring); 0 for ``min(k, n) = 0``."""
        return self._checked_plan(config).rounds

    def rounds_formula(self, config: MPCConfig) -> str:
        """:attr:`round_formula` with this config's numbers, with what ``S``, ``Ts`` and ``J`` are.

        Examples
        --------
        >>> from mpc_sim import MPCConfig
        >>> KHop(k=5).rounds_formula(KHop(k=5).default_config(1000, 0.5)).split(";")[0]
        'S + 3 + 2 J = 7 + 3 + 2 x 3 = 16'
        """
        plan = self._checked_plan(config)
        if plan.k_eff == 0:
            return "0 (k' = min(k, n) = 0: the output is the input)"
        k_eff, S = plan.k_eff, plan.r_answers
        top, extra = k_eff.bit_length() - 1, int(bin(k_eff).count("1") > 1)
        J = top + extra
        if plan.P == 1:
            how = "S = 2: one working machine finds find¹ locally"
        elif plan.sort.trivial:
            how = f"S = 3: all {plan.n} records fit one bucket (P = {plan.P} working machines)"
        else:
            how = (f"S = 5 + Ts = {S}: sample, splitters, Ts = {plan.sort.rounds} splitter-tree rounds (degree "
                   f"{plan.sort.degree} over P = {plan.P} working machines), classify, predecessor, answers")
        return (f"S + 3 + 2 J = {S} + 3 + 2 x {J} = {S + 3 + 2 * J}; {how}; "
                f"J = (bit_length(k') - 1) + [popcount(k') > 1] = {top} + {extra}, k' = min(k, n) = {k_eff} "
                f"doubling steps of 2 rounds (request, response), then the token trip and the output round")

    def fanout_bound(self, config: MPCConfig) -> int:
        """Messages a machine sends in one round: to the homes of its input words (round 1); a
        sample (1); the splitters (the tree's degree); its records to the buckets (``K``); a
        bucket's predecessor (1) or answers (homes of at most ``cap`` records); ``2B`` requests or
        responses; 2 output machines."""
        plan = self._checked_plan(config)
        if plan.k_eff == 0:
            return 1
        sort = [] if plan.sort is None else [plan.sort.degree, min(plan.sort.buckets, plan.B),
                                             min(plan.P, plan.sort.cap)]
        return max(min(plan.P, spanned(config.s, plan.B)), min(plan.P, 2 * plan.B), 2, *sort)

    def check_config(self, config: MPCConfig) -> None:
        if min(self.k, config.n) == 0:
            return
        if config.s < 8:
            raise ConfigError(f"khop needs s >= 8 words per machine (7 per position + a heartbeat), got s = {config.s}")
        plan = self._checked_plan(config)
        need = plan.P if plan.sort is None or plan.sort.trivial else max(plan.P + 1, plan.sort.buckets)
        if need > config.machines:
            raise ConfigError(f"khop needs {need} machines ({plan.P} working machines of {plan.B} positions, "
                              f"B = (s - 1) // 7, a sampling leader, {plan.buckets} buckets) for n = {config.n}, "
                              f"but the cluster has {config.machines} (raise machines_factor)")

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
        if r < plan.r_answers:
            return self._sort_round(plan, ctx.seed, r, machine, memory, inbox)
        if r == plan.r_answers:
            if plan.P == 1:         # one working machine: find¹ locally
                if machine != 0:
                    return memory, []
                records = _sorted_records(np.stack([inbox.words, plan.positions(machine)], axis=1))
                return memory[:0], self._answers(plan, records, inbox.words[:0])
            if plan.sort.trivial:   # bucket 0 holds every record
                records = _sorted_records(inbox.words.reshape(-1, 2))
                return memory[:0], (self._answers(plan, records, inbox.words[:0]) if records.size else [])
            if memory.size == 0:
                return memory, []
            return memory[:0], self._answers(plan, memory.reshape(-1, 2), inbox.words)
        if machine >= plan.P:
            return memory, []
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

    def _sort_round(self, plan, seed, r, machine, memory, inbox):
        """Rounds 2 .. r_answers - 1: the sample sort of the records ``(x[p], p)`` into buckets."""
        sort, working = plan.sort, machine < plan.P
        if sort.trivial:            # round 2: every record to bucket 0
            if not working:
                return memory, []
            return memory[:0], [(0, np.stack([inbox.words, plan.positions(machine)], axis=1).ravel())]
        if r == 2:                  # keep the tokens, sample records to the leader
            if not working:
                return memory, []
            positions = plan.positions(machine)
            picked = uniform01(seed, _SAMPLE_TAG, positions) < sort.probability
            sample = np.stack([inbox.words[picked], positions[picked]], axis=1).ravel()
            if machine == 0:
                sample = np.r_[_MARKER, sample]
            return inbox.words.copy(), ([(plan.leader, sample)] if sample.size else [])
        if r == 3 and machine == plan.leader:
            payload = _splitter_payload(inbox.words.reshape(-1, 2), sort.spacing)
            return memory[:0], [(int(m), payload) for m in splitter_roots(sort, 0)]
        if r <= plan.r_classify:
            if not working:
                return memory, []
            if len(inbox):
                memory = np.r_[memory, inbox.words]
            count = plan.positions(machine).shape[0]
            if r < plan.r_classify:
                return memory, [(m, memory[count:]) for m in splitter_sends(sort, r - 3, 0, machine)]
            records = np.stack([memory[:count], plan.positions(machine)], axis=1)
            return memory[:0], pack_local(_below(memory[count:], records), records)
        # r == r_classify + 1: buckets sort; each sends its last record to the next bucket
        if not len(inbox):
            return memory, []
        records = _sorted_records(inbox.words.reshape(-1, 2))
        return records.ravel(), ([(machine + 1, records[-1])] if machine + 1 < sort.buckets else [])

    @staticmethod
    def _answers(plan, block, predecessor):
        """``(p, find¹(p), x[p])`` for my sorted records, sent to ``home(p)``."""
        previous = np.empty_like(block)
        previous[1:] = block[:-1]
        has_previous = np.ones(block.shape[0], dtype=bool)
        if predecessor.size:
            previous[0] = predecessor
        else:
            has_previous[0] = False
        find1 = np.where(has_previous & (previous[:, 0] == block[:, 0]), previous[:, 1] + 1, -1)
        answers = np.stack([block[:, 1], find1, block[:, 0]], axis=1)
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
        if r < plan.r_answers:
            return self._batch_sort_round(plan, ctx.seed, r, machines, state, delivery)
        if r == plan.r_answers:
            return empty, self._batch_answers(plan, state, delivery)
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

    def _batch_sort_round(self, plan, seed, r, machines, state, delivery):
        """:meth:`_sort_round` on every machine at once (same memories, same messages)."""
        sort, positions = plan.sort, np.arange(plan.n, dtype=np.int64)
        empty = ClusterState.empty(machines)
        if sort.trivial:
            records = np.stack([delivery.inbox_state().words, positions], axis=1)
            return empty, pack_batch(plan.home(positions), np.zeros(plan.n, dtype=np.int64), records)
        counts = np.diff(np.minimum(np.arange(plan.P + 1) * plan.B, plan.n))
        if r == 2:
            tokens = delivery.inbox_state().words
            picked = np.flatnonzero(uniform01(seed, _SAMPLE_TAG, positions) < sort.probability)
            src = np.r_[0, plan.home(picked)]
            sample = np.r_[_MARKER[None, :], np.stack([tokens[picked], positions[picked]], axis=1)]
            batch = pack_batch(src, np.full(src.shape[0], plan.leader), sample)
            return build_state(machines, [(0, counts, tokens)]), batch
        if r == 3:
            _, _, samples = delivery_records(delivery, 2)
            payload = _splitter_payload(samples, sort.spacing)
            roots = splitter_roots(sort, 0)
            batch = pack_batch(np.full(roots.shape[0], plan.leader), roots,
                               np.broadcast_to(payload, (roots.shape[0], payload.shape[0])))
            return state, batch
        if r <= plan.r_classify:
            sizes = state.sizes()[:plan.P]
            holds = sizes > counts
            received = np.zeros(plan.P, dtype=bool)
            received[delivery.messages.dst] = True
            if received.any():
                payload = delivery.messages.words[:delivery.messages.offsets[1]]
            else:
                first = int(np.flatnonzero(holds)[0])
                payload = state.memory(first)[counts[first]:]
            holds |= received
            tokens = np.concatenate([state.memory(m)[:counts[m]] for m in range(plan.P)])
            if r < plan.r_classify:
                memory = np.concatenate([np.r_[state.memory(m)[:counts[m]], payload] if holds[m]
                                         else state.memory(m)[:counts[m]] for m in range(plan.P)])
                tree = sort.tree()
                children, parents = tree.links(tree.depth - (r - 3))
                batch = pack_batch(parents, children, np.broadcast_to(payload, (parents.shape[0], payload.shape[0])))
                return build_state(machines, [(0, counts + holds * payload.shape[0], memory)]), batch
            records = np.stack([tokens, positions], axis=1)
            return empty, pack_batch(plan.home(positions), _below(payload, records), records)
        # r == r_classify + 1: buckets sort; each sends its last record to the next bucket
        bucket, _, records = delivery_records(delivery, 2)
        order = np.lexsort((records[:, 1], records[:, 0], bucket))
        bucket, records = bucket[order], records[order]
        sizes = np.bincount(bucket, minlength=machines)
        last = np.flatnonzero(np.r_[bucket[1:] != bucket[:-1], True])
        sends = bucket[last] + 1 < sort.buckets
        batch = pack_batch(bucket[last][sends], bucket[last][sends] + 1, records[last][sends])
        return build_state(machines, [(0, 2 * sizes, records)]), batch

    @staticmethod
    def _batch_answers(plan, state, delivery):
        """:meth:`_answers` of every bucket (or of the one working machine)."""
        if plan.P == 1:
            tokens = delivery.inbox_state().words
            flat = _sorted_records(np.stack([tokens, np.arange(plan.n, dtype=np.int64)], axis=1))
            holder, predecessor_of = np.zeros(plan.n, dtype=np.int64), {}
        elif plan.sort.trivial:
            _, _, records = delivery_records(delivery, 2)
            flat = _sorted_records(records)
            holder, predecessor_of = np.zeros(flat.shape[0], dtype=np.int64), {}
        else:
            flat = state.words.reshape(-1, 2)
            holder = np.repeat(np.arange(state.machines), state.sizes() // 2)
            receiver, _, predecessors = delivery_records(delivery, 2)
            predecessor_of = dict(zip(receiver.tolist(), predecessors))
        previous = np.empty_like(flat)
        previous[1:] = flat[:-1]
        first = np.r_[True, holder[1:] != holder[:-1]] if flat.shape[0] else np.zeros(0, dtype=bool)
        has_previous = ~first
        for at in np.flatnonzero(first):
            if int(holder[at]) in predecessor_of:
                previous[at], has_previous[at] = predecessor_of[int(holder[at])], True
        find1 = np.where(has_previous & (previous[:, 0] == flat[:, 0]), previous[:, 1] + 1, -1)
        answers = np.stack([flat[:, 1], find1, flat[:, 0]], axis=1)
        return pack_batch(holder, plan.home(answers[:, 0]), answers)

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
