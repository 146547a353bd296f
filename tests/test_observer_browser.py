"""The reader-as-observer widget in a real browser: JupyterLab driven headless by Debian's Chromium through
selenium and chromedriver, a scripted observer answering 200 trials with the keyboard (and the buttons), and
checks that every trial shown was the task's, that the saved CSV holds exactly the answers given, and that the
summary shown after the last block is the one the CSV gives.

Skipped where Chromium or chromedriver is missing, unless ``WNA_REQUIRE_BROWSER=1`` (``.ci/run`` sets it after
installing them with apt), in which case a missing browser fails the test.
"""
from __future__ import annotations

import base64
import csv
import io
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from wna_helpers.applications.observer import stimulus_normal
from wna_helpers.methods.trials import quantise, read_responses
from wna_helpers.methods.two_class_trials import two_class_from_responses, two_class_trials

CHROMIUM = os.environ.get("WNA_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WNA_CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRED = os.environ.get("WNA_REQUIRE_BROWSER") == "1"
N_TRIALS, BLOCK, SCALE, WEIGHT, SEED = 200, 50, 8, 0.1, 3

# The task, as the notebook runs it and as this test recomputes it.
DESIGN = """
import torch
from torch import nn
a = torch.zeros(1, 1, 28, 28); a[..., 6:22, 12:16] = 1      # a vertical bar
b = torch.zeros(1, 1, 28, 28); b[..., 12:16, 6:22] = 1      # a horizontal bar
net = nn.Sequential(nn.Flatten(), nn.Linear(784, 2))       # a network that matches the difference
with torch.no_grad():
    net[1].weight.copy_(torch.stack([(a - b).flatten(), (b - a).flatten()]))
    net[1].bias.zero_()
"""
TASK = (f"task = ObserverTask(a, b, class_names=('bar |', 'bar -'), weight={WEIGHT}, n_trials={N_TRIALS}, "
        f"block_size={BLOCK}, seed={SEED}, path='answers.csv', network=net)")


def _design() -> dict[str, object]:
    ns: dict[str, object] = {}
    exec(DESIGN, ns)  # noqa: S102 - the test's own constant
    return ns


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) and os.access(path, os.X_OK)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed"
    return None


@pytest.fixture(scope="module")
def browser_env():
    why = _missing()
    if why is not None:
        if REQUIRED:
            pytest.fail(f"WNA_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _notebook(folder: Path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(DESIGN + "from wna_helpers.applications.observer_task import ObserverTask\n"
                                          "from wna_helpers.book.observer_widget import ObserverWidget\n" + TASK
                                          + f"\nObserverWidget(task, scale={SCALE})"),
                # a cell below: JupyterLab's J ("select the cell below") must not take the answer keys
                nbformat.v4.new_markdown_cell("The cell below the task.")]
    nbformat.write(nb, folder / "task.ipynb")


def _start_lab(folder: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(folder / ".cfg"), "JUPYTER_RUNTIME_DIR": str(folder / ".rt"),
           "IPYTHONDIR": str(folder / ".ipython"), "JUPYTERLAB_SETTINGS_DIR": str(folder / ".settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(folder / ".workspaces")}
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
           "--ServerApp.ip=127.0.0.1", "--IdentityProvider.token=wna", f"--ServerApp.root_dir={folder}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
    log = open(folder / "lab.log", "w")
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited: {(folder / 'lab.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token=wna", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"JupyterLab did not answer within 120 s: {(folder / 'lab.log').read_text()[-2000:]}")


def _driver(folder: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--window-size=1400,1000", f"--user-data-dir={folder / '.chrome'}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def _wait(driver, script: str, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _decode(src: str) -> torch.Tensor:
    """A stimulus PNG data URL back to ``(1, 28, 28)`` in [0, 1] (the display scale undone)."""
    import numpy as np
    from PIL import Image

    raw = base64.b64decode(src.split(",", 1)[1])
    arr = np.array(Image.open(io.BytesIO(raw)))
    return torch.from_numpy(arr[::SCALE, ::SCALE].copy()).float()[None] / 255


def _scripted_choice(x: torch.Tensor, template: torch.Tensor) -> int:
    """A template observer with internal noise, on the image as displayed: 0 (A) when it looks like A."""
    d = float((x.flatten() - 0.5) @ template) + 0.29 * float(stimulus_normal(x[None]))
    return 0 if d > 0 else 1


@pytest.mark.slow
def test_reader_answers_200_trials_in_jupyterlab(browser_env, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    _notebook(tmp_path)
    port = _free_port()
    lab = _start_lab(tmp_path, port)
    driver = None
    try:
        driver = _driver(tmp_path)
        driver.get(f"http://127.0.0.1:{port}/lab/tree/task.ipynb?token=wna")
        _wait(driver, "const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
                      "const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
                      "return !!(k && k.status === 'idle');", 180, "the notebook's kernel to be idle")
        driver.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
        _wait(driver, "return document.querySelector('.wna-observer img.wna-stimulus[src^=\"data:\"]') !== null;",
              240, "the widget to show its first trial")
        root = driver.find_element(By.CSS_SELECTOR, ".wna-observer")
        root.click()

        ns = _design()
        a, b = ns["a"], ns["b"]
        template = (a - b).flatten()
        template = template / template.norm()
        trials = two_class_trials(a, b, weight=WEIGHT, n_samples=N_TRIALS, seed=SEED)
        given = []
        keys = {0: ["f", Keys.ARROW_LEFT], 1: ["j", Keys.ARROW_RIGHT]}
        for i in range(N_TRIALS):
            src = _wait(driver, f"const r = document.querySelector('.wna-observer');"
                                f"return r.dataset.trial === '{i}' ? r.querySelector('img.wna-stimulus').src : null;",
                        30, f"trial {i}")
            if i == 1 and os.environ.get("WNA_BROWSER_SCREENSHOT"):
                driver.save_screenshot(os.environ["WNA_BROWSER_SCREENSHOT"].replace(".png", "-trial.png"))
            shown = _decode(src)
            assert torch.equal(shown, quantise(trials.stimuli[i])), f"trial {i} shown is not the task's trial {i}"
            choice = _scripted_choice(shown, template)
            if i % 40 == 39:      # now and then with the mouse
                driver.find_element(By.CSS_SELECTOR, f".wna-answer-{choice}").click()
            else:
                ActionChains(driver).send_keys(keys[choice][i % 7 == 3]).perform()
            given.append(choice)
        _wait(driver, f"return document.querySelector('.wna-block[data-answered=\"{N_TRIALS}\"]') !== null;",
              60, "the summary of the last block")
        block = driver.find_element(By.CSS_SELECTOR, ".wna-block")
        shown_ci = json.loads(block.get_attribute("data-observer-ci"))
        shown_net = json.loads(block.get_attribute("data-network-ci"))
        shown_agreement = float(block.get_attribute("data-agreement"))
        if os.environ.get("WNA_BROWSER_SCREENSHOT"):    # to look at the widget: a PNG of the page at the end
            driver.execute_script("arguments[0].scrollIntoView();", block)
            driver.save_screenshot(os.environ["WNA_BROWSER_SCREENSHOT"])
        active = driver.execute_script("return window.jupyterapp.shell.currentWidget.content.activeCellIndex;")
        status = driver.find_element(By.CSS_SELECTOR, ".wna-observer .wna-status").text
        error = driver.find_element(By.CSS_SELECTOR, ".wna-observer .wna-error").text
    finally:
        if driver is not None:
            driver.quit()
        lab.terminate()
        try:
            lab.wait(20)
        except subprocess.TimeoutExpired:
            lab.kill()

    assert error == "" and status.startswith("Done"), (status, error)
    assert active == 0, "an answer key reached JupyterLab's notebook shortcuts (the active cell moved)"
    # the CSV holds exactly the answers given, in trial order, with response times
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["trial"]) for r in rows] == list(range(N_TRIALS))
    assert [int(r["response"]) for r in rows] == given                  # classes (0, 1): the choice is the class
    assert all(0 < float(r["rt"]) < 60 for r in rows)
    responses, rt = read_responses(tmp_path / "answers.csv", N_TRIALS)
    assert responses.tolist() == given and rt is not None and bool(torch.isfinite(rt).all())
    # the CI shown is the CI of the saved answers; the network's and the agreement are those of the same trials
    ours = two_class_from_responses(trials, responses).combined("noise").flatten()
    shown = torch.tensor([math.nan if v is None else v for v in shown_ci], dtype=torch.float64)
    assert bool(torch.isfinite(ours).all()), "the scripted observer errs on both classes: its CI is defined"
    assert torch.allclose(shown, ours, atol=1e-6, rtol=0)
    with torch.no_grad():
        lg = ns["net"](trials.stimuli)
    net_said = (lg[:, 1] > lg[:, 0]).long()
    net_ci = two_class_from_responses(trials, net_said).combined("noise").flatten()
    shown_n = torch.tensor([math.nan if v is None else v for v in shown_net], dtype=torch.float64)
    assert torch.allclose(shown_n, net_ci, atol=1e-6, rtol=0, equal_nan=True)
    assert shown_agreement == pytest.approx(float((net_said == responses).double().mean()), abs=1e-6)
