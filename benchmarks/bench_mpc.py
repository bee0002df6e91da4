"""Benchmark of the MPC simulator core: routing, sample sort at 10^7 words, the per-machine API.

Rows:

* routing: one all-to-all round at eps = 0.5 (every machine spreads its words over all machines,
  word j of machine i going to machine (i + j) mod q; about one word per message) timed three
  ways: ``mpc_sim.routing.route`` alone, a whole ``Simulator`` round (checks, routing, accounting)
  of a protocol sending that batch, and the baseline, a plain Python loop appending each
  message to its machine's inbox list (on the batch's numpy arrays, and again on Python lists,
  a faster pure-Python variant). Large baselines run on a prefix of the messages and are
  extrapolated linearly, as the table says.
* sort: ``mpc_sim.protocols.sample_sort.SampleSort`` end to end at eps = 0.5, in a fresh
  subprocess; peak memory is the growth of the process's peak RSS (``ru_maxrss``) over its
  resident size just before the run (input already in memory), divided by the input's bytes.
* per-machine API: a ring shift written in the per-machine style over many machines, in
  machine-steps (one call of ``step``) per second.

Usage: ``python benchmarks/bench_mpc.py [--quick] [--json PATH]``. Timings on a shared machine
are noisy: each is the best of a few repeats.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import tracemalloc
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mpc_sim import ClusterState, MessageBatch, MPCConfig, Protocol, Simulator, route

FULL = {"routing_sizes": (10**6, 10**7), "baseline_max_messages": 10**6, "sort_n": 10**7,
        "machine_n": 10**6, "machine_eps": 0.25, "repeats": 3}
QUICK = {"routing_sizes": (10**4, 10**5), "baseline_max_messages": 10**5, "sort_n": 10**5,
         "machine_n": 10**4, "machine_eps": 0.25, "repeats": 2}
SORT_MODULE = "mpc_sim.protocols.sample_sort"


# --- workloads --------------------------------------------------------------------------------------
def all_to_all_batch(n: int, eps: float = 0.5) -> tuple[MPCConfig, MessageBatch]:
    """One all-to-all round: word j of machine i (input placement) goes to machine (i + j) mod q,
    words for the same (source, destination) pair travelling as one message."""
    cfg = MPCConfig(n=n, eps=eps)
    q, s = cfg.machines, cfg.s
    source = np.arange(n, dtype=np.int64) // s
    position = np.arange(n, dtype=np.int64) % s
    destination = (source + position) % q
    order = np.lexsort((destination, source))           # by source, then destination, stably
    src, dst = source[order], destination[order]
    starts = np.flatnonzero(np.r_[True, (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])])
    offsets = np.r_[starts, n].astype(np.int64)
    words = np.arange(n, dtype=np.int64)[order]
    return cfg, MessageBatch(src[starts], dst[starts], offsets, words)


def python_route(src, dst, offsets, words, machines: int) -> list[list]:
    """The baseline: every message appended to its destination's inbox list, in sent order."""
    inboxes = [[] for _ in range(machines)]
    for j in range(len(dst)):
        inboxes[dst[j]].append((src[j], words[offsets[j]:offsets[j + 1]]))
    return inboxes


class SendBatch(Protocol):
    """Round 1 sends a prepared batch and keeps nothing; round 2 keeps the inboxes and stops."""

    name = "all-to-all"

    def __init__(self, batch: MessageBatch):
        self.batch = batch

    def rounds_bound(self, config: MPCConfig) -> int:
        return 1

    def batch_step(self, ctx, state, delivery):
        if ctx.round == 1:
            return ClusterState.empty(state.machines), self.batch
        return delivery.inbox_state(), MessageBatch.empty()


class RingShift(Protocol):
    """Per-machine style: for ``hops`` rounds every machine passes its memory to the next machine."""

    name = "ring-shift"

    def __init__(self, hops: int = 3):
        self.hops = hops

    def rounds_bound(self, config: MPCConfig) -> int:
        return self.hops

    def step(self, ctx, machine, memory, inbox):
        held = np.concatenate([memory, inbox.words]) if len(inbox) else memory
        if ctx.round > self.hops or held.shape[0] == 0:
            return held, []
        return held[:0], [((machine + 1) % ctx.machines, held)]


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# --- measurements -----------------------------------------------------------------------------------
def measure_routing(n: int, baseline_max_messages: int, repeats: int) -> dict:
    cfg, batch = all_to_all_batch(n)
    route(batch, cfg.machines)                           # compile / load the kernels
    route_seconds = _best(lambda: route(batch, cfg.machines), repeats)
    sim = Simulator(cfg)
    data = np.arange(n, dtype=np.int64)
    round_seconds = min(sim.run(SendBatch(batch), data).trace.rounds[0].wall_time for _ in range(repeats))

    m = min(batch.num_messages, baseline_max_messages)
    sub_words = int(batch.offsets[m])
    arrays = (batch.src[:m], batch.dst[:m], batch.offsets[:m + 1], batch.words[:sub_words])
    baseline_seconds = _best(lambda: python_route(*arrays, cfg.machines), 1)

    def on_lists():
        python_route(*(a.tolist() for a in arrays), cfg.machines)
    lists_seconds = _best(on_lists, 1)
    return {
        "n": n, "machines": cfg.machines, "s": cfg.s, "messages": batch.num_messages, "words": batch.num_words,
        "route_seconds": route_seconds, "route_words_per_s": batch.num_words / route_seconds,
        "round_seconds": round_seconds, "round_words_per_s": batch.num_words / round_seconds,
        "baseline_messages_measured": m, "baseline_extrapolated": m < batch.num_messages,
        "baseline_words_per_s": sub_words / baseline_seconds,
        "baseline_lists_words_per_s": sub_words / lists_seconds,
    }


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def sort_child(n: int, eps: float, seed: int) -> dict:
    """Run in a fresh process: SampleSort of n words, its time and peak memory."""
    from mpc_sim.protocols.sample_sort import SampleSort
    protocol = SampleSort()
    # compile every kernel before measuring, including the threaded routing path (>= 2**15
    # messages per thread): LLVM's memory would otherwise count as the sort's
    warm = min(n, 2**20)
    Simulator(protocol.default_config(warm, eps)).run(protocol, np.random.default_rng(seed).integers(0, 2**62, warm))
    cfg = protocol.default_config(n, eps)
    data = np.random.default_rng(seed).integers(0, 2**62, n)
    rss_before = _rss_bytes()
    start = time.perf_counter()
    result = Simulator(cfg).run(protocol, data, seed=seed)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()       # second, separate run: the peak of numpy allocations alone
    Simulator(cfg).run(protocol, data, seed=seed)
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"n": n, "seconds": seconds, "rounds": result.trace.num_rounds, "rounds_bound": result.trace.rounds_bound,
            "sorted": bool(np.array_equal(result.output, np.sort(data))), "problems": result.trace.check(),
            "peak_over_input": (peak - rss_before) / data.nbytes, "traced_peak_over_input": traced_peak / data.nbytes,
            "s": cfg.s, "machines": cfg.machines}


def measure_sort(n: int, eps: float = 0.5, seed: int = 0) -> dict:
    """SampleSort in a subprocess (a clean peak RSS); ``{"error": ...}`` if it cannot run."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, __file__, "--sort-child", str(n), str(eps), str(seed)],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()
        return {"n": n, "error": f"{SORT_MODULE}.SampleSort failed: {lines[-1]}"}
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    if not row["sorted"] or row["problems"]:
        row["error"] = f"SampleSort output wrong (sorted: {row['sorted']}, trace problems: {row['problems']})"
    return row


def measure_per_machine(n: int, eps: float, hops: int = 3, repeats: int = 1) -> dict:
    cfg = MPCConfig(n=n, eps=eps)
    sim = Simulator(cfg, mode="machine")
    data = np.arange(n, dtype=np.int64)
    seconds = _best(lambda: sim.run(RingShift(hops), data), repeats)
    steps = cfg.machines * (hops + 1)
    return {"n": n, "eps": eps, "machines": cfg.machines, "machine_steps": steps, "seconds": seconds,
            "steps_per_s": steps / seconds}


# --- report -----------------------------------------------------------------------------------------
def run(quick: bool) -> dict:
    sizes = QUICK if quick else FULL
    load_before = os.getloadavg()[0]
    routing = [measure_routing(n, sizes["baseline_max_messages"], sizes["repeats"]) for n in sizes["routing_sizes"]]
    sort = measure_sort(sizes["sort_n"])
    machine = measure_per_machine(sizes["machine_n"], sizes["machine_eps"], repeats=sizes["repeats"])
    largest = routing[-1]
    return {
        "quick": quick, "cpus": os.cpu_count(), "load_average": [load_before, os.getloadavg()[0]],
        "routing": routing, "sort": sort, "per_machine": machine,
        "routing_words_per_s": largest["route_words_per_s"],
        "round_words_per_s": largest["round_words_per_s"],
        "baseline_words_per_s": largest["baseline_words_per_s"],
        "routing_speedup": largest["route_words_per_s"] / largest["baseline_words_per_s"],
        "routing_speedup_vs_lists": largest["route_words_per_s"] / largest["baseline_lists_words_per_s"],
        "sort_n": sort["n"],
        "sort_1e7_seconds": sort.get("seconds"),
        "sort_1e7_peak_over_input": sort.get("peak_over_input"),
        "sort_1e7_traced_peak_over_input": sort.get("traced_peak_over_input"),
        "sort_error": sort.get("error"),
        "per_machine_steps_per_s": machine["steps_per_s"],
    }


def render(result: dict, console: Console) -> None:
    table = Table(title="mpc_sim core benchmark" + (" (--quick sizes)" if result["quick"] else ""))
    for col in ("measurement", "size", "result", "vs baseline", "note"):
        table.add_column(col, justify="left" if col in ("measurement", "note") else "right")
    for row in result["routing"]:
        size = f"{row['words']:.1e} words, q={row['machines']}"
        note = (f"baseline on the first {row['baseline_messages_measured']:.0e} messages, extrapolated linearly"
                if row["baseline_extrapolated"] else "baseline on the whole batch")
        table.add_row("route() alone", size, f"{row['route_words_per_s']:.3g} words/s",
                      f"{row['route_words_per_s'] / row['baseline_words_per_s']:.0f}x", "best of repeats")
        table.add_row("Simulator round (checks + route + stats)", size, f"{row['round_words_per_s']:.3g} words/s",
                      f"{row['round_words_per_s'] / row['baseline_words_per_s']:.0f}x", "")
        table.add_row("baseline: Python loop on numpy arrays", size, f"{row['baseline_words_per_s']:.3g} words/s",
                      "1x", note)
        table.add_row("baseline: Python loop on lists (incl. tolist)", size,
                      f"{row['baseline_lists_words_per_s']:.3g} words/s",
                      f"{row['baseline_lists_words_per_s'] / row['baseline_words_per_s']:.1f}x", note)
    sort = result["sort"]
    if "seconds" in sort:
        table.add_row("SampleSort end to end, eps = 0.5", f"{sort['n']:.0e} words", f"{sort['seconds']:.2f} s",
                      "", f"{sort['rounds']} rounds (bound {sort['rounds_bound']})")
        table.add_row("SampleSort peak memory / input bytes", f"{sort['n']:.0e} words",
                      f"{sort['peak_over_input']:.2f}", "",
                      "ru_maxrss growth over RSS before the run (coarse at small n)")
        table.add_row("SampleSort peak array memory / input bytes", f"{sort['n']:.0e} words",
                      f"{sort['traced_peak_over_input']:.2f}", "", "tracemalloc peak of a second run (numpy arrays)")
    if sort.get("error"):
        table.add_row("[bold red]SampleSort FAILED[/]", f"{sort['n']:.0e} words", "-", "", sort["error"])
    pm = result["per_machine"]
    table.add_row("per-machine API (ring shift)", f"{pm['machines']} machines", f"{pm['steps_per_s']:.3g} steps/s", "",
                  f"{pm['machine_steps']} machine-steps in {pm['seconds']:.2f} s")
    console.print(table)
    console.print(f"route() vs baseline: {result['routing_speedup']:.0f}x (vs list baseline "
                  f"{result['routing_speedup_vs_lists']:.0f}x); {result['cpus']} CPUs, load average "
                  f"{result['load_average'][0]:.1f} before / {result['load_average'][1]:.1f} after: shared machine, "
                  "timings noisy.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (seconds), for smoke tests")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--sort-child", nargs=3, metavar=("N", "EPS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sort_child:
        n, eps, seed = args.sort_child
        print(json.dumps(sort_child(int(n), float(eps), int(seed))))
        return 0
    result = run(args.quick)
    render(result, Console(width=max(Console().width, 150)))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 1 if result["sort_error"] else 0


if __name__ == "__main__":
    sys.exit(main())
