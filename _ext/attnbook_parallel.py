"""Sphinx extension: execute the pages that need it two at a time, before Sphinx reads them;
write the HTML pages in parallel after Sphinx has read them.

myst-nb executes a page when Sphinx reads it, so pages execute one after another and, on a
2-core machine, one core idles (each kernel runs on one BLAS thread, see attnbook_build).
Here, in ``env-before-read-docs``, every page about to be read whose notebook is not in the
execution cache is executed first, ``attnbook_execution_workers`` at a time (each in its own
worker process and kernel), and stored in the cache exactly as myst-nb stores it. Sphinx then
reads the pages and myst-nb finds every one of them in the cache.

What keeps this equivalent to myst-nb executing the pages itself:

- **The same notebook.** jupyter-cache matches a page by the hash of its code cells and
  kernelspec. Pages are read with myst-nb's own reader and configuration, kernel aliases and
  per-page ``mystnb`` settings applied as myst-nb's parser applies them, so the notebook
  executed here is the one myst-nb looks up.
- **The same execution.** jupyter-cache's ``single_nb_execution``, the function myst-nb's cache
  client calls, with the same working folder (the page's folder, or a temporary one with
  ``execution_in_temp``), ``execute.timeout``, ``allow_errors`` and notebook-level overrides.
  Pages share no state but the files they write (the trained-model cache is safe for two
  processes), and every kernel has the same single BLAS thread, so outputs do not depend on
  which page ran beside which.
- **Kernels that could not start.** Two kernels starting at the same moment can pick the same
  port, and one dies before it runs a cell; that page's kernel is started again (up to three
  starts), which changes nothing it computes (:func:`execute`).
- **The same failures.** A page that fails is not cached: myst-nb executes it again when it
  reads it and reports it as always (a warning with the traceback, and
  ``<outdir>/reports/<page>.err.log``), so a strict build fails. Only a failing page executes
  twice.
- **A guard.** After the pages are read, any page that myst-nb executed and cached itself is a
  warning: either its notebook hashed differently here (the two readers disagree: nothing was
  gained, and it would go unnoticed), or it failed beside another page and passed alone (a race
  between pages, shown with its parallel traceback).

- **Executed downloads.** myst-nb writes the ``.ipynb`` that readers download with outputs only
  when it executed the page itself; for a page from the cache (every page, now) it is written
  here, merged with the cached outputs (:func:`write_executed_notebooks`).

The pages listed in ``attnbook_execute_first`` start first, in that order; then the others,
longest first by their last measured time (kept in ``_build/.jupyter_cache/execution-times.json``
across caches), then the rest in document order. The wall and CPU time of every
page (the CPU time of its kernel and worker, which does not depend on how busy the machine is)
are logged and kept in that file.

Configuration (``sphinx: config:`` in ``_config.yml``):

``attnbook_execution_workers``
    How many pages execute at once (default 2).
``attnbook_execute_first``
    Docnames of the pages to start first, in order: the longest, arranged so that no page asks
    for a trained model while another page is still training it.
``attnbook_write_workers``
    How many processes write HTML pages at once (default 2; 1 writes them one after another),
    see :func:`write_in_parallel`.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import nbformat
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

HISTORY_NAME = "execution-times.json"


@dataclass
class Page:
    docname: str
    path: Path
    notebook: nbformat.NotebookNode
    cwd: str | None  # None: a temporary folder (execution_in_temp)
    timeout: int | None
    allow_errors: bool


def read_page(env, docname: str):
    """``(notebook, nb_config)`` as myst-nb's parser gets them from ``docname``, or None.

    Mirrors ``myst_nb.sphinx_.Parser.parse`` up to the point where it creates the execution
    client: the reader, the kernel aliases and the per-page configuration.
    """
    import re

    from myst_nb.core.nb_to_tokens import nb_node_to_dict
    from myst_nb.core.read import create_nb_reader

    path = env.doc2path(docname)
    text = Path(path).read_text(encoding=env.settings.get("input_encoding", "utf-8-sig"))
    nb_config = env.mystnb_config
    reader = create_nb_reader(str(path), env.myst_config, nb_config, text)
    if reader is None:
        return None
    notebook = reader.read(text)
    kernel = notebook.metadata.get("kernelspec", {}).get("name", None)
    if kernel is not None and nb_config.kernel_rgx_aliases:
        for pattern, alias in nb_config.kernel_rgx_aliases.items():
            if re.fullmatch(pattern, kernel):
                notebook.metadata["kernelspec"]["name"] = alias
                break
    if nb_config.metadata_key in notebook.metadata:
        overrides = nb_node_to_dict(notebook.metadata[nb_config.metadata_key])
        overrides.pop("output_folder", None)
        nb_config = nb_config.copy(**overrides)  # an invalid override: myst-nb reports it
    return notebook, nb_config


def excluded(path: Path, nb_config) -> bool:
    posix = PurePosixPath(path.as_posix())
    return any(posix.match(p) for p in nb_config.execution_excludepatterns)


def pages_to_execute(env, docnames, cache) -> list[Page]:
    """The pages among ``docnames`` that myst-nb would execute: notebooks not in ``cache``."""
    known = {record.hashkey for record in cache.list_cache_records()}
    pages = []
    for docname in docnames:
        path = Path(env.doc2path(docname))
        try:
            read = read_page(env, docname)
        except Exception as err:  # noqa: BLE001 - myst-nb reports it when it reads the page
            logger.info(f"[attnbook] {docname}: not executed in parallel ({err})")
            continue
        if read is None:
            continue
        notebook, nb_config = read
        if nb_config.execution_mode != "cache" or excluded(path, nb_config):
            continue
        _, key = cache.create_hashed_notebook(notebook)
        if key in known:  # cached, or another page with the same code is queued
            continue
        known.add(key)
        pages.append(Page(
            docname, path, notebook,
            cwd=None if nb_config.execution_in_temp else str(path.parent),
            timeout=nb_config.execution_timeout,
            allow_errors=nb_config.execution_allow_errors,
        ))
    return pages


def schedule(pages: list[Page], history: dict, first: list[str]) -> list[Page]:
    """``first`` pages in their order, then the others longest first (measured), then the rest.

    The ``first`` order is kept even when times are known: it also encodes which page trains a
    model that another page loads (a page that asks for a model another page is training waits
    for it, idle).
    """
    def key(item):
        index, page = item
        if page.docname in first:
            return (0, first.index(page.docname), index)
        if page.docname in history:
            return (1, -history[page.docname]["seconds"], index)
        return (2, 0, index)

    return [page for _, page in sorted(enumerate(pages), key=key)]


IOPUB_TIMEOUT_S = 300  # seconds to wait for a finished cell's last outputs


# A kernel that could not start: jupyter_client picks its five ports by asking the system for
# free ones and releasing them before the kernel binds them, so two kernels starting at the
# same moment (two pages, at the start of a build) can pick the same port; the second then
# dies with "Address already in use" (in the kernel's own output) before it runs anything, and
# nbclient reports the message below. Seen once in a clean build.
KERNEL_START_FAILURES = ("Kernel died before replying to kernel_info",)
KERNEL_START_ATTEMPTS = 3


def kernel_did_not_start(result) -> bool:
    """True if ``result`` failed while its kernel started, before any cell ran."""
    if result.err is None:
        return False
    text = f"{result.err!r} {result.exc_string or ''}"
    ran = any(cell.get("execution_count") or cell.get("outputs")
              for cell in result.nb.cells if cell.cell_type == "code")
    return not ran and any(failure in text for failure in KERNEL_START_FAILURES)


def execute(notebook_json: str, cwd: str | None, timeout, allow_errors: bool) -> dict:
    """Execute one notebook (in a worker process of its own); return it and its costs.

    A kernel that dies while it starts, before any cell has run (:func:`kernel_did_not_start`),
    is started again, up to ``KERNEL_START_ATTEMPTS`` times in all, after a short random pause;
    any other failure is returned as it is.
    """
    import random
    import resource
    import tempfile
    from contextlib import nullcontext

    from jupyter_cache.executors.utils import single_nb_execution

    before = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    for attempt in range(1, KERNEL_START_ATTEMPTS + 1):
        notebook = nbformat.reads(notebook_json, as_version=4)  # executed in place: a fresh copy
        with (tempfile.TemporaryDirectory() if cwd is None else nullcontext(cwd)) as folder:
            # nbclient waits only 4 s (its default) for a cell's outputs after the cell has
            # finished and then drops the rest with a logged warning: on a loaded machine glued
            # values went missing that way. Wait long, and fail rather than lose an output.
            result = single_nb_execution(
                notebook, cwd=folder, timeout=timeout, allow_errors=allow_errors,
                meta_override=True, iopub_timeout=IOPUB_TIMEOUT_S, raise_on_iopub_timeout=True,
            )
        if attempt == KERNEL_START_ATTEMPTS or not kernel_did_not_start(result):
            break
        time.sleep(random.uniform(0.2, 1.0))  # out of step with the other page's kernel
    # The kernel is this process's child and has exited: its CPU time is in RUSAGE_CHILDREN.
    after = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    return {
        "notebook": nbformat.writes(result.nb),
        "seconds": result.time,
        "cpu_seconds": cpu,
        "error": type(result.err).__name__ if result.err is not None else None,
        "traceback": result.exc_string,
        "kernel_starts": attempt,
    }


def load_history(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def execute_pages(app: Sphinx, env, docnames: list[str]) -> None:
    """``env-before-read-docs``: fill the execution cache for the pages about to be read."""
    app.attnbook_parallel = None
    if env.mystnb_config.execution_mode != "cache":
        return
    state = {"failed": {}, "uris": {}, "records": set(), "read": list(docnames)}
    app.attnbook_parallel = state
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache_path = Path(env.mystnb_config.execution_cache_path)
    cache = get_cache(str(cache_path))
    pages = pages_to_execute(env, docnames, cache)
    history_path = cache_path.parent / HISTORY_NAME
    history = load_history(history_path)
    first = list(app.config.attnbook_execute_first)
    for docname in first:
        if docname not in env.found_docs:
            logger.warning(f"attnbook_execute_first: no page {docname!r}; check _config.yml",
                           type="attnbook", subtype="parallel")
    pages = schedule(pages, history, first)
    state["uris"] = {str(p.path): p.docname for p in pages}
    if not pages:
        state["records"] = {r.pk for r in cache.list_cache_records()}
        return
    workers = max(1, int(app.config.attnbook_execution_workers))
    logger.info(f"[attnbook] executing {len(pages)} page(s), {workers} at a time: "
                + ", ".join(p.docname for p in pages))
    start, done = time.perf_counter(), 0
    # A fresh process per page: its kernel's CPU time is measurable, and nothing leaks.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {
            pool.submit(execute, nbformat.writes(p.notebook), p.cwd, p.timeout, p.allow_errors): p
            for p in pages
        }
        for future in as_completed(futures):
            page, done = futures[future], done + 1
            try:
                result = future.result()
            except Exception as err:  # noqa: BLE001 - the worker died; myst-nb will try alone
                result = {"error": type(err).__name__, "traceback": repr(err),
                          "seconds": float("nan"), "cpu_seconds": float("nan")}
            costs = f"{result['seconds']:.1f} s, CPU {result['cpu_seconds']:.1f} s"
            if result["error"]:
                state["failed"][page.docname] = result["traceback"]
                logger.info(f"[attnbook] [{done}/{len(pages)}] {page.docname}: failed "
                            f"({result['error']}, {costs}); myst-nb executes it again to report it")
                continue
            executed = nbformat.reads(result["notebook"], as_version=4)
            cache.cache_notebook_bundle(
                CacheBundleIn(executed, str(page.path), data={
                    "execution_seconds": result["seconds"], "cpu_seconds": result["cpu_seconds"],
                }),
                check_validity=False, overwrite=True,
            )
            history[page.docname] = {"seconds": round(result["seconds"], 2),
                                     "cpu_seconds": round(result["cpu_seconds"], 2)}
            restarts = result["kernel_starts"] - 1
            again = (f"; its kernel failed to start {restarts} time(s) and was started again"
                     if restarts else "")
            logger.info(f"[attnbook] [{done}/{len(pages)}] {page.docname}: executed ({costs}{again})")
    wall = time.perf_counter() - start
    total = sum(history.get(p.docname, {}).get("cpu_seconds", 0) for p in pages)
    logger.info(f"[attnbook] executed {len(pages)} page(s) in {wall:.1f} s "
                f"(CPU {total:.1f} s over the pages that passed)")
    history_path.write_text(json.dumps(history, indent=1, sort_keys=True) + "\n")
    state["records"] = {r.pk for r in cache.list_cache_records()}


def check_nothing_executed_twice(app: Sphinx, env) -> None:
    """``env-updated``: warn about every page myst-nb had to execute and cache itself."""
    state = getattr(app, "attnbook_parallel", None)
    if state is None:
        return
    from jupyter_cache import get_cache

    cache = get_cache(env.mystnb_config.execution_cache_path)
    for record in cache.list_cache_records():
        if record.pk in state["records"]:
            continue
        docname = state["uris"].get(record.uri) or env.path2doc(record.uri) or record.uri
        if docname in state["failed"]:
            logger.warning(
                f"{docname} failed when executed beside other pages and passed when executed "
                f"alone: pages must not depend on each other. The parallel failure:\n"
                f"{state['failed'][docname]}",
                location=docname, type="attnbook", subtype="parallel",
            )
        else:
            logger.warning(
                f"myst-nb executed {docname} itself: the notebook it read hashes differently "
                "from the one executed in parallel (_ext/attnbook_parallel.py reads pages as "
                "myst-nb does; has myst-nb, or a source-read handler, changed?)",
                location=docname, type="attnbook", subtype="parallel",
            )


def write_executed_notebooks(app: Sphinx, env) -> None:
    """``env-updated``: give every page read from the cache its executed ``.ipynb``.

    myst-nb 1.4 writes ``jupyter_execute/<page>.ipynb`` (which sphinx-book-theme offers as the
    page's ``.ipynb`` download) from the notebook it read; it has outputs only when myst-nb
    executed the page itself, in place. A page served from the cache, as every page now is,
    would be offered without outputs. Write the notebook merged with its cached outputs.
    """
    state = getattr(app, "attnbook_parallel", None)
    if state is None:
        return
    from jupyter_cache import get_cache

    cache = get_cache(env.mystnb_config.execution_cache_path)
    folder = Path(env.mystnb_config.output_folder)
    for docname in state["read"]:
        target = folder.joinpath(*(docname + ".ipynb").split("/"))
        if not target.is_file():
            continue
        read = read_page(env, docname)
        if read is None:
            continue
        try:
            _, merged = cache.merge_match_into_notebook(read[0])
        except KeyError:
            continue  # not in the cache (a failed page): as myst-nb wrote it
        target.write_text(nbformat.writes(merged), encoding="utf-8")


def write_in_parallel(app: Sphinx, env) -> None:
    """``env-updated``: let Sphinx write the HTML pages in ``attnbook_write_workers`` processes.

    ``jupyter-book build`` has no ``-j``, so Sphinx wrote one page after another; most of the
    writing is sphinx-codeautolink linking each page's code (about 12 s of the book's 20 s of
    writing), and one core idled. Sphinx's own parallel writing resolves each page in the main
    process and writes it (templates, ``html-page-context`` handlers, the file) in
    ``app.parallel - 1`` forked processes, in chunks of pages. Only the writing is parallel:
    ``app.parallel`` is raised after the pages are read and restored when the build finishes
    (the execution above already uses both cores while Sphinx reads). No extension the book
    loads declares itself unsafe for parallel writing; if one did, or did not declare it at
    all, Sphinx would warn and write serially, and a strict build would fail.
    """
    workers = int(app.config.attnbook_write_workers)
    if workers > 1 and app.builder.allow_parallel and app.parallel < workers + 1:
        app.attnbook_parallel_before = app.parallel
        app.parallel = workers + 1  # the main process resolves, ``workers`` children write


def restore_parallel(app: Sphinx, exception) -> None:
    """``build-finished``: undo :func:`write_in_parallel` (a later build in this process reads
    serially)."""
    before = getattr(app, "attnbook_parallel_before", None)
    if before is not None:
        app.parallel = before
        app.attnbook_parallel_before = None


def setup(app: Sphinx) -> dict:
    app.add_config_value("attnbook_execution_workers", 2, "")
    app.add_config_value("attnbook_write_workers", 2, "")
    app.add_config_value("attnbook_execute_first", [], "")
    app.connect("env-before-read-docs", execute_pages)
    app.connect("env-updated", check_nothing_executed_twice)
    app.connect("env-updated", write_executed_notebooks)
    app.connect("env-updated", write_in_parallel)
    app.connect("build-finished", restore_parallel)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
