"""The explorer page in a real browser (headless chromium driven by Selenium): load it, step
through rounds with the arrow keys, the buttons and the timeline, pick machines, and check that
every number shown equals the trace's (and the simulator's states for a machine's memory).

CI installs chromium, chromium-driver and selenium (.ci/run); without them these tests fail
when ``CI`` is set and are skipped (saying why) otherwise."""
import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from mpc_sim import Simulator, make_protocol
from mpc_sim import explore
from mpc_sim.explore import explore_data, explore_html
from mpc_sim.protocol import spread_input

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "explore_page.py"


def _missing() -> str | None:
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -e '.[dev]')"
    for program, package in (("chromium", "chromium"), ("chromedriver", "chromium-driver")):
        if shutil.which(program) is None:
            return f"{program} is not on PATH (apt-get install {package})"
    return None


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("explore_page", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module             # its dataclass needs its module registered
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def browser(bench):
    missing = _missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must drive the explorer in a browser (.ci/run installs it)")
        pytest.skip(f"{missing}; not in CI, so skipped here (CI fails instead)")
    driver = bench.chrome()
    yield driver
    driver.quit()


def by_id(driver, name):
    return driver.find_element("id", name)


def numbers(driver, root="numbers"):
    cells = by_id(driver, root).find_elements("css selector", "[data-key]")
    return {cell.get_attribute("data-key"): cell.text for cell in cells}


def assert_round_shown(driver, trace, r):
    assert by_id(driver, "which").text == f"round {r} of {trace.num_rounds}"
    stats, shown = trace.rounds[r - 1], numbers(driver)
    for key in ("round", "max_memory", "max_sent", "max_received", "total_words", "messages", "active_machines"):
        assert int(shown[key]) == getattr(stats, key), key
    assert abs(float(shown["mean_memory"]) - stats.mean_memory) <= 0.05 + 1e-9


def open_page(driver, path, text, frame=False):
    """Load ``text`` from ``path``; with ``frame``, switch into its (notebook) iframe."""
    path.write_text(text)
    driver.get(path.resolve().as_uri())
    if frame:
        driver.switch_to.frame(driver.find_element("tag name", "iframe"))
    assert driver.execute_script("return typeof window.explorerReadyMs") == "number"   # the script ran through
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.fixture(scope="module")
def sort_run():
    protocol = make_protocol("sort")
    config = protocol.default_config(3000, 0.5)
    data = protocol.generate_input(config, seed=5)
    result = Simulator(config, mode="machine").run(protocol, data, seed=5, record_states=True, record_messages=True)
    page = explore_data(protocol, config, data, seed=5, watch=[0, 5])
    return protocol, config, data, result, page


def test_stepping_with_keys_buttons_and_the_timeline_shows_the_trace_numbers(browser, sort_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    *_, result, page = sort_run
    trace = result.trace
    open_page(browser, tmp_path / "sort.html", explore_html(page))
    body = browser.find_element("tag name", "body")
    rounds = trace.num_rounds
    assert rounds >= 4
    assert_round_shown(browser, trace, 1)
    for r in range(2, rounds + 1):              # forward: keys and the button in turn
        body.send_keys(Keys.ARROW_RIGHT) if r % 2 else by_id(browser, "next").click()
        assert_round_shown(browser, trace, r)
    body.send_keys(Keys.ARROW_RIGHT)            # past the last round: stays there
    assert_round_shown(browser, trace, rounds)
    by_id(browser, "prev").click()
    assert_round_shown(browser, trace, rounds - 1)
    body.send_keys(Keys.ARROW_LEFT)
    assert_round_shown(browser, trace, rounds - 2)
    timeline = by_id(browser, "timeline")       # click the middle of round 2's bar
    width = timeline.size["width"]
    ActionChains(browser).move_to_element_with_offset(timeline, int((1.5 / rounds - 0.5) * width), 0).click().perform()
    assert_round_shown(browser, trace, 2)


def test_one_machine_shows_its_memory_and_inbox_or_says_it_was_not_recorded(browser, sort_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    protocol, config, data, result, page = sort_run
    open_page(browser, tmp_path / "sort.html", explore_html(page, start_round=3))
    box = by_id(browser, "machine-id")
    box.clear()
    box.send_keys("5", Keys.ENTER)
    initial = spread_input(protocol.validate_input(config, data), config)
    for r in (3, 4):
        kept = result.states[r - 2].memory(5) if r > 1 else initial.memory(5)
        shown = numbers(browser, "machine")
        assert by_id(browser, "machine-title").text == f"machine 5 at round {r}"
        assert int(shown["kept-count"]) == kept.shape[0]
        assert by_id(browser, "machine-kept").text.split() == [str(w) for w in kept.tolist()]
        inbox_words = int(shown["inbox-words"])
        assert inbox_words == result.trace.messages[r - 2].received(config.machines)[5]
        assert int(shown["memory"]) == kept.shape[0] + inbox_words
        recorded = page["rounds"][r - 1]["watched"]["5"]
        assert int(shown["inbox-count"]) == len(recorded["inbox"])
        assert int(shown["outbox-count"]) == len(recorded["sent"])
        assert int(shown["sent"]) == sum(w for _, w in recorded["sent"])
        by_id(browser, "next").click()
    box.clear()
    box.send_keys("7", Keys.ENTER)              # not watched: the page says so
    assert "memory and inbox of machine 7 were not recorded" in by_id(browser, "machine-missing").text
    assert "--watch 7" in by_id(browser, "machine-missing").text
    box.clear()
    box.send_keys(str(config.machines), Keys.ENTER)
    assert f"no machine {config.machines}" in by_id(browser, "machine-missing").text
    strip = by_id(browser, "memory")            # click machine 9's cell of the memory strip
    width, cells = strip.size["width"], config.machines
    ActionChains(browser).move_to_element_with_offset(strip, int((9.5 / cells - 0.5) * width), 0).click().perform()
    assert by_id(browser, "machine-title").text.startswith("machine 9 at round")
    assert by_id(browser, "machine-id").get_attribute("value") == "9"


def test_a_served_page_records_an_unwatched_machine_on_demand(browser, sort_run):
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    protocol, config, data, result, page = sort_run
    view = explore.explore(protocol, config, data, seed=5, watch=[0], start_round=2)
    server, url = view.serve()
    try:
        browser.get(url)
        box = by_id(browser, "machine-id")
        box.clear()
        box.send_keys("7", Keys.ENTER)
        WebDriverWait(browser, 60).until(lambda d: d.find_elements("id", "machine-kept"))
        assert int(numbers(browser, "machine")["kept-count"]) == result.states[0].memory(7).shape[0]   # round 2
    finally:
        server.shutdown()
        server.server_close()


def test_blocked_strips_pick_the_first_machine_of_a_block(browser, tmp_path, monkeypatch):
    from selenium.webdriver.common.action_chains import ActionChains
    monkeypatch.setattr(explore, "MAX_STRIP", 7)
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(2000, 0.5)
    page = explore_data(protocol, config, protocol.generate_input(config, seed=1), seed=1)
    block, cells = page["strip_block"], len(page["rounds"][0]["memory"])
    open_page(browser, tmp_path / "blocked.html", explore_html(page))
    strip = by_id(browser, "sent")
    ActionChains(browser).move_to_element_with_offset(strip, int((2.5 / cells - 0.5) * strip.size["width"]), 0) \
        .click().perform()
    assert by_id(browser, "machine-title").text == f"machine {2 * block} at round 1"
    assert f"largest in block {2 * block} .. {3 * block - 1}" in by_id(browser, "machine").text
    assert int(numbers(browser, "machine")["sent"]) == page["rounds"][0]["sent"][2]


def test_the_jupyter_view_is_the_same_working_page_in_an_iframe(browser, sort_run, tmp_path):
    from selenium.webdriver.common.keys import Keys
    *_, result, page = sort_run
    view = explore.Explorer(page, start_round=2)
    try:
        open_page(browser, tmp_path / "notebook.html",
                  f"<html><body><h1>a notebook</h1>{view._repr_html_()}</body></html>", frame=True)
        assert_round_shown(browser, result.trace, 2)
        by_id(browser, "next").click()
        assert_round_shown(browser, result.trace, 3)
        browser.find_element("tag name", "body").send_keys(Keys.ARROW_LEFT)
        assert_round_shown(browser, result.trace, 2)
    finally:
        browser.switch_to.default_content()


def test_the_compiled_section_shows_alignment_and_collisions(browser, tmp_path):
    from reductions.compile import compile_mpc
    from reductions.explore import compiled_section
    protocol = make_protocol("prefix-sum")
    config = protocol.default_config(64, 0.5)
    data = protocol.generate_input(config, seed=0)
    page = explore_data(protocol, config, data)
    model = compile_mpc(protocol, config, rounds=page["num_rounds"], attention="anna")
    page["compiled"] = compiled_section(model, data, query=0)
    open_page(browser, tmp_path / "compiled.html", explore_html(page))
    aligned = [int(e.text) for e in by_id(browser, "compiled-alignment").find_elements("css selector", "[data-key]")]
    assert aligned == [row[2] for row in page["compiled"]["alignment"] if row[1] == 1] == [config.machines]
    layer_rows = by_id(browser, "compiled-layers").find_elements("css selector", "tr")[1:]
    assert [int(row.find_element("tag name", "td").text) for row in layer_rows] == \
        [i for i in range(model.plan.depth) if model.plan.round_of_layer(i)[0] == 1]
    shown = {int(row.get_attribute("data-head")): int(row.find_element("css selector", "[data-key=total]").text)
             for row in by_id(browser, "collisions").find_elements("css selector", "tr[data-head]")}
    run = model.run(data, engine="dense")
    assert shown == {h: int(run.forward.counts[0][h][0]) for h in shown} and sum(shown.values()) > 0


def test_a_large_page_loads_and_steps_with_a_fixed_number_of_elements(browser, bench, tmp_path):
    page, config, protocol, data, _ = bench.relay_page(20000, 30)
    assert page["strip_block"] > 1 and page["num_rounds"] == 30
    path = tmp_path / "relay.html"
    path.write_text(explore_html(page))
    timing = bench.measure(browser, path)
    print(f"\nexplorer, {config.machines} machines x 30 rounds, {path.stat().st_size / 2**20:.1f} MB: "
          f"load {timing['load_ms']:.0f} ms, step {timing['step_ms_mean']:.1f} ms (max {timing['step_ms_max']:.1f})")
    assert timing["dom_elements"] < 200                 # canvases: no element per machine or block
    assert_round_shown(browser, Simulator(config).run(protocol, data).trace, 30)   # measure() stepped to the end
