"""`modelbuild graph`: the target graph (or the action graph) with each node's state from the cache,
as dot, mermaid, and one self-contained HTML page, opened here in a real headless Chromium: every
target of the example is a node, and clicking one shows what `modelbuild show` prints."""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import run_cli

CHROMIUM, DRIVER = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


def targets(ws: Path) -> list[str]:
    proc = run_cli(ws, "query", "//...", "--output", "label")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_dot_and_mermaid_give_every_target_with_its_state(example):
    ws, _ = example
    everything = targets(ws)
    dot = run_cli(ws, "graph", "--format", "dot")
    assert dot.returncode == 0, dot.stderr
    states = dict(re.findall(r'^  "(//[^"]+)" \[label="[^"]*\\n([a-z ]+)"', dot.stdout, re.M))
    assert sorted(states) == everything
    assert {s for label, s in states.items() if label.endswith(("convnet", ":transformer", ":sincos", ":convrelu"))} == {"source"}
    assert set(states.values()) == {"source", "built"}  # the session built the example
    assert '"//:transformer" -> "//:transformer_xnnpack";' in dot.stdout
    mermaid = run_cli(ws, "graph", "//:transformer_xnnpack", "--actions", "--format", "mermaid")
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("graph LR\n"), mermaid.stderr
    assert re.search(r'n\d\["export //:transformer<br/>export<br/>built"\]:::built', mermaid.stdout), mermaid.stdout


@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(DRIVER).exists()),
                    reason="Chromium is not installed (.ci/run installs Debian's chromium and chromium-driver)")
def test_the_html_page_shows_every_target_and_what_show_prints_for_a_clicked_one(example, tmp_path: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    ws, _ = example
    page = tmp_path / "graph.html"
    proc = run_cli(ws, "graph", "--format", "html", "--output", str(page))
    assert proc.returncode == 0, proc.stderr
    assert "http://" not in page.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--window-size=1400,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        browser.get(page.as_uri())
        nodes = {n.get_attribute("data-node"): n for n in browser.find_elements(By.CSS_SELECTOR, ".node")}
        assert sorted(nodes) == targets(ws)
        nodes["//:transformer_xnnpack"].click()
        assert browser.find_element(By.ID, "title").text == "//:transformer_xnnpack"
        shown = browser.find_element(By.ID, "details").text
        assert "//:transformer_xnnpack  executorch_program()" in shown and "artifact: out/transformer_xnnpack.pte" in shown
        assert re.search(r"partition: cached, ran in [\d.]+s  action [0-9a-f]{12}", shown), shown
        assert "selected" in nodes["//:transformer_xnnpack"].get_attribute("class")
        screenshot = tmp_path / "graph.png"
        assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
        print(f"\nscreenshot: {screenshot}")
    finally:
        browser.quit()
