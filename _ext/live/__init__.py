"""Sphinx extension: every code cell of every notebook page editable and runnable in the page.

Python runs in the reader's browser: Pyodide in a Web Worker, loaded from the site itself when
the reader first presses Run (a page that is only read requests nothing of it). What the build
does:

* ``doctree-read``: reads each notebook page's cells with myst-nb's own reader (the same cell
  indices myst-nb gives its cell containers), marks each rendered code cell with the class
  ``live-index-<i>`` and keeps every code cell's source, removed cells included: the browser
  runs them too, in order.
* ``html-page-context``: writes those sources into the page as a JSON script element
  (``#live-cells``) and adds ``_live/live.css`` and ``_live/live.js`` to that page only. The
  runner's files live in ``_ext/live`` (not ``_static``, whose scripts Jupyter Book adds to every
  page) and are copied into ``_build/html/_live`` when the build finishes, together with
  - ``pyodide/``: Pyodide 0.27.7, numpy and matplotlib, every file checked against its pinned
    sha256 or the official lock file (``runtime.py``);
  - ``wheels/``: a pure-Python wheel of ``code/src`` (attnbook, book_recipes), built per build
    (``wheel.py``);
  - ``models/``: the weights the build trained through ``cached`` and a manifest mapping each
    training configuration to its files (``weights.py``), so the browser loads the page's
    models instead of training them;
  - ``site.json``: what the worker loads, with content hashes against stale browser caches.

Configuration (``sphinx: config:``): ``live_pyodide_source`` (``pypi`` or ``release``; the
environment variable ``ATTNBOOK_PYODIDE_SOURCE`` overrides it), ``live_cache_dir`` (download
cache, default ``.cache/pyodide`` of the repository holding this extension),
``live_packages_dir`` (default its ``code/src``). Relative paths are taken from the book's folder.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import runtime  # noqa: E402
import weights  # noqa: E402
import wheel  # noqa: E402

logger = logging.getLogger(__name__)
OUT = "_live"
REPOSITORY = HERE.parents[1]
STATIC = ("live.js", "live.css", "worker.js", "runner.py")


def read_notebook(app: Sphinx, docname: str):
    """The notebook myst-nb reads for ``docname``, or None if the page is not a notebook."""
    from myst_nb.core.read import create_nb_reader

    path = app.env.doc2path(docname)
    text = Path(path).read_text(encoding="utf-8")
    md_config = getattr(app.env, "myst_config", None)
    if md_config is None:
        from myst_parser.config.main import MdParserConfig

        md_config = MdParserConfig()
    reader = create_nb_reader(str(path), md_config, app.env.mystnb_config, text)
    return None if reader is None else reader.read(text)


def collect_cells(app: Sphinx, doctree: nodes.document) -> None:
    docname = app.env.docname
    app.env.live_cells.pop(docname, None)
    try:
        notebook = read_notebook(app, docname)
    except Exception as err:  # not a notebook myst-nb can read: nothing to run
        logger.debug(f"[live] {docname}: not read as a notebook ({err})")
        return
    if notebook is None:
        return
    language = notebook.metadata.get("kernelspec", {}).get("language", "python")
    if language != "python":
        return
    cells = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code":
            tags = list(cell.metadata.get("tags", []))
            cells.append({"i": index, "src": cell.source, "tags": tags})
    if not cells:
        return
    known = {c["i"] for c in cells}
    for node in doctree.findall(nodes.container):
        if node.get("nb_element") == "cell_code" and node.get("cell_index") in known:
            node["classes"].append(f"live-index-{node['cell_index']}")
    app.env.live_cells[docname] = cells


def page_assets(app: Sphinx, pagename, templatename, context, doctree) -> None:
    cells = getattr(app.env, "live_cells", {}).get(pagename)
    if not cells or "body" not in context:
        return
    base = context["pathto"](OUT + "/", 1)
    stamp = app.env.live_stamp if hasattr(app.env, "live_stamp") else ""
    payload = json.dumps({"cells": cells}, ensure_ascii=True).replace("<", "\\u003c")
    context["body"] += (f'\n<script type="application/json" id="live-cells" data-base="{html.escape(base)}">'
                        f"{payload}</script>\n")
    context["metatags"] = context.get("metatags", "") + (
        f'\n<link rel="stylesheet" href="{html.escape(base)}live.css?v={stamp}">'
        f'\n<script defer src="{html.escape(base)}live.js?v={stamp}"></script>'
    )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def init_stamp(app: Sphinx) -> None:
    digest = hashlib.sha256()
    for name in STATIC:
        digest.update((HERE / name).read_bytes())
    app.env.live_stamp = digest.hexdigest()[:12]


def write_runtime(app: Sphinx, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    out = Path(app.outdir) / OUT
    out.mkdir(parents=True, exist_ok=True)
    for name in STATIC:
        shutil.copyfile(HERE / name, out / name)
    root = Path(app.confdir)
    source = os.environ.get("ATTNBOOK_PYODIDE_SOURCE") or app.config.live_pyodide_source
    try:
        sizes = runtime.assemble(out / "pyodide", source, root / app.config.live_cache_dir)
        shutil.rmtree(out / "wheels", ignore_errors=True)
        built = wheel.build_wheel(root / app.config.live_packages_dir, out / "wheels")
    except Exception as err:  # noqa: BLE001 - any failure leaves the pages without a runtime: say so
        logger.warning(f"[live] the in-page Python runtime could not be assembled: {err}",
                       type="live", subtype="runtime")
        return
    cache_dir = Path(os.environ.get("ATTNBOOK_CACHE_DIR") or Path(app.outdir).parent / ".attnbook_cache")
    models = weights.export(cache_dir, out / "models")
    config = {
        "pyodide": "pyodide/",
        "packages": list(runtime.PACKAGES),
        "wheels": [f"wheels/{built.name}?v={_digest(built)}"],
        "models": f"models/manifest.json?v={models['stamp']}",
        "runtime_bytes": sum(sizes.values()),
    }
    (out / "site.json").write_text(json.dumps(config, indent=1) + "\n")
    logger.info(f"[live] runtime {sum(sizes.values()) / 1e6:.1f} MB (budget {runtime.BUDGET / 1e6:.0f} MB), "
                f"wheel {built.stat().st_size / 1e3:.0f} kB, {models['count']} model(s) "
                f"{models['bytes'] / 1e6:.1f} MB")


def env_purge(app, env, docname):
    getattr(env, "live_cells", {}).pop(docname, None)


def env_merge(app, env, docnames, other):
    env.live_cells.update({d: c for d, c in getattr(other, "live_cells", {}).items() if d in docnames})


def env_init(app, env, docnames):
    if not hasattr(env, "live_cells"):
        env.live_cells = {}


def setup(app: Sphinx) -> dict:
    app.add_config_value("live_pyodide_source", "pypi", "html")
    app.add_config_value("live_cache_dir", str(REPOSITORY / ".cache" / "pyodide"), "html")
    app.add_config_value("live_packages_dir", str(REPOSITORY / "code" / "src"), "html")
    app.connect("env-before-read-docs", env_init)
    app.connect("env-purge-doc", env_purge)
    app.connect("env-merge-info", env_merge)
    app.connect("doctree-read", collect_cells)
    app.connect("builder-inited", lambda a: (env_init(a, a.env, []), init_stamp(a)))
    app.connect("html-page-context", page_assets)
    app.connect("build-finished", write_runtime)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 1}
