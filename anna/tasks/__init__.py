"""The paper's tasks: generators and plain-numpy reference solvers (Match2, k-hop, 3-SUM).

Each task has a fast reference solver, a brute-force solver straight from the definition (the
oracle the fast one is tested against), and seeded generators (same seed, same output).
"""
from anna.tasks.khop import (
    BOTTOM,
    find_k,
    find_k_bruteforce,
    generate_khop,
    generate_khop_batch,
    generate_khop_mixed,
    hop_k,
    hop_k_bruteforce,
    khop_vocab_size,
)
from anna.tasks.match2 import (
    generate_match2,
    generate_match2_balanced,
    match2_labels,
    match2_labels_bruteforce,
)
from anna.tasks.threesum import (
    generate_three_sum,
    has_three_sum,
    three_sum,
    three_sum_bruteforce,
)

__all__ = [
    "BOTTOM",
    "find_k",
    "find_k_bruteforce",
    "generate_khop",
    "generate_khop_batch",
    "generate_khop_mixed",
    "generate_match2",
    "generate_match2_balanced",
    "generate_three_sum",
    "has_three_sum",
    "hop_k",
    "hop_k_bruteforce",
    "khop_vocab_size",
    "match2_labels",
    "match2_labels_bruteforce",
    "three_sum",
    "three_sum_bruteforce",
]
