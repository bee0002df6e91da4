"""ANNA attention (Algorithm 1) against exact attention, and the ANNA definition checked.

Keys are points in 16 dimensions; every query is planted within distance r of one key. With
(z, ell) from Theorem 3.4 the LSH attention puts weight only on keys within c*r and on every key
within r: the checker confirms both conditions, and the output is the planted key's value.

    python examples/02_anna_attention.py
"""
import numpy as np
from rich.console import Console

from anna import E2LSH, anna_attention, anna_weights, check_anna, theory_parameters

console = Console()
rng = np.random.default_rng(0)
n, dim, r, c = 256, 16, 0.05, 20.0
keys = rng.standard_normal((n, dim)) * 4.0                   # keys far apart (distances ~ 16)
queries = keys + rng.standard_normal((n, dim)) * (r / (4 * np.sqrt(dim)))   # within r of their key
values = np.eye(n)                                           # value of key j: the j-th basis vector

params = theory_parameters(n, r, c, E2LSH(width=4 * r))
lsh = params.config(E2LSH(width=4 * r))
console.print(f"Theorem 3.4 parameters: z = {params.z}, ell = {params.ell}, rho = {params.rho:.3f}, "
              f"failure bound eta = {params.eta_bound:.2e}")

out, counts = anna_attention(queries, keys, values, lsh, seed=1)
found = out.argmax(axis=1)
console.print(f"queries answered by their own key: {(found == np.arange(n)).mean():.3f}; "
              f"queries with no neighbour: {(counts == 0).sum()}")

weights = anna_weights(queries, keys, lsh, seed=1)
report = check_anna(queries, keys, weights, r=r, c=c, ell=lsh.ell)
console.print(report)
assert report.holds and (found == np.arange(n)).all()
