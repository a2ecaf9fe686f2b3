"""The Python side of the in-page runner, executed by Pyodide inside the Web Worker.

``setup(send, base)`` prepares the interpreter once; ``run(code, cell)`` runs one cell as
Jupyter would (the value of a last bare expression is shown, figures are shown when the cell
ends) and reports through ``send(kind, cell, payload_json)``:

``stream``  {"name": "stdout"|"stderr", "text"}   printed text
``value``   {"text"}                               repr of the last expression / glue(display=True)
``image``   {"png": base64, "alt"}                 a matplotlib figure
``error``   {"text"}                               the traceback, limited to the cell's own frames
``note``    {"text"}                               what the browser does differently (loaded
                                                   weights, a relaxed timing assert)

It also provides a stand-in ``myst_nb`` module whose ``glue`` records (and, with
``display=True``, shows) the value, and the hook that makes attnbook's ``cached`` load the
weights the build trained (see ``weights.py`` in the extension for the manifest).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import hashlib
import io
import json
import linecache
import os
import re
import sys
import traceback
import types

SEND = None
BASE = ""
MODELS = ""
MANIFEST_URL = ""
CELL = None
GLUED: dict = {}
MODEL_DIR = "/live-models"
# An assert that checks a timing or memory measurement is relaxed (with a visible note) when it
# fails in the browser, where NumPy has no BLAS and runs single-threaded WebAssembly. What counts
# as a measurement is traced, not guessed: a top-level statement during which a clock or
# tracemalloc was read makes the names it writes "measured", and so does a statement that reads
# a measured name (see _trace). An assert that reads a measured name may be relaxed; every
# other assert holds. A chapter can also mark one with the comment "# live: relax".
MEASURED: set = set()
CLOCK_READS = [0]
LAST = {"measured": False}  # whether the last cell read a clock (its printed times then differ)
RELAX_MARK = "# live: relax"


def _send(kind: str, payload: dict) -> None:
    SEND(kind, CELL, json.dumps(payload))


class _Stream(io.TextIOBase):
    def __init__(self, name: str):
        self.name = name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            _send("stream", {"name": self.name, "text": text})
        return len(text)


# -- glue stand-in -------------------------------------------------------------------------

def _show(value) -> None:
    """Display a value as the notebook would: figures as images, the rest as its repr."""
    from matplotlib.figure import Figure

    if isinstance(value, Figure):
        _send_figure(value)
    elif value is not None:
        _send("value", {"text": repr(value)})


def glue(name: str, variable, display: bool = True) -> None:
    """Stand-in for ``myst_nb.glue`` in the browser: record the value (and show it if asked)."""
    GLUED[name] = variable
    if display:
        _show(variable)


def display(*objs, **kwargs) -> None:
    """Stand-in for ``IPython.display.display``: show each object as the notebook would."""
    for obj in objs:
        _show(obj)


class Markdown:
    """Stand-in for ``IPython.display.Markdown``: Markdown text, such as a glued sentence."""

    def __init__(self, data: str = "") -> None:
        self.data = data

    def _repr_markdown_(self) -> str:
        return self.data

    def __repr__(self) -> str:
        return self.data


def _install_ipython_display() -> None:
    """Give pages an ``IPython.display.display`` where IPython is missing (the browser)."""
    try:
        import IPython.display  # noqa: F401  (a real IPython wins)
        return
    except ImportError:
        pass
    package = types.ModuleType("IPython")
    package.__path__ = []  # a package, so that ``import IPython.display`` finds the submodule
    module = types.ModuleType("IPython.display")
    module.display = display
    module.Markdown = Markdown
    module.__doc__ = ("Stand-in for IPython.display in the browser: display() shows figures and "
                      "reprs; Markdown holds text that chapters glue.")
    package.display = module
    package.get_ipython = lambda: None  # matplotlib asks when IPython is imported: no shell here
    sys.modules["IPython"] = package
    sys.modules["IPython.display"] = module


def _install_myst_nb() -> None:
    module = types.ModuleType("myst_nb")
    module.glue = glue
    module.__doc__ = "Stand-in for myst_nb in the browser: glue() records values (myst_nb.GLUED)."
    module.GLUED = GLUED
    sys.modules["myst_nb"] = module


# -- figures -------------------------------------------------------------------------------

def _send_figure(fig) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    alt = "Figure drawn by this cell in your browser"
    texts = [ax.get_xlabel() or ax.get_title() for ax in fig.axes]
    if any(texts):
        alt += " (axes: " + "; ".join(t for t in texts if t)[:200] + ")"
    _send("image", {"png": base64.b64encode(buffer.getvalue()).decode(), "alt": alt})


def _flush_figures() -> None:
    import matplotlib.pyplot as plt

    for number in plt.get_fignums():
        _send_figure(plt.figure(number))
    plt.close("all")


# -- weights of the build ------------------------------------------------------------------

def _fetch(url: str) -> bytes:
    from js import XMLHttpRequest  # synchronous requests are allowed in a worker

    request = XMLHttpRequest.new()
    request.open("GET", url, False)
    request.responseType = "arraybuffer"
    request.send()
    if request.status != 200:
        raise OSError(f"GET {url}: HTTP {request.status}")
    return request.response.to_bytes()


_MANIFEST = None


def _manifest() -> dict:
    global _MANIFEST
    if _MANIFEST is None:
        _MANIFEST = json.loads(_fetch(MANIFEST_URL))["models"]
    return _MANIFEST


def _config_json_fallback(config):
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        cls = type(config)
        return {"__class__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _config_json_fallback(getattr(config, f.name))
                           for f in dataclasses.fields(config)}}
    if isinstance(config, (list, tuple)):
        return [_config_json_fallback(x) for x in config]
    if isinstance(config, dict):
        return {str(k): _config_json_fallback(v) for k, v in config.items()}
    if hasattr(config, "item"):
        return config.item()
    return config


def install_model_hook() -> str:
    """Make attnbook's ``cached`` find the build's files for a configuration the build trained.

    ``cached`` names its files ``<ConfigName>-<key[:24]>`` with ``key = cache_key(config, fn)``,
    looked up in its module's globals. The hook replaces that global: for a configuration in
    the manifest it downloads the build's two files into ``$ATTNBOOK_CACHE_DIR`` (checking their
    sha256) and returns the build's key, so ``cached`` loads them exactly as a rebuild would;
    any other configuration (the reader changed it) gets the real key and trains here.
    Returns the name of the module patched.
    """
    import importlib

    module = None
    for name in ("attnbook.cache", "attnbook.train"):
        try:
            candidate = importlib.import_module(name)
        except ImportError:
            continue
        if callable(getattr(candidate, "cached", None)) and "cache_key" in candidate.cached.__globals__:
            module = candidate
            break
    if module is None:
        return ""
    scope = module.cached.__globals__
    original = scope["cache_key"]
    to_json = scope.get("_config_json", _config_json_fallback)

    def browser_cache_key(config, fn=None):
        key = original(config, fn)  # validates the configuration as the build does
        canonical = json.dumps(to_json(config), sort_keys=True, separators=(",", ":"))
        entry = _manifest().get(canonical)
        label = type(config).__name__
        if entry is None:
            _send("note", {"text": f"No weights from the build match this {label} (changed?): "
                                   "training it here, in your browser, which can take minutes."})
            return key
        os.makedirs(os.environ["ATTNBOOK_CACHE_DIR"], exist_ok=True)
        for suffix, digest in entry["sha256"].items():
            path = os.path.join(os.environ["ATTNBOOK_CACHE_DIR"], f"{entry['stem']}.{suffix}")
            if not os.path.exists(path):
                data = _fetch(f"{MODELS}{entry['stem']}.{suffix}")
                if hashlib.sha256(data).hexdigest() != digest:
                    raise OSError(f"{entry['stem']}.{suffix}: damaged download (sha256 mismatch)")
                with open(path, "wb") as out:
                    out.write(data)
        size = f"{entry['bytes'] / 1e6:.1f} MB" if entry["bytes"] >= 1e5 else f"{entry['bytes'] / 1e3:.0f} kB"
        _send("note", {"text": f"Loaded the {label} model this page's build trained "
                               f"({size}) instead of training it here: "
                               "the model is the one the page describes."})
        return entry["stem"].split("-", 1)[1]

    scope["cache_key"] = browser_cache_key
    return module.__name__


# -- running a cell ------------------------------------------------------------------------

def relaxed(source: str, names: tuple, marked: bool) -> bool:
    """Called when an assert fails: True (and a note) if it checks a measurement of time or memory."""
    measured = sorted(set(names) & MEASURED)
    if not (marked or measured):
        return False
    why = f"it reads {', '.join(measured)}, measured with a clock or tracemalloc" if measured else "it is marked so"
    _send("note", {"text": f"Relaxed in the browser: `{source}` did not hold here ({why}). NumPy in the "
                           "browser runs without BLAS, in single-threaded WebAssembly, so times and memory "
                           "differ from the build's machine, which checks this assert."})
    return True


def _count_clock_reads(module, names) -> None:
    """Wrap clock and memory readers so that a statement that reads one is known (see _trace)."""
    for name in names:
        original = getattr(module, name, None)
        if original is None or getattr(original, "_live_wrapped", False):
            continue

        def reader(*args, _original=original, **kwargs):
            CLOCK_READS[0] += 1
            return _original(*args, **kwargs)

        reader._live_wrapped = True
        setattr(module, name, reader)


def _written(stmt) -> tuple[set, set]:
    """(names bound by ``stmt``, names it may mutate: receivers of method calls, item and
    attribute assignment targets)."""
    bound, mutated = set(), set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(node.ctx, ast.Store):
            base = node.value
            while isinstance(base, (ast.Subscript, ast.Attribute)):
                base = base.value
            if isinstance(base, ast.Name):
                mutated.add(base.id)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Name):
            mutated.add(node.func.value.id)
    return bound, mutated


def _trace(stmt, namespace: dict, read_clock: bool) -> None:
    """Update MEASURED after ``stmt`` ran: its written data names are measured if it read a clock
    or a measured name; names it rebinds otherwise are measured no more."""
    read = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    bound, mutated = _written(stmt)
    if read_clock or (read & MEASURED):
        for name in bound | mutated:
            value = namespace.get(name)
            if not (callable(value) or isinstance(value, types.ModuleType)):
                MEASURED.add(name)
    else:
        MEASURED.difference_update(bound)


class _Relaxer(ast.NodeTransformer):
    """``assert t, m`` becomes ``if not t: if not __live_relaxed__(...): raise AssertionError(m)``."""

    def __init__(self, code: str):
        self.code = code
        self.lines = code.splitlines()

    def visit_Assert(self, node: ast.Assert):
        source = ast.get_source_segment(self.code, node) or "assert ..."
        line = self.lines[node.lineno - 1] if node.lineno <= len(self.lines) else ""
        names = sorted({n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)})
        check = ast.Call(ast.Name("__live_relaxed__", ast.Load()),
                         [ast.Constant(source), ast.Tuple([ast.Constant(n) for n in names], ast.Load()),
                          ast.Constant(RELAX_MARK in line)], [])
        error = ast.Call(ast.Name("AssertionError", ast.Load()), [node.msg] if node.msg else [], [])
        inner = ast.If(ast.UnaryOp(ast.Not(), check), [ast.Raise(error, None)], [])
        return ast.copy_location(ast.If(ast.UnaryOp(ast.Not(), node.test), [inner], []), node)


def run(code: str, cell: int, label: str) -> bool:
    """Run one cell in ``__main__``; True if it finished without an exception."""
    global CELL
    import __main__

    CELL = cell
    LAST["measured"] = False
    clock_reads = CLOCK_READS[0]
    namespace = __main__.__dict__
    namespace["__live_relaxed__"] = relaxed
    filename = f"<{label}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    try:
        tree = ast.parse(code, filename)
        tree = ast.fix_missing_locations(_Relaxer(code).visit(tree))
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr) and not code.rstrip().endswith(";"):
            last = ast.Expression(tree.body.pop().value)
        for stmt in tree.body:  # one at a time, to know which statements read a clock
            reads = CLOCK_READS[0]
            exec(compile(ast.Module([stmt], []), filename, "exec"), namespace)
            _trace(stmt, namespace, CLOCK_READS[0] != reads)
        if last is not None:
            value = eval(compile(last, filename, "eval"), namespace)
            from matplotlib.artist import Artist
            from matplotlib.figure import Figure

            if not isinstance(value, Figure):  # an open figure is shown below anyway
                if value is not None:
                    _send("value", {"text": repr(value)})
                    namespace["_"] = value
        _flush_figures()
        return True
    except BaseException as err:  # noqa: BLE001 - the reader's code may raise anything
        tb = err.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != filename:
            tb = tb.tb_next  # drop the runner's own frames
        text = "".join(traceback.format_exception(type(err), err, tb))
        _send("error", {"text": text})
        try:
            _flush_figures()
        except Exception:  # noqa: BLE001
            pass
        return False
    finally:
        sys.stdout.flush()
        LAST["measured"] = CLOCK_READS[0] != clock_reads
        CELL = None


def setup(send, base: str, models: str) -> str:
    """Prepare the interpreter; returns a one-line description of what was set up.

    ``base`` is the URL of the runner's folder, ``models`` that of the manifest of the exported models."""
    global SEND, BASE, MODELS, MANIFEST_URL
    SEND, BASE, MANIFEST_URL = send, base, models
    MODELS = models.split("?")[0].rsplit("/", 1)[0] + "/"
    sys.stdout, sys.stderr = _Stream("stdout"), _Stream("stderr")
    import time
    import tracemalloc

    if sys.platform == "emscripten":
        # Pyodide's process_time() is always 0.0 (measured: no change in 2e6 calls), so every
        # "CPU time" benchmark divides by zero or loops to its repeat limit. The worker has one
        # thread: its wall clock is the closest measure.
        time.process_time, time.process_time_ns = time.perf_counter, time.perf_counter_ns
        time.thread_time, time.thread_time_ns = time.perf_counter, time.perf_counter_ns
    _count_clock_reads(time, ("perf_counter", "perf_counter_ns", "process_time", "process_time_ns",
                              "time", "time_ns", "monotonic", "monotonic_ns", "thread_time"))
    _count_clock_reads(tracemalloc, ("get_traced_memory", "take_snapshot"))
    os.environ.setdefault("ATTNBOOK_CACHE_DIR", MODEL_DIR)
    os.environ.setdefault("MPLBACKEND", "agg")
    import matplotlib

    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    plt.show = lambda *args, **kwargs: _flush_figures()
    _install_myst_nb()
    _install_ipython_display()
    patched = install_model_hook()
    import numpy

    return (f"Python {sys.version.split()[0]}, NumPy {numpy.__version__}, "
            f"matplotlib {matplotlib.__version__}" + (f"; models from the build via {patched}" if patched else ""))
