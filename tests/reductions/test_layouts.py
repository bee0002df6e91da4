"""Packet layouts: averages of up to max_senders messages decode exactly, or raise DecodeError."""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reductions.compile.layouts import (LAYOUTS, DecodeError, DisjunctLayout, HashedLayout, Layout, Message,
                                        limbs_to_words, make_layout, words_to_limbs)

EXTREME_WORDS = np.array([0, 1, -1, 2**63 - 1, -2**63, 2**53 + 1, 12345678901234567], dtype=np.int64)


def _roundtrip(layout, messages):
    average = layout.encode_many(messages).mean(axis=0)
    return [(m.src, m.dst, m.words.tolist()) for m in layout.decode(average)]


def _expected(messages):
    return sorted((m.src, m.dst, m.words.tolist()) for m in messages)


def test_limbs_roundtrip_every_bit_pattern_including_float_words():
    floats = np.array([0.0, -0.0, np.pi, -1e300, np.inf, 5e-324]).view(np.int64)
    for words in (EXTREME_WORDS, floats):
        assert np.array_equal(limbs_to_words(words_to_limbs(words)), words)
    assert words_to_limbs(EXTREME_WORDS).max() < 2**22


@pytest.mark.parametrize("name", ["disjunct", "hashed"])
def test_worst_case_allowed_by_limits_decodes_exactly(name):
    # s senders of one word each hit one receiver (receive limit s), and one sender fills all s words
    s, machines = 8, 64
    layout = make_layout(name, capacity=s, max_senders=s, machines=machines)
    rng = np.random.default_rng(0)
    for trial in range(30):
        sources = rng.choice(machines, size=s, replace=False)
        messages = [Message(int(x), 5, rng.integers(-2**63, 2**63 - 1, size=1)) for x in sources]
        assert _roundtrip(layout, messages) == _expected(messages)
    full = [Message(63, 5, EXTREME_WORDS[:s] if s <= EXTREME_WORDS.size else np.resize(EXTREME_WORDS, s))]
    assert _roundtrip(layout, full) == _expected(full)


@pytest.mark.parametrize("name", ["disjunct", "hashed"])
@given(data=st.data())
def test_random_message_sets_within_capacity_decode_exactly(name, data):
    s = data.draw(st.integers(1, 10), label="s")
    machines = data.draw(st.integers(1, 200), label="machines")
    layout = make_layout(name, capacity=s, max_senders=s, machines=machines)
    senders = data.draw(st.lists(st.integers(0, machines - 1), min_size=1, max_size=min(s, machines), unique=True))
    budget = s
    messages = []
    for i, src in enumerate(senders):
        most = budget - (len(senders) - i - 1)
        length = data.draw(st.integers(1, most))
        budget -= length
        words = data.draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=length, max_size=length))
        messages.append(Message(src, 0, np.array(words, dtype=np.int64)))
    assert _roundtrip(layout, messages) == _expected(messages)


@pytest.mark.parametrize("name", ["disjunct", "hashed"])
def test_zero_average_means_no_message_and_wrong_width_is_refused(name):
    layout = make_layout(name, capacity=4, max_senders=4, machines=16)
    assert layout.decode(np.zeros(layout.width)) == []
    with pytest.raises(DecodeError, match="width"):
        layout.decode(np.zeros(layout.width + 1))


@pytest.mark.parametrize("name", ["disjunct", "hashed"])
def test_a_foreign_or_corrupted_contribution_is_detected_not_decoded(name):
    layout = make_layout(name, capacity=4, max_senders=4, machines=16)
    messages = [Message(1, 0, np.array([3, 4])), Message(2, 0, np.array([5]))]
    rows = layout.encode_many(messages)
    corrupted = rows.mean(axis=0)
    corrupted[np.flatnonzero(corrupted)[7]] += 0.25
    with pytest.raises(DecodeError):
        layout.decode(corrupted)
    # more senders than the layout was built for
    crowd = [Message(i, 0, np.array([i])) for i in range(5)]
    with pytest.raises(DecodeError):
        layout.decode(layout.encode_many(crowd).mean(axis=0))


def test_messages_over_capacity_are_refused_at_encoding():
    for layout in (DisjunctLayout(2, 2, 4), HashedLayout(2, 2, 4)):
        with pytest.raises(ValueError, match="exceeds the layout's capacity"):
            layout.encode(Message(0, 1, np.arange(3)))


def test_hashed_layout_failure_rate_is_below_one_in_a_thousand_at_full_load():
    # the module states < 1e-6 per decode at full load; 600 worst-case decodes must all succeed
    rng = np.random.default_rng(7)
    failures = 0
    for s in (4, 16, 48):
        layout = HashedLayout(capacity=s, max_senders=s, machines=4 * s)
        for _ in range(200):
            sources = rng.choice(4 * s, size=s, replace=False)
            messages = [Message(int(x), 0, rng.integers(0, 9, size=1)) for x in sources]
            try:
                assert _roundtrip(layout, messages) == _expected(messages)
            except DecodeError:
                failures += 1
    assert failures == 0


def test_hashed_layout_is_narrower_than_disjunct_from_moderate_s():
    for s in (16, 32):
        machines = s * s
        assert HashedLayout(s, s, machines).width < DisjunctLayout(s, s, machines).width / 5


# --- the layout interface every layout implements -------------------------------------------------
def _concrete_layouts(base=Layout):
    found = set()
    for cls in base.__subclasses__():
        if not inspect.isabstract(cls):
            found.add(cls)
        found |= _concrete_layouts(cls)
    return found


def test_every_layout_class_of_the_library_is_registered_by_name():
    assert _concrete_layouts() == set(LAYOUTS.values())


def test_a_layout_missing_part_of_the_interface_cannot_be_built():
    class Partial(Layout):
        name = "partial"

        def encode(self, message):
            return np.zeros(1)

    with pytest.raises(TypeError, match="abstract"):
        Partial()


@pytest.mark.parametrize("options", [dict(capacity=3, max_senders=2, machines=10),
                                     dict(capacity=8, max_senders=8, machines=100)])
@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_describes_its_vector_through_the_interface(name, options):
    layout = make_layout(name, **options)
    assert isinstance(layout, Layout) and layout.name == name
    cells = layout.copies * layout.slots
    assert cells * layout.packet_words == layout.width
    names, fields = layout.slot_names(), layout.packet_fields()
    assert len(names) == len(set(names)) == cells
    assert len(fields) == len(set(fields)) == layout.packet_words
    # a one-word message is one packet: it occupies exactly cells_per_packet cells, each naming its src and dst
    message = Message(7, 4, np.array([-5], dtype=np.int64))
    table = layout.encode(message).reshape(cells, layout.packet_words)
    occupied = table[np.any(table != 0.0, axis=1)]
    assert occupied.shape[0] == layout.cells_per_packet
    assert (occupied[:, fields.index("src")] == 7).all() and (occupied[:, fields.index("dst")] == 4).all()
    assert (occupied[:, 0] == 1.0).all()       # the validity / count field every decoder reads first
