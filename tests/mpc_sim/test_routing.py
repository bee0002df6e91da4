"""route(): the numba counting sort delivers every word to the right machine, stably, bit for bit."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_sim import MessageBatch, route
from mpc_sim.strategies import SPECIAL_FLOATS, message_batches, reference_route

# (messages as (src, dst, payload), machines, expected inbox words per machine)
CASES = [
    ([], 3, [[], [], []]),
    ([(0, 0, [1])], 1, [[1]]),
    ([(0, 2, [1, 2]), (1, 0, [3]), (2, 2, [4])], 3, [[3], [], [1, 2, 4]]),
    ([(2, 1, [9]), (0, 1, [8]), (1, 1, [7, 6])], 4, [[], [9, 8, 7, 6], [], []]),     # sent order, not src order
    ([(1, 1, [5, 5, 5])], 2, [[], [5, 5, 5]]),                                         # to itself
]


def assert_delivery_matches_reference(batch, machines, threads=None):
    delivery = route(batch, machines, threads=threads)
    expected = reference_route(batch.src, batch.dst, batch.offsets, batch.words, machines)
    assert delivery.machines == machines
    assert delivery.messages.num_messages == batch.num_messages
    assert delivery.messages.num_words == batch.num_words
    assert delivery.messages.dtype == batch.dtype
    assert delivery.machine_offsets[0] == 0 and delivery.machine_offsets[-1] == batch.num_messages
    per_machine = delivery.words_per_machine()
    inbox_state = delivery.inbox_state()
    for machine in range(machines):
        inbox = delivery.inbox(machine)
        want = expected[machine]
        assert [src for src, _ in inbox] == [src for src, _ in want]
        assert len(inbox) == len(want)
        for (_, got), (_, payload) in zip(inbox, want):
            assert np.array_equal(got.view(np.int64), payload.view(np.int64))     # bit for bit
        want_words = np.concatenate([p for _, p in want]) if want else batch.words[:0]
        assert np.array_equal(inbox.words.view(np.int64), want_words.view(np.int64))
        assert inbox.total_words == per_machine[machine] == want_words.shape[0]
        assert np.array_equal(inbox_state.memory(machine).view(np.int64), want_words.view(np.int64))
        lo, hi = delivery.machine_offsets[machine], delivery.machine_offsets[machine + 1]
        assert (delivery.messages.dst[lo:hi] == machine).all()
    return delivery


@pytest.mark.parametrize("messages, machines, inboxes", CASES)
def test_case_table_inboxes(messages, machines, inboxes):
    batch = MessageBatch.from_list(messages)
    delivery = assert_delivery_matches_reference(batch, machines)
    assert [delivery.inbox(i).words.tolist() for i in range(machines)] == inboxes


@given(message_batches(), st.none() | st.integers(1, 7))
def test_random_batches_are_delivered_like_the_plain_reference_on_any_number_of_threads(case, threads):
    batch, machines = case
    assert_delivery_matches_reference(batch, machines, threads)


@pytest.mark.parametrize("threads", [1, 2, 3, 64])
def test_sort_on_several_threads_is_identical_to_the_one_thread_sort(threads):
    rng = np.random.default_rng(threads)
    lengths = rng.integers(1, 4, 5000)
    batch = MessageBatch(rng.integers(0, 50, 5000), rng.integers(0, 50, 5000),
                         np.concatenate([[0], np.cumsum(lengths)]), rng.integers(0, 10**9, int(lengths.sum())))
    one, many = route(batch, 50, threads=1), assert_delivery_matches_reference(batch, 50, threads)
    for name in ("src", "dst", "offsets", "words"):
        assert np.array_equal(getattr(one.messages, name), getattr(many.messages, name))
    assert np.array_equal(one.machine_offsets, many.machine_offsets)


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        route(MessageBatch.from_list([(0, 0, [1])]), 1, threads=0)


def test_float_words_travel_bit_exactly_including_negative_zero_nan_payloads_and_extremes():
    bits = np.array([0x7FF8_0000_0000_0001, 0x7FF0_0000_0000_0001, -1, 1], dtype=np.int64)   # NaN payloads, denormal
    words = np.concatenate([SPECIAL_FLOATS, bits.view(np.float64)])
    batch = MessageBatch(np.zeros(len(words), dtype=np.int64), np.arange(len(words), dtype=np.int64)[::-1] % 3,
                         np.arange(len(words) + 1, dtype=np.int64), words)
    delivery = assert_delivery_matches_reference(batch, 3)
    received = np.sort(delivery.messages.words.view(np.int64))
    assert np.array_equal(received, np.sort(words.view(np.int64)))
    assert np.signbit(delivery.messages.words[delivery.messages.words == 0]).sum() == np.signbit(
        words[words == 0]).sum() >= 1


def test_route_does_not_modify_the_batch():
    batch = MessageBatch.from_list([(0, 1, [1, 2]), (1, 0, [3])])
    before = [a.copy() for a in (batch.src, batch.dst, batch.offsets, batch.words)]
    route(batch, 2)
    assert all(np.array_equal(a, b) for a, b in zip(before, (batch.src, batch.dst, batch.offsets, batch.words)))


def test_large_all_to_all_round_matches_reference_counts():
    machines, per_pair = 60, 3          # every machine sends 3 words to every machine
    src = np.repeat(np.arange(machines), machines)
    dst = np.tile(np.arange(machines), machines)
    words = np.arange(machines * machines * per_pair, dtype=np.int64)
    batch = MessageBatch.fixed_width(src, dst, words.reshape(-1, per_pair))
    delivery = assert_delivery_matches_reference(batch, machines)
    assert (delivery.words_per_machine() == machines * per_pair).all()
    assert np.array_equal(delivery.inbox(7).sources, np.arange(machines))
