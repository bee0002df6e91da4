"""Packets as sparse cell entries: vectorised layout encoding, averaging and decoding.

A layout's value vector (:mod:`reductions.compile.layouts`) is a table of *cells*, each cell a
vector of ``item_width`` numbers: the hashed layout has ``copies * cells`` cells of one chunk item
each, the disjunct layout ``q**2`` slots of one packet each. A message becomes a few *items*
(chunks, or its one packet), and each item is added into a fixed set of cells. Almost every cell of
every head is zero, so the lean engine (:mod:`reductions.compile.execute`) keeps only the items
and their cell ids:

- :func:`encode_items` lays out a whole batch of messages at once (a numba kernel for the hashed
  layout, the layout's own ``encode`` otherwise);
- :func:`group_sums` adds the weighted items of every (group, cell) pair: a group is one receiver
  in one head, and ``average = sums / weight_total`` is exactly what the attention head writes
  into that receiver's row (sums of integers below ``2**53`` are exact, then one division);
- :func:`decode_groups` decodes every group's average (a numba peeling kernel for the hashed
  layout, the layout's own ``decode`` on the densified vector otherwise), with the same checks
  and the same failures as :meth:`Layout.decode`.

Tests check both against the dense ``encode`` / ``decode`` of :mod:`.layouts`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from .layouts import DecodeError, HashedLayout, Layout, Message

__all__ = ["Items", "Decoded", "encode_items", "group_sums", "decode_groups", "layout_cells", "items_upper_bound"]

_GOLD = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True, eq=False)
class Items:
    """A batch of messages laid out: ``items[t]`` (one cell's worth of numbers) belongs to message
    ``message[t]`` and is added into the cells ``cells[t]`` (``cells_per_item`` ids each)."""

    items: np.ndarray
    message: np.ndarray
    cells: np.ndarray


@dataclass(frozen=True, eq=False)
class Decoded:
    """Messages decoded from groups: message ``j`` came out of group ``group[j]``, from ``src[j]``
    to ``dst[j]``, with words ``words[offsets[j]:offsets[j + 1]]`` (int64 bit patterns); within a
    group, messages are sorted by source."""

    group: np.ndarray
    src: np.ndarray
    dst: np.ndarray
    offsets: np.ndarray
    words: np.ndarray


def layout_cells(layout: Layout) -> tuple[int, int]:
    """``(cells, item_width)`` of a layout's value vector (``cells * item_width == width``)."""
    return layout.copies * layout.slots, layout.packet_words


# ----------------------------------------------------------------------------- hashing (numba)
@nb.njit(cache=True)
def _mix(h, key):  # pragma: no cover - compiled
    """One step of :meth:`HashedLayout._hash` in uint64 arithmetic (wraps like its ``& M``)."""
    h ^= key + _GOLD + (h << np.uint64(6)) + (h >> np.uint64(2))
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    h ^= h >> np.uint64(31)
    return h


@nb.njit(cache=True)
def _cell(seed, t, copy, src, index, per_table):  # pragma: no cover - compiled
    h = _GOLD ^ np.uint64(seed)
    h = _mix(h, np.uint64(1 + t))
    h = _mix(h, np.uint64(copy))
    h = _mix(h, np.uint64(src))
    h = _mix(h, np.uint64(index))
    return t * per_table + np.int64(h % np.uint64(per_table))


@nb.njit(cache=True)
def _check(seed, item):  # pragma: no cover - compiled
    """:meth:`HashedLayout._check` of an item vector (its fields 1..4 and limbs 5..-2)."""
    h = _GOLD ^ np.uint64(seed)
    h = _mix(h, np.uint64(0))
    for f in range(1, item.shape[0] - 1):
        h = _mix(h, np.uint64(np.int64(item[f])))
    return np.float64(h & np.uint64(0xFFFFF))


@nb.njit(cache=True)
def _hashed_encode(src, dst, offsets, words, chunk_words, seed, copies, hashes, per_table, cells,
                   item_width):  # pragma: no cover - compiled
    n = src.shape[0]
    first = np.zeros(n + 1, dtype=np.int64)
    for j in range(n):
        length = offsets[j + 1] - offsets[j]
        first[j + 1] = first[j] + max(1, (length + chunk_words - 1) // chunk_words)
    total = first[n]
    items = np.zeros((total, item_width), dtype=np.float64)
    message = np.empty(total, dtype=np.int64)
    cell_ids = np.empty((total, copies * hashes), dtype=np.int64)
    shifts = np.array([0, 22, 43], dtype=np.uint64)
    masks = np.array([(1 << 22) - 1, (1 << 21) - 1, (1 << 21) - 1], dtype=np.uint64)
    for j in range(n):
        length = offsets[j + 1] - offsets[j]
        for index in range(first[j + 1] - first[j]):
            t = first[j] + index
            message[t] = j
            item = items[t]
            item[0] = 1.0
            item[1] = src[j]
            item[2] = dst[j]
            item[3] = length
            item[4] = index
            for w in range(chunk_words):
                pos = index * chunk_words + w
                if pos < length:
                    bits = np.uint64(words[offsets[j] + pos])
                    for limb in range(3):
                        item[5 + 3 * w + limb] = np.float64((bits >> shifts[limb]) & masks[limb])
            item[item_width - 1] = _check(seed, item)
            for copy in range(copies):
                for h in range(hashes):
                    cell_ids[t, copy * hashes + h] = copy * cells + _cell(seed, h, copy, src[j], index, per_table)
    return items, message, cell_ids


def encode_items(layout: Layout, src: np.ndarray, dst: np.ndarray, offsets: np.ndarray, words: np.ndarray) -> Items:
    """Items and cells of a batch of messages (``words``: int64 bit patterns, ragged by ``offsets``).

    Raises ValueError, as ``layout.encode`` does, for a message longer than the layout's capacity.
    """
    src = np.ascontiguousarray(src, dtype=np.int64)
    dst = np.ascontiguousarray(dst, dtype=np.int64)
    offsets = np.ascontiguousarray(offsets, dtype=np.int64)
    words = np.ascontiguousarray(words).view(np.int64)
    lengths = np.diff(offsets)
    if lengths.size and lengths.max() > layout.capacity:
        j = int(np.argmax(lengths))
        raise ValueError(f"message of {int(lengths[j])} words exceeds the layout's capacity {layout.capacity}")
    if isinstance(layout, HashedLayout):
        items, message, cells = _hashed_encode(src, dst, offsets, words, layout.chunk_words, layout.seed,
                                               layout.copies, layout.hashes, layout.cells_per_table, layout.cells,
                                               layout.item)
        return Items(items, message, cells)
    n_cells, item_width = layout_cells(layout)
    rows, message, cells = [], [], []
    for j in range(src.shape[0]):
        vector = layout.encode(Message(int(src[j]), int(dst[j]), words[offsets[j]:offsets[j + 1]]))
        table = vector.reshape(n_cells, item_width)
        hit = np.flatnonzero(np.any(table != 0.0, axis=1))
        # every cell of one message holds the same item (one packet per message in the disjunct layout)
        rows.append(table[hit[0]])
        message.append(j)
        cells.append(hit)
    width = max((c.shape[0] for c in cells), default=1)
    if any(c.shape[0] != width for c in cells):
        raise ValueError(f"{layout.name}: messages occupy different numbers of cells")
    return Items(np.array(rows, dtype=np.float64).reshape(-1, item_width), np.array(message, dtype=np.int64),
                 np.array(cells, dtype=np.int64).reshape(-1, width))


# ----------------------------------------------------------------------------- group sums
@nb.njit(cache=True)
def _group_cell_sums(group_of_pair, item_of_pair, weight_of_pair, item_cells, items, n_groups):  # pragma: no cover
    """Counting sort of the pairs by group, then per group a sort of its cell entries and the sums."""
    n_pairs = group_of_pair.shape[0]
    per_item = item_cells.shape[1]
    width = items.shape[1]
    first = np.zeros(n_groups + 1, dtype=np.int64)
    for p in range(n_pairs):
        first[group_of_pair[p] + 1] += 1
    for g in range(n_groups):
        first[g + 1] += first[g]
    fill = first[:-1].copy()
    by_group = np.empty(n_pairs, dtype=np.int64)
    for p in range(n_pairs):
        g = group_of_pair[p]
        by_group[fill[g]] = p
        fill[g] += 1
    # upper bound of the output: every entry its own cell
    out_group = np.empty(n_pairs * per_item, dtype=np.int64)
    out_cell = np.empty(n_pairs * per_item, dtype=np.int64)
    sums = np.empty((n_pairs * per_item, width), dtype=np.float64)       # rows zeroed when first used
    n_out = 0
    # cells below ``span`` are sorted by counting into ``slot`` when a group's entries are many
    # against ``span`` (then a pass over the span is cheaper than a sort), else by argsort
    span, lowest = 0, 0
    for i in range(item_cells.shape[0]):
        for c in range(per_item):
            span = max(span, item_cells[i, c] + 1)
            lowest = min(lowest, item_cells[i, c])
    slot = np.full(span if lowest >= 0 else 0, -1, dtype=np.int64)
    for g in range(n_groups):
        lo, hi = first[g], first[g + 1]
        n_entries = (hi - lo) * per_item
        cells = np.empty(n_entries, dtype=np.int64)
        for e in range(hi - lo):
            p = by_group[lo + e]
            for c in range(per_item):
                cells[e * per_item + c] = item_cells[item_of_pair[p], c]
        if slot.shape[0] > 0 and 8 * n_entries >= slot.shape[0]:
            for e in range(n_entries):
                slot[cells[e]] = 0
            start = n_out
            for cell in range(slot.shape[0]):
                if slot[cell] == 0:
                    slot[cell] = n_out
                    out_group[n_out] = g
                    out_cell[n_out] = cell
                    sums[n_out, :] = 0.0
                    n_out += 1
            for e in range(n_entries):
                p = by_group[lo + e // per_item]
                row = items[item_of_pair[p]]
                w = weight_of_pair[p]
                k = slot[cells[e]]
                for f in range(width):
                    sums[k, f] += w * row[f]
            for k in range(start, n_out):
                slot[out_cell[k]] = -1
            continue
        order = np.argsort(cells)
        previous = -1
        for e in order:
            cell = cells[e]
            if cell != previous:
                out_group[n_out] = g
                out_cell[n_out] = cell
                sums[n_out, :] = 0.0
                n_out += 1
                previous = cell
            p = by_group[lo + e // per_item]
            row = items[item_of_pair[p]]
            w = weight_of_pair[p]
            for f in range(width):
                sums[n_out - 1, f] += w * row[f]
    return out_group[:n_out], out_cell[:n_out], sums[:n_out]


def group_sums(group_of_pair: np.ndarray, item_of_pair: np.ndarray, weight_of_pair: np.ndarray, items: Items,
               n_cells: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted sums of items per (group, cell).

    Pair ``p`` adds ``weight_of_pair[p]`` times item ``item_of_pair[p]`` into every cell of that
    item in group ``group_of_pair[p]`` (groups are ``0..G-1``). Returns ``(group, cell, sums)``
    of every non-empty (group, cell), sorted by group then cell. Sums of integers below
    ``2**53`` are exact in any order.
    """
    group_of_pair = np.ascontiguousarray(group_of_pair, dtype=np.int64)
    n_groups = int(group_of_pair.max()) + 1 if group_of_pair.size else 0
    return _group_cell_sums(group_of_pair, np.ascontiguousarray(item_of_pair, dtype=np.int64),
                            np.ascontiguousarray(weight_of_pair, dtype=np.float64), items.cells, items.items, n_groups)


# ----------------------------------------------------------------------------- decoding
_OK, _BAD_COUNT, _NOT_PEELED, _MISSING_FIRST, _BAD_CHUNKS, _WRONG_COUNT, _NOT_AVERAGE = range(7)
_REASONS = {
    _BAD_COUNT: "recovered a sender count outside 1..max_senders",
    _NOT_PEELED: "peeling stopped with cells still occupied",
    _MISSING_FIRST: "chunk 0 of a message is missing",
    _BAD_CHUNKS: "a message has missing or extra chunks",
    _WRONG_COUNT: "the number of messages recovered differs from the sender count",
    _NOT_AVERAGE: "the decoded messages do not re-encode to the received average",
}


@nb.njit(cache=True)
def _peel_copy(cells, average, lo, hi, count, copy, seed, copies, hashes, per_table, n_cells, machines, capacity,
               chunks_out, where):  # pragma: no cover - compiled
    """Peel copy ``copy`` of one group; chunk items found go to ``chunks_out``; returns how many
    (or -1 when cells stay occupied). ``where[cell]`` is the index of ``cell`` in ``cells[lo:hi]``
    (absolute) or -1: a binary search of the group's sorted cells as one load."""
    item_width = average.shape[1]
    a = _find_first(cells, lo, hi, copy * n_cells)
    b = _find_first(cells, lo, hi, (copy + 1) * n_cells)
    k = b - a
    sums = np.empty((k, item_width), dtype=np.float64)
    for i in range(k):
        for f in range(item_width):
            sums[i, f] = np.rint(average[a + i, f] * count)
    found = 0
    queue = np.empty(k * (hashes + 1) + 1, dtype=np.int64)
    # chunks peeled so far, chained by the local index of their first cell (duplicates share it)
    chain_head = np.full(k, -1, dtype=np.int64)
    chain_next = np.full(chunks_out.shape[0], -1, dtype=np.int64)
    own_cells = np.empty(hashes, dtype=np.int64)
    item = np.empty(item_width, dtype=np.float64)
    top = 0
    for i in range(k):
        queue[top] = i
        top += 1
    while top > 0:
        top -= 1
        i = queue[top]
        row = sums[i]
        if row[0] != 1.0:
            continue
        src, dst, length, index = np.int64(row[1]), np.int64(row[2]), np.int64(row[3]), np.int64(row[4])
        if not (0 <= src < machines and 0 <= length <= capacity and index >= 0):
            continue
        own = False
        for t in range(hashes):
            own_cells[t] = copy * n_cells + _cell(seed, t, copy, src, index, per_table)
            if own_cells[t] == cells[a + i]:
                own = True
        if not own or row[item_width - 1] != _check(seed, row):
            continue
        first_cell = where[own_cells[0]]
        duplicate = False
        if first_cell >= 0:
            c = chain_head[first_cell - a]
            while c >= 0:
                if chunks_out[c, 1] == src and chunks_out[c, 4] == index:
                    duplicate = True
                    break
                c = chain_next[c]
        if duplicate:
            continue
        if found >= chunks_out.shape[0]:
            return -1
        chunks_out[found] = row
        if first_cell >= 0:
            chain_next[found] = chain_head[first_cell - a]
            chain_head[first_cell - a] = found
        found += 1
        for f in range(item_width):      # row may be one of the cells the item is taken from
            item[f] = row[f]
        for t in range(hashes):
            j = where[own_cells[t]]
            if j < 0:
                return -1            # the item's cell is empty: this average holds no such item
            j -= a
            for f in range(item_width):
                sums[j, f] -= item[f]
            if top >= queue.shape[0]:
                grown = np.empty(2 * queue.shape[0], dtype=np.int64)
                grown[:top] = queue[:top]
                queue = grown
            queue[top] = j
            top += 1
    for i in range(k):
        for f in range(item_width):
            if sums[i, f] != 0.0:
                return -1
    return found


@nb.njit(cache=True)
def _find_first(cells, lo, hi, cell):  # pragma: no cover - compiled
    """First index in the sorted ``cells[lo:hi]`` holding a value >= ``cell``."""
    a, b = lo, hi
    while a < b:
        mid = (a + b) // 2
        if cells[mid] < cell:
            a = mid + 1
        else:
            b = mid
    return a


@nb.njit(cache=True)
def _hashed_decode(group_offsets, cells, average, seed, copies, hashes, per_table, n_cells, machines, capacity,
                   max_senders, chunk_words):  # pragma: no cover - compiled
    n_groups = group_offsets.shape[0] - 1
    item_width = average.shape[1]
    status = np.zeros(n_groups, dtype=np.int64)
    # outputs: at most one message per peeled chunk, words at most chunk_words per chunk
    total = cells.shape[0]
    out_group = np.empty(total, dtype=np.int64)
    out_src = np.empty(total, dtype=np.int64)
    out_dst = np.empty(total, dtype=np.int64)
    out_len = np.empty(total, dtype=np.int64)
    out_words = np.empty(total * chunk_words, dtype=np.int64)
    n_out = 0
    n_words = 0
    shifts = np.array([0, 22, 43], dtype=np.uint64)
    where = np.full(copies * n_cells, -1, dtype=np.int64)   # cell -> its index in the current group
    filled_lo, filled_hi = 0, 0                               # the cells entered in ``where``
    for g in range(n_groups):
        lo, hi = group_offsets[g], group_offsets[g + 1]
        if lo < hi:     # cells outside 0..copies n_cells - 1 belong to no item: they stay out of ``where``
            for i in range(filled_lo, filled_hi):
                if 0 <= cells[i] < where.shape[0]:
                    where[cells[i]] = -1
            for i in range(lo, hi):
                if 0 <= cells[i] < where.shape[0]:
                    where[cells[i]] = i
            filled_lo, filled_hi = lo, hi
        smallest = np.inf
        scale = 1.0
        for i in range(lo, hi):
            v = average[i, 0]
            if v > 0.5 / (1 << 24) and v < smallest:
                smallest = v
            for f in range(item_width):
                if abs(average[i, f]) > scale:
                    scale = abs(average[i, f])
        count = 0 if smallest == np.inf else np.int64(np.rint(1.0 / smallest))
        if count < 1 or count > max_senders:
            status[g] = _BAD_COUNT
            continue
        chunks = np.empty((hi - lo, item_width), dtype=np.float64)
        found = -1
        for copy in range(copies):
            found = _peel_copy(cells, average, lo, hi, count, copy, seed, copies, hashes, per_table, n_cells,
                               machines, capacity, chunks, where)
            if found >= 0:
                break
        if found < 0:
            status[g] = _NOT_PEELED
            continue
        # sort the chunks by (source, index)
        order = np.argsort(chunks[:found, 1] * (capacity + 2) + chunks[:found, 4])
        chunks = chunks[order]
        start_out, start_words = n_out, n_words
        c = 0
        bad = _OK
        while c < found:
            src = np.int64(chunks[c, 1])
            e = c
            while e < found and np.int64(chunks[e, 1]) == src:
                e += 1
            if np.int64(chunks[c, 4]) != 0:
                bad = _MISSING_FIRST
                break
            dst, length = np.int64(chunks[c, 2]), np.int64(chunks[c, 3])
            n_chunks = max(1, (length + chunk_words - 1) // chunk_words)
            if e - c != n_chunks:
                bad = _BAD_CHUNKS
                break
            for i in range(n_chunks):
                if np.int64(chunks[c + i, 4]) != i:
                    bad = _BAD_CHUNKS
            if bad != _OK:
                break
            out_group[n_out] = g
            out_src[n_out] = src
            out_dst[n_out] = dst
            out_len[n_out] = length
            n_out += 1
            for pos in range(length):
                row = chunks[c + pos // chunk_words]
                w = pos % chunk_words
                bits = np.uint64(0)
                for limb in range(3):
                    bits |= np.uint64(np.int64(row[5 + 3 * w + limb])) << shifts[limb]
                out_words[n_words] = np.int64(bits)
                n_words += 1
            c = e
        if bad == _OK and n_out - start_out != count:
            bad = _WRONG_COUNT
        if bad == _OK:
            # re-encode: every chunk item, divided by the count, into its cells of every copy
            residual = average[lo:hi].copy()
            for i in range(found):
                row = chunks[i]
                src, index = np.int64(row[1]), np.int64(row[4])
                for copy in range(copies):
                    for t in range(hashes):
                        j = where[copy * n_cells + _cell(seed, t, copy, src, index, per_table)]
                        if j < 0:
                            bad = _NOT_AVERAGE
                            break
                        for f in range(item_width):
                            residual[j - lo, f] -= row[f] / count
            if bad == _OK:
                for i in range(hi - lo):
                    for f in range(item_width):
                        if abs(residual[i, f]) > 1e-9 * scale:
                            bad = _NOT_AVERAGE
        if bad != _OK:
            status[g] = bad
            n_out, n_words = start_out, start_words
    return status, out_group[:n_out], out_src[:n_out], out_dst[:n_out], out_len[:n_out], out_words[:n_words]


def decode_groups(layout: Layout, group: np.ndarray, cell: np.ndarray, average: np.ndarray, n_groups: int,
                  describe=None) -> Decoded:
    """Decode the averages of ``n_groups`` groups given as their non-zero cells (sorted by group,
    then cell). ``describe(g)`` names group ``g`` in the DecodeError raised on the first failure."""
    describe = describe or (lambda g: f"group {g}")
    group_offsets = np.searchsorted(group, np.arange(n_groups + 1)).astype(np.int64)
    if isinstance(layout, HashedLayout):
        n_cells = layout.cells
        status, g, src, dst, length, words = _hashed_decode(
            group_offsets, np.ascontiguousarray(cell, dtype=np.int64), np.ascontiguousarray(average, dtype=np.float64),
            layout.seed, layout.copies, layout.hashes, layout.cells_per_table, n_cells, layout.machines,
            layout.capacity, layout.max_senders, layout.chunk_words)
        bad = np.flatnonzero(status)
        if bad.size:
            first = int(bad[0])
            raise DecodeError(f"{describe(first)}: hashed: {_REASONS[int(status[first])]}")
        offsets = np.zeros(src.shape[0] + 1, dtype=np.int64)
        np.cumsum(length, out=offsets[1:])
        return Decoded(g, src, dst, offsets, words)
    return _decode_dense(layout, group_offsets, cell, average, describe)


def _decode_dense(layout: Layout, group_offsets: np.ndarray, cell: np.ndarray, average: np.ndarray,
                  describe) -> Decoded:
    """Any layout: densify each group's average and run the layout's own decode."""
    n_cells, item_width = layout_cells(layout)
    groups, src, dst, lengths, words = [], [], [], [], []
    for g in range(group_offsets.shape[0] - 1):
        lo, hi = group_offsets[g], group_offsets[g + 1]
        if lo == hi:
            continue
        table = np.zeros((n_cells, item_width))
        table[cell[lo:hi]] = average[lo:hi]
        try:
            messages = layout.decode(table.ravel())
        except DecodeError as exc:
            raise DecodeError(f"{describe(g)}: {exc}") from exc
        for m in messages:
            groups.append(g)
            src.append(m.src)
            dst.append(m.dst)
            lengths.append(m.words.shape[0])
            words.append(np.asarray(m.words, dtype=np.int64))
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Decoded(np.array(groups, dtype=np.int64), np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                   offsets, np.concatenate(words) if words else np.zeros(0, dtype=np.int64))


def items_upper_bound(layout: Layout, words: int, messages: int) -> int:
    """Items a batch of ``messages`` messages carrying ``words`` words in total can make."""
    if isinstance(layout, HashedLayout):
        return math.ceil(words / layout.chunk_words) + messages
    return messages
