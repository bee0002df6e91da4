"""How fast the explorer page loads and steps in a real browser (headless chromium), as the
cluster grows: page size, time to write it, time to load it, time per step.

Protocol: a relay (every machine passes everything it holds to the next machine, ``rounds``
times), so a run of any number of machines and rounds takes little simulation time. Times in
the browser: ``load`` is the wall time of loading the page (WebDriver ``get``, which waits for
the load event), ``ready`` the time from navigation start to the end of the page's script (data
parsed, first round drawn); ``step`` (mean, ``max``) is the time ``show(round)`` takes (canvas drawing, the
numbers and the machine panel), over every round; ``+frame`` adds the wait for the next
animation frame (headless chromium paces frames at about 60 per second); ``DOM`` counts the
page's elements (the same at every size: strips are canvases, not one element per machine).

    python benchmarks/explore_page.py [--machines 100000] [--rounds 100] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402

from mpc_sim import MPCConfig, Protocol  # noqa: E402
from mpc_sim.explore import explore_data, explore_html  # noqa: E402
from mpc_sim.render import compact_table  # noqa: E402
from mpc_sim.state import ClusterState, MessageBatch  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "explore_page.json"


@dataclass(frozen=True)
class Relay(Protocol):
    """Every machine sends all it holds to one other machine, ``rounds`` times: the next one
    (``pattern="next"``) or the one a fresh random permutation of the machines says
    (``"random"``, which fills the who-talks-to-whom matrix: the largest page)."""

    rounds: int = 10
    pattern: str = "random"
    name = "relay"

    def rounds_bound(self, config: MPCConfig) -> int:
        return self.rounds

    def fanout_bound(self, config: MPCConfig) -> int:
        return 1

    def generate_input(self, config: MPCConfig, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 1000, size=config.n, dtype=np.int64)

    def batch_step(self, ctx, state: ClusterState, delivery) -> tuple[ClusterState, MessageBatch]:
        inbox = delivery.inbox_state()
        hold = state if state.words.size else inbox       # after round 1 nothing is kept: all is relayed
        if ctx.round > self.rounds:
            return hold, MessageBatch.empty(state.dtype)
        sizes = hold.sizes()
        src = np.flatnonzero(sizes > 0).astype(np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes[src])]).astype(np.int64)
        if self.pattern == "next":
            dst = (src + 1) % ctx.machines
        else:
            dst = np.random.default_rng([ctx.seed, ctx.round]).permutation(ctx.machines)[src].astype(np.int64)
        return ClusterState.empty(ctx.machines, state.dtype), MessageBatch(src, dst, offsets, hold.words)

    def verify(self, data: np.ndarray, output: np.ndarray) -> bool:
        return bool(np.array_equal(np.sort(output), np.sort(data)))      # every word still somewhere


def relay_config(machines: int, eps: float = 0.2) -> MPCConfig:
    """About ``machines`` machines, each holding ``s ~ n**eps`` words: ``n = machines**(1/(1-eps))``."""
    return MPCConfig(n=math.ceil(machines ** (1 / (1 - eps))), eps=eps)


def relay_page(machines: int, rounds: int, seed: int = 0, pattern: str = "random"):
    """The explorer's data for a relay run: ``(page, config, protocol, data, seconds)``."""
    protocol = Relay(rounds, pattern)
    config = relay_config(machines)
    data = protocol.generate_input(config, seed)
    start = time.perf_counter()
    page = explore_data(protocol, config, data, seed=seed)
    return page, config, protocol, data, time.perf_counter() - start


def chrome():
    """Headless chromium through Debian's chromedriver."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    options = Options()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,1400"):
        options.add_argument(arg)
    binary = shutil.which("chromium")
    if binary:
        options.binary_location = binary
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


_STEP_TIMES = """
const done = arguments[arguments.length - 1], times = [], framed = [];
(async () => { for (let i = 0; i < D.rounds.length; i++) { const a = performance.now(); show(i);
  times.push(performance.now() - a); await new Promise(r => requestAnimationFrame(() => r()));
  framed.push(performance.now() - a); } done([times, framed]); })();
"""


def measure(driver, path: Path) -> dict:
    """Load the page at ``path`` and time it (milliseconds)."""
    start = time.perf_counter()
    driver.get(path.resolve().as_uri())
    load = (time.perf_counter() - start) * 1000
    ready = driver.execute_script("return window.explorerReadyMs")
    driver.set_script_timeout(600)
    times, framed = driver.execute_async_script(_STEP_TIMES)
    return {"load_ms": load, "ready_ms": ready, "step_ms_mean": float(np.mean(times)),
            "step_ms_max": float(np.max(times)), "step_frame_ms_mean": float(np.mean(framed)),
            "dom_elements": driver.execute_script("return document.getElementsByTagName('*').length")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--json", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    driver = chrome()
    try:
        with tempfile.TemporaryDirectory() as folder:
            for machines in args.machines:
                page, config, _, _, seconds = relay_page(machines, args.rounds)
                path = Path(folder) / f"relay{machines}.html"
                start = time.perf_counter()
                path.write_text(explore_html(page))
                write = time.perf_counter() - start
                rows.append({"machines": config.machines, "rounds": page["num_rounds"], "s": config.s,
                             "page_bytes": path.stat().st_size, "run_and_gather_s": seconds, "write_s": write,
                             **measure(driver, path)})
    finally:
        driver.quit()
    headers = ["machines", "rounds", "MB", "gather s", "load ms", "ready ms", "step ms", "max ms", "+frame ms",
               "DOM"]
    cells = [[str(r["machines"]), str(r["rounds"]), f"{r['page_bytes'] / 2**20:.1f}", f"{r['run_and_gather_s']:.1f}",
              f"{r['load_ms']:.0f}", f"{r['ready_ms']:.0f}", f"{r['step_ms_mean']:.1f}", f"{r['step_ms_max']:.1f}",
              f"{r['step_frame_ms_mean']:.1f}", str(r["dom_elements"])] for r in rows]
    table = compact_table("explorer page in headless chromium (times distorted by other load on the machine)",
                          headers, cells)
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
