"""The notebook as a user sees it: JupyterLab on 127.0.0.1 with a token, headless Chromium (Debian's
`chromium`, driven by Playwright) runs every cell with a tiny CONFIG, the outputs are checked in
the page (no error, plots as images, progress bars), the generation panel's button gives one
sample per model, and a screenshot is saved in the test's folder."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import nbformat
import pytest
from test_notebook import NOTEBOOK, tiny_config

# Chromium as root on a closed network: no sandbox, no GPU, and none of its own connections out.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
RUN_SECONDS = 300  # the tiny notebook runs in about a minute; a loaded machine gets slack
SCREENSHOT = "notebook_in_jupyterlab.png"


def chromium_or_skip() -> str:
    """Debian's chromium (.ci/run installs it); missing outside CI skips, in CI fails."""
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed: apt-get install -y chromium")
    return found


def parameterized_copy(folder: Path, config: dict) -> Path:
    """The notebook with the tiny CONFIG injected after its parameters cell, as papermill does."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    notebook = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), {"CONFIG_OVERRIDES": config})
    path = folder / NOTEBOOK.name
    nbformat.write(notebook, path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def jupyterlab(root: Path, token: str) -> Iterator[str]:
    """A JupyterLab server on 127.0.0.1 serving `root`, with its settings and state inside
    `root/.jupyter`; yields its base URL and stops it (and its kernels) afterwards."""
    state = root / ".jupyter"
    settings = state / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news pop-up
    port = free_port()
    environment = {**os.environ, "JUPYTER_CONFIG_DIR": str(state / "config"),
                   "JUPYTER_RUNTIME_DIR": str(state / "runtime"), "JUPYTER_DATA_DIR": str(state / "data")}
    log = (root / "jupyterlab.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         f"--LabApp.user_settings_dir={state / 'settings'}",
         f"--LabApp.workspaces_dir={state / 'workspaces'}"],
        env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (root / "jupyterlab.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.5)
        yield url
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


PROMPTS_JS = "Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(e => e.textContent.trim())"
OUTPUT_TEXT_JS = "Array.from(document.querySelectorAll('.jp-OutputArea-output')).map(e => e.textContent)"


def wait_for_all_cells(page, seconds: float) -> list[str]:
    """Poll until every code cell shows an execution count; fail at once on a traceback."""
    deadline = time.monotonic() + seconds
    while True:
        prompts = page.evaluate(PROMPTS_JS)
        errors = [text for text in page.evaluate(OUTPUT_TEXT_JS) if "Traceback (most recent call last)" in text]
        assert not errors, f"a cell failed:\n{errors[0][-3000:]}"
        if prompts and all(re.fullmatch(r"\[\d+\]:", prompt) for prompt in prompts):
            return prompts
        assert time.monotonic() < deadline, f"cells not finished after {seconds:.0f} s: {prompts}"
        time.sleep(1)


@pytest.mark.slow
def test_notebook_runs_in_jupyterlab_with_plots_progress_and_the_generation_panel(tmp_path):
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    config = tiny_config(tmp_path)
    notebook = parameterized_copy(root, config)
    token = secrets.token_hex(16)
    with jupyterlab(root, token) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/lab/tree/{notebook.name}?token={token}")
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=90_000)

        page.locator("#jp-MainMenu").get_by_text("Run", exact=True).click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
        prompts = wait_for_all_cells(page, RUN_SECONDS)
        code_cells = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
        assert len(prompts) == len(code_cells)

        # The plots render as images; the training progress bars show loss and tokens/s.
        images = page.locator(".jp-OutputArea-output img")
        assert images.count() >= 4
        assert all(width > 100 for width in images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)"))
        # (keras-tuner clears the cell at each trial, so the last family's training bar remains)
        assert page.locator(".widget-hprogress").count() >= 1
        labels = " ".join(page.locator(".widget-label").all_text_contents())
        assert re.search(r"epoch \d/2  step \d/6  loss \d+\.\d+  [\d,]+ tokens/s", labels), labels

        # The panel: one click, one sample per trained model plus the n-gram baseline.
        button = page.get_by_role("button", name="Generate side by side")
        button.scroll_into_view_if_needed()
        button.click()
        samples = page.locator(".panel-sample")
        expected = [*config["models_to_run"], "kn_3gram"]
        samples.nth(len(expected) - 1).wait_for(timeout=120_000)
        assert samples.evaluate_all("s => s.map(e => e.dataset.model)") == expected
        assert all("ms/token" in text for text in samples.all_text_contents())
        assert page.locator(".panel-error").count() == 0
        samples.first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / SCREENSHOT))
        browser.close()
    assert (tmp_path / SCREENSHOT).stat().st_size > 10_000
