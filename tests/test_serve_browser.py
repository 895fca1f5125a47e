"""``amsweep serve`` in a real browser: Debian's headless chromium, driven through its chromedriver.

A driver runs a tiny sweep in a subprocess with slowed cells (a flush after each), ``amsweep serve``
watches the cube, and the page is read as a user sees it: the done count and the heatmap's cells
(read from the Bokeh document the page holds) change as flushes land, the menus switch value and
axes, and a screenshot of the finished page is not blank. Every request the page makes is logged
and must stay on 127.0.0.1 (the page works offline: no CDN). CI installs chromium and its driver
(.ci/run); without them this test fails under CI=true and is skipped elsewhere.
The same browser then opens ``report --html``'s file and checks it draws and fetches nothing.
AMSWEEP_SCREENSHOTS=DIR keeps the screenshots (docs/figures/serve_running.png, serve_finished.png,
report_html.png).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.storage.cube import Cube

SPEC = """
name = "watched"
description = "a tiny sweep watched by amsweep serve"
root_seed = 5
seeds = 2
noise = [0.0, 0.1, 0.2]
P_test = 6
[retrieval]
train_starts = 8
test_starts = 6
random_starts = 3
[datasets.random]
N = [48]
alpha = [0.05, 0.1, 0.2, 0.3]
[rules.hebb]
[rules.plm]
epochs = 30
lr = 5.0
"""
TASKS = 16
SECONDS_PER_CELL = 0.5

DRIVER = """
import sys, time
from amsweep.pipeline import spec
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.cube import Cube
from amsweep.sweeps.runner import run

def slow(*job):
    time.sleep(float(sys.argv[3]))
    return run_cell(*job)

run(Cube.create_or_open(sys.argv[2], spec.load(sys.argv[1])), SerialExecutor(), progress=False,
    flush_every=1, min_flush_seconds=0.2, cell=slow)
"""

# Every element of the page, through Panel's shadow roots; then what the test reads off it.
WALK = (
    "function all(r, o){for(const e of r.querySelectorAll('*'))"
    "{o.push(e); if(e.shadowRoot) all(e.shadowRoot, o);} return o;}"
)
READ = (
    WALK
    + """
const els = all(document, []);
const done = els.find(e => e.classList && e.classList.contains('amsweep-done'));
const heat = [];  // the heatmaps drawn now: walk the views from the roots (the document keeps replaced models)
function views(v, o){ o.push(v); for (const c of (v.child_views || [])) views(c, o);
  if (v.renderer_views) for (const r of v.renderer_views.values()) views(r, o); return o; }
if (window.Bokeh && Bokeh.index) {
  for (const root of Bokeh.index.roots) for (const v of views(root, [])) {
    const ds = v.model && v.model.data_source;
    if (ds && 'zvalues' in ds.data)
      heat.push({keys: Object.keys(ds.data), z: Array.from(ds.data['zvalues']).map(Number)});
  }
}
return {done: done ? Number(done.textContent) : null, heat: heat};
"""
)
CHOOSE = (
    WALK
    + """
const [label, value] = arguments;
for (const s of all(document, []).filter(e => e.tagName == 'SELECT')) {
  const l = s.parentElement && s.parentElement.querySelector('label');
  if (!l || l.textContent.trim() != label) continue;
  const o = [...s.options].find(o => o.textContent.trim() == value);  // Bokeh keys options by index
  if (!o) return false;
  s.value = o.value; s.dispatchEvent(new Event('change')); return true;
}
return false;
"""
)


def _browser() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    why = "Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"{why}: .ci/run installs them; CI must run this test")
    pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(what: str, check, timeout: float, every: float = 0.25):
    start = time.time()
    deadline = start + timeout
    while time.time() < deadline:
        value = check()
        if value:
            print(f"{time.strftime('%H:%M:%S')} {what}: {time.time() - start:.1f} s")
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _requests(browser) -> set[str]:
    """Every URL the page asked for since the last call (Chrome's performance log)."""
    urls = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.webSocketCreated"):
            params = message["params"]
            urls.add(params["request"]["url"] if "request" in params else params["url"])
    return urls


def _cells(state: dict) -> tuple[int, float]:
    """Heatmap cells with a value, and their sum: either changes when a flush lands."""
    z = np.array([v for h in state["heat"] for v in h["z"]], dtype=float)
    return int(np.isfinite(z).sum()), float(np.nansum(z))


def test_the_page_follows_a_running_sweep_offline(tmp_path):
    from PIL import Image
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = _browser()
    spec, cube = tmp_path / "watched.toml", str(tmp_path / "watched.zarr")
    spec.write_text(SPEC)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with Cube.create_or_open(cube, spec_mod.load(spec)):  # created, no task run: the page starts at 0 done
        pass
    port = _free_port()
    sweep = server = browser = None
    keep = os.environ.get("AMSWEEP_SCREENSHOTS")
    try:
        server = subprocess.Popen(
            [sys.executable, "-m", "amsweep.sweeps.cli", "serve", cube, "--port", str(port), "--interval", "0.5"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert server.stdout is not None
        line = server.stdout.readline()
        while line and "serving" not in line:  # Panel's own "Launching server" line comes first
            line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line
        said: list[str] = []  # the server's log, drained so that a full pipe cannot stall it
        threading.Thread(target=lambda: said.extend(server.stdout), daemon=True).start()

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
            options.add_argument(arg)
        options.add_argument("--window-size=1300,900")
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        browser = webdriver.Chrome(service=Service(chromedriver), options=options)
        browser.set_script_timeout(10)
        browser.get(f"http://127.0.0.1:{port}/")

        empty = _wait("the page to show 0 done", lambda: (s := browser.execute_script(READ))["done"] == 0 and s, 45)
        assert _cells(empty)[0] == 0
        sweep = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(spec), cube, str(SECONDS_PER_CELL)], env=env, stderr=subprocess.PIPE
        )
        first = _wait("cells to land", lambda: (s := browser.execute_script(READ))["done"] and _cells(s)[0] and s, 60)
        assert sweep.poll() is None, "the sweep ended before the page showed it running: slow the cells down"
        later = _wait(
            "the done count and the heatmap to change as more cells land",
            lambda: (s := browser.execute_script(READ))["done"] > first["done"] and _cells(s) != _cells(first) and s,
            60,
        )
        assert _cells(later)[0] >= _cells(first)[0] > 0
        if keep:
            browser.save_screenshot(str(Path(keep, "serve_running.png")))
        assert sweep.wait(timeout=120) == 0, sweep.stderr.read().decode() if sweep.stderr else ""
        assert not any("Traceback" in line for line in said), "".join(said)[-3000:]
        final = _wait(  # hebb and plm over 4 loads x 3 noise levels
            "every task done and drawn",
            lambda: (s := browser.execute_script(READ))["done"] == TASKS and _cells(s)[0] == 2 * 4 * 3 and s,
            30,
        )
        assert all("m_train" in h["keys"] for h in final["heat"])

        # Another value and other axes, chosen in the page as a user would.
        assert browser.execute_script(CHOOSE, "value", "success_train")
        assert browser.execute_script(CHOOSE, "x axis", "noise")
        assert browser.execute_script(CHOOSE, "y axis", "alpha")
        switched = _wait(
            "the heatmaps of success_train over (noise, alpha)",
            lambda: (
                (s := browser.execute_script(READ))["heat"]
                and all("success_train" in h["keys"] and "noise" in h["keys"] for h in s["heat"])
                and s
            ),
            30,
        )
        assert all(np.isfinite(h["z"]).sum() == 12 for h in switched["heat"])
        time.sleep(1.0)  # the redrawn canvas painted
        png = browser.get_screenshot_as_png()
        if keep:
            Path(keep, "serve_finished.png").write_bytes(png)
        pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=float)
        assert pixels.std() > 20, f"the screenshot is (nearly) blank: pixel standard deviation {pixels.std():.1f}"
        colours = len(np.unique(pixels.reshape(-1, 3)[::7], axis=0))
        assert colours > 50, f"only {colours} distinct colours: no heatmap drawn"

        requests = _requests(browser)
        outside = [u for u in requests if not u.startswith(("data:", "blob:")) and f"://127.0.0.1:{port}/" not in u]
        assert not outside, f"the page fetched from outside 127.0.0.1 (not offline): {sorted(outside)[:5]}"
        assert any("/static/" in u for u in requests), "no script came from the server's own /static/"

        # report --html: the same views in one file, interactive without a server, nothing fetched.
        from amsweep.analysis.html_report import write_html
        from amsweep.storage.query import open_cube
        from amsweep.storage.status import status_data

        page = write_html(cube, open_cube(cube), status_data(cube), tmp_path)
        browser.get(page.as_uri())
        static = _wait("report.html's heatmaps", lambda: (s := browser.execute_script(READ))["heat"] and s, 30)
        assert static["done"] == TASKS
        first_tab = [h for h in static["heat"] if "m_train" in h["keys"]]
        assert sum(np.isfinite(h["z"]).sum() for h in first_tab) == 2 * 4 * 3
        if keep:
            browser.save_screenshot(str(Path(keep, "report_html.png")))
        fetched = [u for u in _requests(browser) if not u.startswith(("data:", "blob:", "file:"))]
        assert not fetched, f"report.html fetched {sorted(fetched)[:5]}: not self-contained"
    finally:
        if browser is not None:
            browser.quit()
        for proc in (server, sweep):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def test_serve_refuses_bad_input_in_one_line_before_serving(tmp_path, capsys):
    from amsweep.sweeps.cli import main

    def refused(*argv: str) -> str:
        capsys.readouterr()
        assert main(["serve", *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("amsweep serve: error: ") and err.count("\n") == 1, err
        return err

    lazy = (
        "import sys, amsweep.sweeps.cli; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'panel', 'holoviews', 'bokeh'}))"
    )
    loaded = subprocess.run([sys.executable, "-c", lazy], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", f"the command-line module imports {loaded.strip()} (Panel is for serve only)"
    assert "no cube there" in refused(str(tmp_path / "missing.zarr"))
    assert "--interval 0" in refused(str(tmp_path / "missing.zarr"), "--interval", "0")
    cube, spec = str(tmp_path / "c.zarr"), tmp_path / "s.toml"
    spec.write_text(SPEC)
    with Cube.create_or_open(cube, spec_mod.load(spec)):
        pass
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert "cannot listen there" in refused(cube, "--port", str(port))


RF_SPEC = """
name = "rf_views"
root_seed = 3
seeds = 2
noise = [0.0, 0.1]
P_test = 10
[retrieval]
train_starts = 10
test_starts = 10
random_starts = 2
[datasets.rf]
kind = "random_features"
N = [40]
alpha = [0.1, 0.5, 2.0]
alpha_D = [0.2, 0.5]
[rules.hebb]
[rules.plm]
init = "zero"
lr = 0.3
epochs = 50
"""


def test_every_offered_value_draws_at_every_facet(tmp_path):
    """The views the page and report.html offer, on a cube whose datasets carry a coordinate
    (alpha_D: fixing the dataset and alpha_D apart selected nothing) and test starts (the class map)."""
    from amsweep.analysis import html_report, views
    from amsweep.pipeline.executors import SerialExecutor
    from amsweep.pipeline.errors import NoData
    from amsweep.storage.query import open_cube
    from amsweep.sweeps.runner import run

    spec = tmp_path / "rf.toml"
    spec.write_text(RF_SPEC)
    cube = str(tmp_path / "rf.zarr")
    run(Cube.create_or_open(cube, spec_mod.load(spec)), SerialExecutor(), progress=False)
    ds = open_cube(cube)
    axes, coords = views.axis_values(ds), views.dataset_coords(ds)
    assert coords == {"alpha_D"} and {"dataset", "alpha", "rule", "noise"} <= set(axes)
    offered = views.offered_values(ds)
    assert offered[:4] == ["m_train", "m_test", "class", "gen_gap"]
    drawn = set()
    for value in offered[:6]:  # the preferred ones (the rest take the same path)
        for choice in html_report._facets(views.default_choice(ds, value), axes, coords):
            assert not ({"dataset", "alpha_D"} <= set(choice.where)), choice.where
            try:
                table = views.phase_table(ds, choice)
            except NoData:
                continue
            layout = views.phase_layout(table, choice, grid=axes)
            assert len(layout) >= 2  # a heatmap per rule (and the line view)
            drawn.add((value, choice.where.get("dataset", "(an axis)")))
            if value == "class":
                assert set(table["class"].unique()) <= {0.0, 1.0, 2.0, 3.0}
    datasets = set(axes["dataset"])
    for value in ("m_train", "m_test", "class", "gen_gap"):  # at each alpha_D
        assert {d for v, d in drawn if v == value} == datasets, (value, drawn)


def test_progress_text_groups_failures_and_counts_cells_per_node():
    from amsweep.analysis.views import progress_markdown

    data = {
        "sweep": "s",
        "spec_hash": "abc",
        "counts": {"done": 30, "pending": 5, "failed": 5, "not_applicable": 0},
        "applicable": 40,
        "writer": {"holder": "head:1", "live": True, "heartbeat_age_seconds": 1.0},
        "throughput": {"tasks_per_minute": 12.0, "done": 30, "seconds": 150, "executor": "ray", "eta_seconds": 50},
        "runs": [
            {"done": 20, "host": "head", "cluster": {"nodes_used": ["node-a", "node-b"]}},
            {"done": 10, "host": "laptop", "cluster": None},
        ],
        "failures": {
            "count": 5,
            "groups": [
                {"error": "ValueError: bad lr", "count": 4, "examples": [{"rule": "plm", "seed": 0}]},
                {"error": "MemoryError", "count": 1, "examples": [{"N": 6400}]},
            ],
        },
    }
    text = progress_markdown(data)
    assert '<span class="amsweep-done">30</span> of 40 applicable (75.0%)' in text
    assert "pending 5 · failed 5" in text and "12.0 tasks/min" in text and "ETA 0:00:50" in text
    assert "node-a 20, node-b 20, laptop 10" in text
    assert "4 × `ValueError: bad lr` (e.g. rule=plm seed=0)" in text and "1 × `MemoryError`" in text
