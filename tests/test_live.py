"""Live code in the page (issue 17): every chapter's code edited and run in the reader's browser.

What is checked, and where:

* Without a browser: the runtime the site serves is exactly Pyodide 0.27.7's (every file's
  sha256 against the pinned core hashes or the official lock file), within its size budget, and
  outside ``_static``; the assembler refuses a tampered file from either source; every chapter
  carries every code cell's source (removed cells included) for the runner.
* In Pyodide under Node.js: a representative part of attnbook's own test suite passes on the
  browser's Python 3.12 and NumPy 2.0.2.
* In headless Chromium with the network cut (requests from the runner's worker included): for
  every chapter, nothing of the runtime loads before the first Run; the first visible cell's
  live output equals the build's; Run all completes without an error within its budget; every
  request stays on the site and succeeds; the console shows no error. In chapter 5 the course
  notes' demo prints the page's numbers live and new ones once its seed is edited; a cell that
  raises shows its traceback; a cell that plots shows its figure; the controls pass axe-core
  (serious/critical) in light and dark mode with outputs shown, and work from the keyboard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from conftest import HTML as BUILT, ROOT
from test_browser import AXE_RUN, THEME_RULES, blocking, browser_tools

sys.path.insert(0, str(ROOT / "_ext" / "live"))
import runtime  # noqa: E402

# As in test_browser.py: ATTNBOOK_SITE=/path/to/html checks a site built elsewhere.
HTML = Path(os.environ.get("ATTNBOOK_SITE", BUILT))
LIVE = HTML / "_live"
CACHE = ROOT / ".cache" / "pyodide"
# Run all, per chapter, from the first Run (Pyodide's start included) to the last cell's end.
# Measured on the 2-core machine under load: see the report in the README section on live code.
RUN_ALL_BUDGET_S = 300
# Chapters whose Run all stops at an error in the browser, each with the cell and the reason;
# for the chapter's authors to fix (this test then asks for the entry's removal).
CHAPTER_KNOWN: dict[str, tuple[str, str]] = {}  # page name: (exception name, reason)
# The whole browser part (every chapter's Run all plus the chapter 5 checks).
CHAPTER_GLOB = "[0-9][0-9]-*.html"


def chapters() -> list[Path]:
    return sorted(p for p in HTML.rglob(CHAPTER_GLOB) if "_static" not in p.parts)


def selected_chapters() -> list[Path]:
    """The chapters the browser tests run: all of them, or, for development,
    ``ATTNBOOK_LIVE_CHAPTERS=04,09`` (page-name prefixes; chapter 5's own tests need 05).
    Under ``CI=true`` a selection is refused: CI runs every chapter."""
    chosen = [c.strip() for c in os.environ.get("ATTNBOOK_LIVE_CHAPTERS", "").split(",") if c.strip()]
    if chosen and os.environ.get("CI") == "true":
        pytest.fail("ATTNBOOK_LIVE_CHAPTERS is for development: CI runs every chapter")
    found = chapters()
    return [p for p in found if not chosen or any(p.name.startswith(c) for c in chosen)]


def live_cells(page: Path) -> list[dict]:
    match = re.search(r'<script type="application/json" id="live-cells"[^>]*>(.*?)</script>',
                      page.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"{page.name}: no live-cells script: is the live extension in _config.yml?"
    return json.loads(match.group(1))["cells"]


def code_cells_in_source(md: Path) -> int:
    return len(re.findall(r"^```\{code-cell\}", md.read_text(encoding="utf-8"), re.MULTILINE))


# ---- the served runtime, without a browser -------------------------------------------------

@pytest.fixture(scope="module")
def site_runtime() -> Path:
    if not (LIVE / "site.json").exists():
        pytest.fail("no _build/html/_live/site.json: build the book first (python3 dev.py book); "
                    "the build log says why the runtime could not be assembled")
    return LIVE


def test_every_runtime_file_is_pyodides_own(site_runtime):
    folder = site_runtime / "pyodide"
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    for name, digest in runtime.PINNED.items():
        assert hashlib.sha256(files.pop(name)).hexdigest() == digest, name
    lock = json.loads((folder / "pyodide-lock.json").read_bytes())
    by_file = {e["file_name"]: e["sha256"] for e in lock["packages"].values()}
    for name, data in files.items():
        assert name in by_file, f"{name} is served but is not a file of the Pyodide lock"
        assert hashlib.sha256(data).hexdigest() == by_file[name], f"{name}: not the lock's file"
    served = set(files)
    needed = {e["file_name"] for e in runtime.closure(lock)}
    assert served == needed, f"missing: {needed - served}; extra: {served - needed}"


def test_the_runtime_stays_within_its_budget_and_out_of_static(site_runtime):
    size = sum(p.stat().st_size for p in (site_runtime / "pyodide").iterdir())
    assert size <= runtime.BUDGET, f"the runtime adds {size:,} bytes, over {runtime.BUDGET:,}"
    site = json.loads((site_runtime / "site.json").read_text())
    assert site["runtime_bytes"] == size
    static = [p.name for p in (HTML / "_static").rglob("*") if p.name in ("live.js", "worker.js", "runner.py")
              or p.name.startswith("pyodide")]
    assert not static, f"runner files in _static (Jupyter Book adds its scripts to every page): {static}"
    pages_with_runner = [p.name for p in HTML.rglob("*.html") if "_live/live.js" in p.read_text(encoding="utf-8")]
    assert not [p for p in pages_with_runner if p in ("search.html", "genindex.html", "bibliography.html")]


def test_every_chapter_carries_every_code_cell_for_the_runner():
    assert chapters(), "no chapter pages built"
    for page in chapters():
        cells = live_cells(page)
        md = ROOT / "book" / page.with_suffix(".md").name
        assert len(cells) == code_cells_in_source(md), page.name
        html = page.read_text(encoding="utf-8")
        removed = [c for c in cells if "remove-cell" in c["tags"]]
        rendered = {int(i) for i in re.findall(r"\blive-index-(\d+)\b", html)}
        assert not rendered & {c["i"] for c in removed}, f"{page.name}: a removed cell is rendered"
        shown = {c["i"] for c in cells if "remove-cell" not in c["tags"]}
        assert rendered == shown, f"{page.name}: cells without their live-index class: {shown - rendered}"


def _fake_release(tmp_path: Path, tamper: str | None = None) -> Path:
    """A release tarball laid out as Pyodide's (pyodide/<file>), from the verified files."""
    cache = tmp_path / "cache"
    (cache / runtime.VERSION).mkdir(parents=True)
    shutil.copy(CACHE / runtime.VERSION / f"pyodide-{runtime.VERSION}.tgz", cache / runtime.VERSION)
    tarball = cache / runtime.VERSION / runtime.RELEASE_URL.rsplit("/", 1)[1]
    with tarfile.open(tarball, "w:bz2", compresslevel=1) as tar:
        for path in sorted((LIVE / "pyodide").iterdir()):
            data = path.read_bytes()
            if path.name == tamper:
                data = data[:-1] + bytes([data[-1] ^ 1])
            info = tarfile.TarInfo(f"pyodide/{path.name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return cache


def test_both_sources_are_checked_against_the_lock(site_runtime, tmp_path):
    if not (CACHE / runtime.VERSION / f"pyodide-{runtime.VERSION}.tgz").exists():
        pytest.skip("no downloaded Pyodide in .cache/pyodide (the build downloads it)")
    wheel = next(p.name for p in (LIVE / "pyodide").iterdir() if p.name.startswith("numpy-"))
    good = _fake_release(tmp_path / "good")
    sizes = runtime.assemble(tmp_path / "out", "release", good)
    assert sum(sizes.values()) == json.loads((LIVE / "site.json").read_text())["runtime_bytes"]
    bad = _fake_release(tmp_path / "bad", tamper=wheel)
    with pytest.raises(runtime.RuntimeError_, match=re.escape(wheel)):
        runtime.assemble(tmp_path / "out2", "release", bad)
    # The same check guards the registry source, and the pinned core files.
    with pytest.raises(runtime.RuntimeError_, match="pyodide.asm.wasm"):
        runtime.check("pyodide.asm.wasm", b"not wasm", runtime.PINNED["pyodide.asm.wasm"], "test")


# ---- attnbook on the browser's Python and NumPy (Pyodide under Node.js) --------------------

# Pure-Python wheels of the test tools, for Pyodide (hypothesis 6.155.7: the last release
# published as a pure-Python wheel).
TEST_WHEELS = ["pytest==9.2.0", "pluggy==1.7.0", "iniconfig==2.3.1", "pygments==2.21.0",
               "packaging==24.2", "hypothesis==6.155.7", "sortedcontainers==2.4.0"]
# A representative part of code/tests: the functions, autograd and layers, training and its
# cache, decoding, tasks and metrics (the slow training tests are left to the native run).
PYODIDE_TESTS = ["test_softmax_masks.py", "test_scores.py", "test_attention.py", "test_tensor.py",
                 "test_norm.py", "test_positions.py", "test_flash.py", "test_losses.py", "test_nn.py",
                 "test_optim.py", "test_train.py", "test_batching.py", "test_tasks.py",
                 "test_decoding.py", "test_metrics.py"]
# Tests that fail in the browser, each with the reason (none now). Pyodide is wasm32, where
# NumPy's default integer is int32: a docstring example that prints an integer array shows
# "dtype=int64" there when the array was made as int64, so examples print such arrays with
# .tolist() (platform-independent output).
PYODIDE_KNOWN: dict[str, str] = {}
# Tests left to the native run, each with the reason.
PYODIDE_DESELECT = {
    "test_metrics.py::test_bleu_matches_nltk": "its reference, nltk, is a test-only package with "
                                              "compiled dependencies (regex) not in the runtime",
}

PYODIDE_SCRIPT = """
import glob, sys, sysconfig, zipfile
site = sysconfig.get_paths()["purelib"]
for wheel in glob.glob("/host/wheels/*.whl"):
    zipfile.ZipFile(wheel).extractall(site)
import pytest
raise SystemExit(int(pytest.main(["-q", "-p", "no:cacheprovider", "--import-mode=importlib",
    "-o", "addopts=", "--capture=sys", "-rf", "--tb=short", "-m", "not slow", "--hypothesis-seed=0",
    "-k", " and ".join(["not _never_a_test_name_"] + [f"not {t.split('::')[1]}" for t in DESELECT]),
    *[f"/host/tests/{t}" for t in TESTS]])))
"""


@pytest.mark.slow
def test_attnbook_passes_its_tests_on_the_browsers_python(site_runtime, tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is needed to run Pyodide outside the browser")
    wheels = ROOT / ".cache" / "pyodide-test-wheels"
    if len(list(wheels.glob("*.whl"))) < len(TEST_WHEELS):
        wheels.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        "--only-binary=:all:", "--dest", str(wheels), *TEST_WHEELS], check=True)
    host = tmp_path / "host"
    shutil.copytree(ROOT / "code" / "tests", host / "tests")
    (host / "wheels").mkdir()
    for wheel in [*wheels.glob("*.whl"), *(LIVE / "wheels").glob("*.whl")]:
        shutil.copy(wheel, host / "wheels")
    script = tmp_path / "run.py"
    script.write_text(f"TESTS = {PYODIDE_TESTS!r}\nDESELECT = {sorted(PYODIDE_DESELECT)!r}\n" + PYODIDE_SCRIPT)
    result = subprocess.run([node, str(ROOT / "tests" / "tools" / "pyodide_node.mjs"), str(LIVE / "pyodide"),
                             str(script), str(host)], capture_output=True, text=True, timeout=1800)
    output = result.stdout + result.stderr
    failed = set(re.findall(r"^FAILED \S*?host/tests/(\S+)", output, re.MULTILINE))
    summary = re.findall(r"^=* ?(\d+ (?:passed|failed).*?)(?: in [\d.]+s.*)?=*$", output, re.MULTILINE)
    print(f"\n[live] attnbook's tests in Pyodide: {summary[-1] if summary else output[-300:]}")
    assert summary and re.search(r"\d+ passed", summary[-1]), f"the tests did not run:\n{output[-4000:]}"
    new = failed - set(PYODIDE_KNOWN)
    assert not new, f"attnbook's tests fail in Pyodide:\n{output[-6000:]}"
    fixed = set(PYODIDE_KNOWN) - failed
    assert not fixed, f"these pass in Pyodide now: remove them from PYODIDE_KNOWN: {sorted(fixed)}"


# ---- the chapters in headless Chromium, network cut -----------------------------------------

VIEWS = """(() => [...window.liveCode.views.values()].filter(v => v.editor).map(v => ({
  index: v.index,
  source: window.liveCode.cells.find(c => c.i === v.index).src,
  build: [...v.cell.querySelectorAll('.cell_output pre')].map(p => p.textContent).join('\\n'),
})))()"""
LIVE_OUTPUT = """((index) => {
  const v = window.liveCode.views.get(index);
  const out = v.output;
  return {
    text: out ? [...out.querySelectorAll('pre.live-stdout, pre.live-stderr, pre.live-value')].map(p => p.textContent).join('\\n') : '',
    errors: out ? [...out.querySelectorAll('pre.live-error')].map(p => p.textContent) : [],
    notes: out ? [...out.querySelectorAll('.live-note')].map(p => p.textContent) : [],
    images: out ? [...out.querySelectorAll('img.live-image')].map(i => i.complete && i.naturalWidth > 0) : [],
    state: v.state.textContent,
    measured: v.cell.dataset.liveMeasured === "true",
  };
})(%d)"""
ALL_ERRORS = """[...document.querySelectorAll('pre.live-error')].map(p => {
  const cell = p.closest('div.cell'); return (cell ? cell.className : '') + ': ' + p.textContent.slice(-800); })"""
# Select ``old`` in a cell's code area, the first time it occurs, for typing over it.
SELECT = """((index, old) => {
  const pre = window.liveCode.views.get(index).editor;
  const at = pre.textContent.indexOf(old);
  if (at < 0) return false;
  const walker = document.createTreeWalker(pre, NodeFilter.SHOW_TEXT);
  let node, offset = 0, range = document.createRange(), started = false;
  while ((node = walker.nextNode())) {
    const end = offset + node.data.length;
    if (!started && at < end) { range.setStart(node, at - offset); started = true; }
    if (started && at + old.length <= end) { range.setEnd(node, at + old.length - offset); break; }
    offset = end;
  }
  pre.focus();
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
  return selection.toString() === old;
})(%d, %s)"""
SET_SOURCE = """((index, source) => {
  const v = window.liveCode.views.get(index);
  v.editor.focus();
  v.editor.textContent = source;
  v.editor.dispatchEvent(new InputEvent('input', {bubbles: true}));
  return true;
})(%d, %s)"""


SLOWEST = """[...window.liveCode.views.values()].filter(v => v.editor && /Done in/.test(v.state.textContent))
  .map(v => [parseFloat(v.state.textContent.replace('Done in ', '')), v.index]).sort((a, b) => b[0] - a[0]).slice(0, 2)"""


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


NUMBER_TOKEN = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
TIME_UNIT = re.compile(r"#\s*(?:ns|µs|us|ms|s|min)\b")


def same_output(live: str, build: str, measured: bool) -> bool:
    """Equal text; numbers equal, except rounding residuals (both below 1e-12, which differ with
    the order of summation) and, in a cell that read a clock, every number (times differ)."""
    live, build = normalise(live), normalise(build)
    shape = lambda text: NUMBER_TOKEN.sub("#", text)  # noqa: E731
    if measured:  # a time may print in other units in the browser: "297 ms" there, "3.42 s" here
        shape = lambda text: TIME_UNIT.sub("# <time>", NUMBER_TOKEN.sub("#", text))  # noqa: E731
    if shape(live) != shape(build):
        return False
    for a, b in zip(NUMBER_TOKEN.findall(live), NUMBER_TOKEN.findall(build)):
        if a != b and not measured and not (abs(float(a)) < 1e-12 and abs(float(b)) < 1e-12):
            return False
    return True


def run_cell(tab, index: int, timeout: float = 300) -> dict:
    tab.evaluate(f"window.liveCode.runCell({index}).then(() => true)", timeout=timeout)
    return tab.evaluate(LIVE_OUTPUT % index)


@pytest.fixture(scope="module")
def browser():
    tools = browser_tools()
    path = tools.find_chromium()
    if path is None:
        pytest.skip("no Chromium found: install the Debian package chromium")
    if not (LIVE / "site.json").exists():
        pytest.fail("no _build/html/_live: build the book first (python3 dev.py book)")
    with tools.serve(HTML) as base, tools.launch(path) as b:
        yield b, base


# Chapters run side by side, one tab each; a worker keeps one core busy, so one lane per core
# (2 here, 4 on GitHub's runners); ATTNBOOK_LIVE_LANES overrides.
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 2)
LANES = int(os.environ.get("ATTNBOOK_LIVE_LANES") or max(2, CORES))
# Each chapter's last measured time (Python's start + Run all), kept across runs: the longest
# chapters start first, so that no long chapter is left to run alone at the end.
TIMES = ROOT / ".cache" / "live-times.json"


def longest_first(pages: list[Path]) -> list[Path]:
    try:
        known = json.loads(TIMES.read_text())
    except (OSError, ValueError):
        known = {}
    # Unknown chapters first (they may be long), then by last time, longest first.
    return sorted(pages, key=lambda p: -known.get(p.name, float("inf")))


def remember_times(runs: dict[str, dict]) -> None:
    try:
        known = json.loads(TIMES.read_text())
    except (OSError, ValueError):
        known = {}
    for run in runs.values():
        if run.get("ran_all") == "done":
            known[Path(run["name"]).name] = round(run["wall_seconds"], 1)
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    TIMES.write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")


def _start_chapter(tab, base: str, page: Path) -> dict:
    """Open a chapter and press Run all (not waiting: the other lanes are polled meanwhile).

    The first visible cell's live output is read after Run all, which runs the page's cells in
    order from a fresh Python exactly as running that cell alone does (its earlier hidden cells
    first): the same check as running it on its own, without running those cells twice."""
    name = page.relative_to(HTML).as_posix()
    visit = tab.open(f"{base}/{name}")
    before = [u for u in visit.requests if "/_live/" in u and not re.search(r"live\.(js|css)", u)]
    first = tab.evaluate(VIEWS)[0]
    tab.evaluate("window.liveCode.runAll(); true")
    return {"name": name, "visit": visit, "before": before, "first": first,
            "workers": tab.workers, "started": time.monotonic()}


def _finish_chapter(tab, run: dict) -> None:
    wall = time.monotonic() - run["started"]
    run.update({
        "run_all_seconds": float(tab.evaluate("document.querySelector('.live-bar').dataset.seconds || 'inf'")),
        "status": tab.evaluate("window.liveCode.status()"),
        "ran_all": tab.evaluate("document.querySelector('.live-bar').dataset.ranAll || ''"),
        "errors": tab.evaluate(ALL_ERRORS),
        "notes": tab.evaluate("[...document.querySelectorAll('.live-note')].map(n => n.textContent)"),
        "slowest": tab.evaluate(SLOWEST),
        "first_live": tab.evaluate(LIVE_OUTPUT % run["first"]["index"]),
    })
    run["wall_seconds"] = wall
    run["start_seconds"] = max(0.0, wall - run["run_all_seconds"]) if run["run_all_seconds"] != float("inf") else wall
    print(f"\n[live] {run['name']}: Python's start {run['start_seconds']:.1f} s, Run all {run['run_all_seconds']:.1f} s "
          f"(slowest cells, s and index: {run['slowest']}); {run['status']}")


@pytest.fixture(scope="module")
def chapter_runs(browser) -> dict[str, dict]:
    """Every chapter opened, its first visible cell run, then Run all; what each left behind.

    Chapter 5's tab is kept (``run["tab"]``) for the chapter 5 tests: its Python is started
    and every cell has run, so they need not start Python and run the chapter again."""
    b, base = browser
    queue = longest_first(selected_chapters())
    assert queue, "no chapter selected"
    lanes = [{"tab": None, "run": None} for _ in range(min(LANES, len(queue)))]
    found, started = {}, time.monotonic()
    while queue or any(lane["run"] for lane in lanes):
        for lane in lanes:
            tab, run = lane["tab"], lane["run"]
            if run is None and queue:
                lane["tab"] = tab = tab or b.new_tab(base)
                lane["run"] = _start_chapter(tab, base, queue.pop(0))
            elif run is not None:
                idle = tab.evaluate("document.querySelector('.live-bar').dataset.state") == "idle"
                late = time.monotonic() - run["started"] > RUN_ALL_BUDGET_S + 300
                if idle or late:
                    if not idle:
                        tab.evaluate("document.querySelector('.live-stop').click(); true")
                    _finish_chapter(tab, run)
                    found[run["name"]] = run
                    lane["run"] = None
                    if Path(run["name"]).name.startswith("05-") and run["ran_all"] == "done":
                        run["tab"], lane["tab"] = tab, None  # kept; the lane opens a new tab
        time.sleep(0.5)
    print(f"\n[live] every chapter: {time.monotonic() - started:.0f} s in {len(lanes)} lanes")
    remember_times(found)
    return found


@pytest.mark.slow
def test_reading_a_chapter_loads_no_runtime(chapter_runs):
    loaded = {n: r["before"] for n, r in chapter_runs.items() if r["before"]}
    assert not loaded, f"the runtime loaded before any Run: {loaded}"


@pytest.mark.slow
def test_the_first_visible_cell_prints_what_the_build_printed(chapter_runs):
    problems = []
    for name, r in chapter_runs.items():
        live, build = r["first_live"], r["first"]["build"]
        if live["errors"]:
            problems.append(f"{name}: the first cell raised:\n{live['errors'][0][-1500:]}")
        elif not same_output(live["text"], build, live["measured"]):
            problems.append(f"{name}: live output differs from the build's:\n--- build\n{build[:1500]}"
                            f"\n--- live\n{live['text'][:1500]}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_run_all_completes_within_budget_without_errors(chapter_runs):
    problems = []
    for name, r in chapter_runs.items():
        known = CHAPTER_KNOWN.get(Path(name).name)
        if known:
            if not (r["errors"] and known[0] in r["errors"][0]):
                problems.append(f"{name} no longer fails with {known[0]} in the browser: remove it from CHAPTER_KNOWN")
            continue
        if r["errors"]:
            problems.append(f"{name}: {len(r['errors'])} cell(s) raised; first:\n{r['errors'][0]}")
        if r["ran_all"] != "done":
            problems.append(f"{name}: Run all did not finish: {r['status']}")
        if r["run_all_seconds"] > RUN_ALL_BUDGET_S:
            problems.append(f"{name}: Run all took {r['run_all_seconds']:.0f} s, over {RUN_ALL_BUDGET_S} s")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_request_of_a_run_stays_on_the_site_and_succeeds(chapter_runs):
    problems = []
    for name, r in chapter_runs.items():
        visit = r["visit"]
        problems += [f"{name}: tried to reach {u}" for u in visit.outside_requests]
        problems += [f"{name}: failed: {u}" for u in visit.failed_requests]
        if not any("/_live/pyodide/pyodide.asm.wasm" in u for u in visit.requests):
            problems.append(f"{name}: the worker's requests were not seen (is it attached?)")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_a_run_logs_no_console_error(chapter_runs):
    problems = [f"{n}: {e}" for n, r in chapter_runs.items() for e in r["visit"].console_errors]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_trained_models_come_from_the_build(chapter_runs):
    loaded = [n for n, r in chapter_runs.items() if any("this page's build trained" in x for x in r["notes"])]
    untrained = [f"{n}: {x}" for n, r in chapter_runs.items() for x in r["notes"] if "No weights" in x]
    assert not untrained, "models trained in the browser instead of loaded:\n" + "\n".join(untrained)
    if not loaded and len(chapter_runs) < len(chapters()):
        pytest.skip("the chapters selected (ATTNBOOK_LIVE_CHAPTERS) train no model")
    assert loaded, "no chapter loaded a model the build trained"
    assert not untrained, "models trained in the browser instead of loaded:\n" + "\n".join(untrained)


def numbers_in(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", text)]


def demo(seed: int):
    import numpy as np

    state = np.random.get_state()
    try:
        np.random.seed(seed)
        q, k, v = np.random.randn(3, 4), np.random.randn(5, 4), np.random.randn(5, 6)
    finally:
        np.random.set_state(state)
    scores = q @ k.T / 2.0
    weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights /= weights.sum(axis=-1, keepdims=True)
    return np.concatenate([weights.ravel(), (weights @ v).ravel()])


def prints_all(expected, text: str) -> bool:
    found = numbers_in(text)
    return all(any(abs(x - f) <= 0.5e-6 + 1e-12 for f in found) for x in expected)


@pytest.fixture(scope="module")
def chapter5(browser, chapter_runs):
    """Chapter 5's tab after its Run all (Python started, every cell run), else a fresh one."""
    b, base = browser
    page = next((p for p in selected_chapters() if p.name.startswith("05-")), None)
    if page is None:
        pytest.skip("chapter 5 is not selected (ATTNBOOK_LIVE_CHAPTERS)")
    run = chapter_runs.get(page.relative_to(HTML).as_posix(), {})
    if run.get("tab") is not None:
        return run["tab"]
    tab = b.new_tab(base)
    tab.open(f"{base}/{page.relative_to(HTML).as_posix()}")
    return tab


@pytest.mark.slow
def test_chapter_5_demo_runs_live_and_reacts_to_a_new_seed(chapter5):
    tab = chapter5
    views = tab.evaluate(VIEWS)
    cell = next(v for v in views if "np.random.seed(0)" in v["source"] and "randn(3, 4)" in v["source"])
    first = run_cell(tab, cell["index"])
    assert not first["errors"], first["errors"]
    assert normalise(first["text"]) == normalise(cell["build"])
    assert prints_all(demo(0), first["text"])
    # Typed as a reader types: select "seed(0)" in the code area and type over it.
    assert tab.evaluate(SELECT % (cell["index"], json.dumps("seed(0)")))
    tab.call("Input.insertText", {"text": "seed(1)"})
    source = tab.evaluate(f"window.liveCode.views.get({cell['index']}).editor.textContent")
    assert "np.random.seed(1)" in source and "seed(0)" not in source
    again = run_cell(tab, cell["index"])
    assert not again["errors"], again["errors"]
    assert normalise(again["text"]) != normalise(first["text"])
    assert prints_all(demo(1), again["text"]) and not prints_all(demo(0), again["text"])


@pytest.mark.slow
def test_a_cell_that_raises_shows_its_traceback(chapter5):
    tab = chapter5
    view = tab.evaluate(VIEWS)[1]
    index = view["index"]
    tab.evaluate(SET_SOURCE % (index, json.dumps("def broken():\n    return 1 / 0\n\nbroken()")))
    out = run_cell(tab, index)
    tab.evaluate(SET_SOURCE % (index, json.dumps(view["source"])))  # as it was, for the next tests
    assert out["errors"], out
    trace = out["errors"][0]
    assert "Traceback" in trace and "ZeroDivisionError: division by zero" in trace
    assert "return 1 / 0" in trace and "live_runner" not in trace, trace


@pytest.mark.slow
def test_a_cell_that_plots_shows_its_figure(chapter5):
    tab = chapter5
    views = tab.evaluate(VIEWS)
    # The page's last plot: the cells before it that have not run yet run first, in order (an
    # earlier plot, run again after later cells changed the state, may not apply any more).
    cell = [v for v in views if "plt.subplots" in v["source"] or "plt.figure" in v["source"]][-1]
    out = run_cell(tab, cell["index"])
    assert not out["errors"], out["errors"]
    assert out["images"] and all(out["images"]), out


@pytest.mark.slow
def test_the_keyboard_runs_a_cell(chapter5):
    tab = chapter5
    view = tab.evaluate(VIEWS)[0]
    index = view["index"]
    tab.evaluate(SET_SOURCE % (index, json.dumps("print('from the keyboard')")))
    for kind in ("rawKeyDown", "keyUp"):
        tab.call("Input.dispatchKeyEvent", {"type": kind, "key": "Enter", "code": "Enter",
                                            "windowsVirtualKeyCode": 13, "modifiers": 8})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out = tab.evaluate(LIVE_OUTPUT % index)
        if "from the keyboard" in out["text"]:
            break
        time.sleep(0.2)
    assert "from the keyboard" in out["text"], out
    tab.evaluate(SET_SOURCE % (index, json.dumps(view["source"])))  # as it was, for the next tests
    focusable = tab.evaluate("""[...document.querySelectorAll('.live-run, .live-runall, .live-stop')]
      .every(b => b.tagName === 'BUTTON' && b.tabIndex === 0)""")
    assert focusable


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_controls_and_outputs_pass_axe(chapter5, scheme):
    from test_browser import AXE_DIR

    bundle = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not bundle.exists():
        pytest.skip("axe-core is installed by tests/test_browser.py (needs npm)")
    tab = chapter5
    tab.prefer_color_scheme(scheme)
    time.sleep(0.3)
    assert tab.evaluate("document.querySelectorAll('.live-output img, .live-output pre').length") > 0
    assert tab.evaluate("document.querySelectorAll('div.cell .live-run').length") == \
        tab.evaluate("document.querySelectorAll('div.cell .cell_input').length")
    tab.evaluate(bundle.read_text(encoding="utf-8"))
    options = {"resultTypes": ["violations"],
               "include": [".live-bar", ".live-controls", ".live-output", "div.cell pre[contenteditable]"]}
    if scheme == "dark":
        options["runOnly"] = {"type": "rule", "values": THEME_RULES}
    context = json.dumps({"include": [[s] for s in options.pop("include")]})
    violations = tab.evaluate(AXE_RUN.replace("axe.run(document, %s)", f"axe.run({context}, %s)") % json.dumps(options))
    problems = [f"[{v['impact']}] {v['id']}: {v['help']} at {', '.join(n['target'] for n in nodes[:3])}"
                for v in violations if (nodes := blocking(v))]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_the_harness_sees_what_a_worker_requests(tmp_path):
    """The checks above rely on seeing the runner's worker's requests: a worker that reaches
    out, and one that asks for a missing file, must both be caught."""
    (tmp_path / "w.js").write_text('fetch("https://example.invalid/from-worker").catch(() => {});\n'
                                   'fetch("missing-from-worker.txt");\n')
    (tmp_path / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><title>Worker</title></head><body><main><h1>Worker</h1>'
        '<script>new Worker("w.js")</script></main></body></html>')
    tools = browser_tools()
    path = tools.find_chromium()
    if path is None:
        pytest.skip("no Chromium found")
    with tools.serve(tmp_path) as base, tools.launch(path) as b:
        tab = b.new_tab(base)
        visit = tab.open(f"{base}/index.html")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (visit.outside_requests and visit.failed_requests):
            tab.evaluate("new Promise(r => setTimeout(r, 100))")
    assert visit.outside_requests == ["https://example.invalid/from-worker"]
    assert any("missing-from-worker.txt" in f and "404" in f for f in visit.failed_requests), visit.failed_requests


@pytest.mark.slow
def test_the_tiny_book_runs_live_with_glue_removed_cells_and_build_weights(tmp_path):
    """tests/live_book: a removed setup cell with glue, a hidden cell, a plot, a model trained
    through cached; built here, then run in the browser."""
    tools = browser_tools()
    path = tools.find_chromium()
    if path is None:
        pytest.skip("no Chromium found")
    jb = Path(sys.executable).with_name("jupyter-book")
    env = dict(__import__("os").environ, ATTNBOOK_CACHE_DIR=str(tmp_path / "models"))
    subprocess.run([str(jb), "build", str(ROOT / "tests" / "live_book"), "--path-output", str(tmp_path),
                    "-W", "-n", "--keep-going"], check=True, capture_output=True, env=env, cwd=ROOT)
    html = tmp_path / "_build" / "html"
    with tools.serve(html) as base, tools.launch(path) as b:
        tab = b.new_tab(base)
        visit = tab.open(f"{base}/page.html")
        views = tab.evaluate(VIEWS)
        assert len(views) == 4  # the two removed cells have no place on the page
        tab.evaluate("window.liveCode.runAll().then(() => true)", timeout=300)
        outs = [tab.evaluate(LIVE_OUTPUT % v["index"]) for v in views]
        last = views[-1]
        tab.evaluate(SET_SOURCE % (last["index"], json.dumps("from myst_nb import GLUED\nprint(GLUED['answer'])")))
        glued = run_cell(tab, last["index"])
    assert not [o["errors"] for o in outs if o["errors"]]
    assert normalise(outs[0]["text"]) == normalise(views[0]["build"])  # uses the removed cell's secret
    assert normalise(outs[3]["text"]) == normalise(views[3]["build"])  # the build's model
    assert any("TinyRun model this page's build trained" in n for n in outs[3]["notes"])
    assert outs[2]["images"] == [True]
    assert glued["text"].strip() == "42"
    assert not visit.outside_requests and not visit.failed_requests and not visit.console_errors, visit


@pytest.mark.slow
def test_stop_ends_a_runaway_cell_and_the_next_run_starts_afresh(chapter5):
    tab = chapter5
    views = tab.evaluate(VIEWS)
    first, second = views[0], views[1]
    tab.evaluate(SET_SOURCE % (second["index"], json.dumps("while True:\n    pass")))
    tab.evaluate(f"window.liveCode.runCell({second['index']}); true")
    deadline = time.monotonic() + 60
    while tab.evaluate(LIVE_OUTPUT % second["index"])["state"] != "Running\u2026" and time.monotonic() < deadline:
        time.sleep(0.2)
    tab.evaluate("document.querySelector('.live-stop').click()")
    assert tab.evaluate(LIVE_OUTPUT % second["index"])["state"] == "Stopped"
    assert tab.evaluate("window.liveCode.status()").startswith("Stopped")
    out = run_cell(tab, first["index"])  # a new worker; the cell runs as on a fresh page
    assert not out["errors"] and normalise(out["text"]) == normalise(first["build"]), out
    tab.evaluate(SET_SOURCE % (second["index"], json.dumps(second["source"])))


def test_measured_output_may_differ_in_its_times_and_their_units_only():
    build = "297 ms (best of 3; median 311 ms, range 297-347 ms)\nexponent: 1.98"
    live = "3.42 s (best of 3; median 3.54 s, range 3.42-3.82 s)\nexponent: 2.16"
    assert same_output(live, build, measured=True)
    assert not same_output(live, build, measured=False)
    assert not same_output(live.replace("best of 3", "worst of 3"), build, measured=True)
