"""The Python side of the in-page runner (``_ext/live/runner.py``), run here in CPython.

The browser runs the same file in Pyodide; here its messages are collected instead of posted,
and its one browser call (a synchronous request for a model file) reads the exported files.
These tests need no build and no browser: display of the last expression, printed output,
tracebacks limited to the cell, figures, the glue stand-in, relaxed timing asserts (and only
those), and the hook that makes attnbook's ``cached`` load the build's weights.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "_ext" / "live"))


@pytest.fixture
def runner(monkeypatch, tmp_path):
    import matplotlib

    matplotlib.use("agg")
    import runner as module  # _ext/live/runner.py

    sent = []
    monkeypatch.setattr(module, "SEND", lambda kind, cell, payload: sent.append((kind, cell, json.loads(payload))))
    monkeypatch.setattr(module, "_MANIFEST", None)
    monkeypatch.setattr(module, "MEASURED", set())
    import time

    clocks = ("perf_counter", "process_time")
    for name in clocks:  # restored after the test
        monkeypatch.setattr(time, name, getattr(time, name))
    module._count_clock_reads(time, clocks)
    monkeypatch.setenv("ATTNBOOK_CACHE_DIR", str(tmp_path / "models-in-browser"))
    module.sent = sent
    module._install_myst_nb()
    yield module
    sys.modules.pop("myst_nb", None)


def messages(runner, kind):
    return [p for k, _, p in runner.sent if k == kind]


def test_the_last_expression_and_prints_are_shown(runner, monkeypatch):
    monkeypatch.setattr(sys, "stdout", runner._Stream("stdout"))  # as setup() does in the browser
    assert runner.run("print('a')\nx = 6 * 7\nx", 1, "cell 1")
    assert "".join(m["text"] for m in messages(runner, "stream")) == "a\n"
    assert messages(runner, "value") == [{"text": "42"}]
    runner.sent.clear()
    assert runner.run("x;", 2, "cell 2") and not messages(runner, "value")


def test_a_traceback_shows_the_cells_own_lines_only(runner):
    assert not runner.run("def f():\n    return 1 / 0\n\nf()", 3, "cell 3")
    (error,) = messages(runner, "error")
    assert "ZeroDivisionError" in error["text"] and "return 1 / 0" in error["text"]
    assert 'File "<cell 3>", line 4' in error["text"] and "runner.py" not in error["text"]


def test_a_figure_is_sent_as_png(runner):
    assert runner.run("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 2])\n"
                      "ax.set_xlabel('step')", 4, "cell 4")
    (image,) = messages(runner, "image")
    assert image["png"].startswith("iVBORw0KGgo") and "step" in image["alt"]


def test_glue_records_and_displays(runner):
    assert runner.run("from myst_nb import glue\nglue('k', 5, display=False)\nglue('shown', [1, 2])", 5, "c")
    assert runner.GLUED == {"k": 5, "shown": [1, 2]}
    assert messages(runner, "value") == [{"text": "[1, 2]"}]


def test_ipython_display_works_where_ipython_is_missing(runner, monkeypatch):
    """The browser has no IPython; chapters show their diagrams with IPython.display.display."""
    import builtins

    real_import = builtins.__import__

    def no_ipython(name, *args, **kwargs):
        if (name == "IPython" or name.startswith("IPython.")) and name not in sys.modules:
            raise ImportError("no IPython here, as in Pyodide")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "IPython" or m.startswith("IPython.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_ipython)
    runner._install_ipython_display()
    assert runner.run("import matplotlib.pyplot as plt\nfrom IPython.display import display\n"
                      "from matplotlib.figure import Figure\n"
                      "fig = Figure()\nfig.subplots().set_xlabel('step')\n"
                      "display(fig, 42)", 6, "cell 6")  # a Figure made after the import, as diagrams do
    assert len(messages(runner, "image")) == 1 and messages(runner, "value") == [{"text": "42"}]
    # Chapters glue sentences chosen by a measurement as Markdown.
    assert runner.run("from IPython.display import Markdown\nfrom myst_nb import glue\n"
                      "glue('sentence', Markdown('the saving *grows*'), display=False)", 7, "cell 7")
    assert runner.GLUED["sentence"]._repr_markdown_() == "the saving *grows*"
    monkeypatch.setattr(builtins, "__import__", real_import)
    for name in ("IPython", "IPython.display"):  # the real ones, if any, come back at teardown
        sys.modules.pop(name, None)


def test_only_asserts_on_measured_times_are_relaxed(runner):
    notes = lambda: messages(runner, "note")  # noqa: E731
    # A name written by a statement that read a clock is measured...
    assert runner.run("import time\nstart = time.perf_counter()\n"
                      "elapsed = time.perf_counter() - start + 9\nassert elapsed < 1, 'slow'", 1, "c")
    assert len(notes()) == 1 and "elapsed < 1" in notes()[0]["text"] and "elapsed" in runner.MEASURED
    # ...and so is what is computed from it, in a later cell.
    assert runner.run("ratio = elapsed * 2\nassert ratio < 1", 2, "c") and len(notes()) == 2
    # A list filled inside a timed loop (the receiver of .append) is measured.
    assert runner.run("times = []\nfor _ in range(2):\n    t0 = time.process_time()\n"
                      "    times.append(time.process_time() - t0 + 5)\nbest = min(times)\n"
                      "assert best < 1", 3, "c") and len(notes()) == 3
    # Every other assert holds: not measured, or measured no more once rebound.
    assert not runner.run("accuracy = 0.5\nassert accuracy > 0.9, accuracy", 4, "c")
    assert "AssertionError: 0.5" in messages(runner, "error")[-1]["text"]
    assert not runner.run("elapsed = 100\nassert elapsed < 1", 5, "c") and len(notes()) == 3
    assert "assert elapsed < 1" in messages(runner, "error")[-1]["text"]
    # A chapter can mark an assert explicitly.
    assert runner.run("n = 3\nassert n < 1  # live: relax", 6, "c") and len(notes()) == 4


@dataclass(frozen=True)
class HookRun:
    seed: int = 0


def test_cached_loads_the_builds_weights_through_the_manifest(runner, monkeypatch, tmp_path):
    sys.path.insert(0, str(ROOT / "_ext" / "live"))
    import weights
    from attnbook.cache import cached
    from attnbook.train import History
    from attnbook.nn import Linear

    class HookModel(Linear):
        def __init__(self, config, *, rng):
            super().__init__(3, 2, rng=rng)
            self.config = config

    monkeypatch.setattr(sys.modules[__name__], "HookModel", HookModel, raising=False)
    HookModel.__qualname__ = "HookModel"
    trained = []

    def train(run):
        trained.append(run)
        return HookModel(run, rng=np.random.default_rng(run.seed + 10)), History(losses=[1.5])

    build_cache = tmp_path / "build-cache"
    built, _ = cached(HookRun(), train, directory=build_cache)       # the build trains
    summary = weights.export(build_cache, tmp_path / "site" / "models")
    assert summary["count"] == 1
    site = tmp_path / "site" / "models"
    fetched = []

    def fetch(url):
        fetched.append(url)
        return (site / url.rsplit("/", 1)[1].split("?")[0]).read_bytes()

    monkeypatch.setattr(runner, "_fetch", fetch)
    monkeypatch.setattr(runner, "MANIFEST_URL", "http://site/_live/models/manifest.json?v=1")
    monkeypatch.setattr(runner, "MODELS", "http://site/_live/models/")
    module = sys.modules["attnbook.cache"]
    monkeypatch.setitem(module.cached.__globals__, "cache_key", module.cached.__globals__["cache_key"])
    assert runner.install_model_hook() == "attnbook.cache"
    # A different interpreter would compute a different key: make sure it is not the same here.
    monkeypatch.setitem(module.cached.__globals__, "blas_threads", lambda: 999)
    loaded, history = cached(HookRun(), train)                        # the browser loads
    assert len(trained) == 1 and history.losses == [1.5]
    assert np.array_equal(loaded.W.data, built.W.data)
    assert any("build trained" in n["text"] for n in messages(runner, "note"))
    names = {u.rsplit("/", 1)[1].split("?")[0] for u in fetched}
    assert names == {"manifest.json"} | {p.name for p in site.glob("HookRun-*")}
    # A configuration the build did not train is trained here, and says so.
    cached(HookRun(seed=1), train)
    assert len(trained) == 2 and any("No weights" in n["text"] for n in messages(runner, "note"))
