"""Sphinx extension: make the book's execution deterministic and never stale.

Two problems of myst-nb's execution cache that this book cannot live with:

1. jupyter-cache keys an executed page on its own code cells only. Editing a module of
   ``attnbook`` changes what every page that imports it would print, yet the cache keeps
   serving the old outputs, and Sphinx does not even re-read the unchanged page.
   (myst-nb #299, jupyter-book #1633.) This extension hashes the package sources; when the
   hash differs from the one recorded at the end of the last successful build, it removes
   the cached executions of every page that imports the package and marks those pages
   outdated, so they execute again. Pages that do not import it keep their cache.

2. The BLAS thread count changes floating-point summation order, and so training
   trajectories, even with fixed seeds. Kernels inherit this process's environment, so the
   thread count is pinned here, before any kernel starts. Trained models are cached for the
   build under ``_build/.attnbook_cache`` (``ATTNBOOK_CACHE_DIR``).

Configuration (``sphinx: config:`` in ``_config.yml``):

``attnbook_sources``
    Folder (relative to the book's root) whose files are hashed.
``attnbook_import_pattern``
    Regular expression that marks a page as depending on the package.
``attnbook_threads``
    Thread count for BLAS/OpenMP in executed pages.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

STAMP_NAME = "attnbook-sources.sha256"
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}
THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def sources_hash(folder: Path) -> str:
    """Hash every file under ``folder`` (path and bytes), ignoring caches."""
    digest = hashlib.sha256()
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in {".pyc", ".pyo"}
    )
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _cache_dir(app: Sphinx) -> Path:
    # myst-nb resolves its cache folder when the builder starts (by default next to the
    # output folder: _build/.jupyter_cache); read the resolved value, never guess it.
    mystnb_config = getattr(app.env, "mystnb_config", None)
    path = getattr(mystnb_config, "execution_cache_path", "") or ""
    if not path:
        path = Path(app.outdir).parent / ".jupyter_cache"
    return Path(path).resolve()


def _sources_dir(app: Sphinx) -> Path:
    return (Path(app.confdir) / app.config.attnbook_sources).resolve()


def prepare_kernel_environment(app: Sphinx, config) -> None:
    """Set what every executed page inherits: the thread count and the model cache."""
    n = str(config.attnbook_threads)
    for name in THREAD_VARIABLES:
        os.environ[name] = n
    # glibc returns freed arrays of a few hundred KiB to the system and faults them in again
    # on the next allocation; training allocates such arrays at every step. Keeping them
    # mapped made the book's models train 1.3-1.5x faster (bench/train_speed.py). Numbers
    # are unaffected: only where memory comes from changes.
    os.environ.update(MALLOC_ENV)
    # Models trained by one page are reused by later pages of the same build (attnbook.train
    # keys them on their configuration and the package sources); `clean --all` removes them.
    os.environ.setdefault(
        "ATTNBOOK_CACHE_DIR", str(Path(app.outdir).parent / ".attnbook_cache")
    )


def normalise_nitpick_ignore(app: Sphinx, config) -> None:
    # _config.yml can only give lists; Sphinx looks (type, target) tuples up in this set.
    config.nitpick_ignore = {tuple(entry) for entry in config.nitpick_ignore}


def pages_importing(app: Sphinx, env, pattern: re.Pattern) -> dict[str, Path]:
    """Map docname -> source file for every page whose text matches ``pattern``."""
    found = {}
    for docname in sorted(env.found_docs):
        path = Path(env.doc2path(docname))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if pattern.search(text):
            found[docname] = path.resolve()
    return found


def invalidate_stale_pages(app: Sphinx, env, added, changed, removed) -> list[str]:
    if app.config.nb_execution_mode != "cache":
        return []
    source = _sources_dir(app)
    if not source.is_dir():
        logger.warning(f"attnbook_sources: {source} is not a folder; check _config.yml")
        return []
    current = sources_hash(source)
    app.env.attnbook_sources_hash = current  # recorded on success, in record_hash()
    stamp = _cache_dir(app) / STAMP_NAME
    if stamp.is_file() and stamp.read_text().strip() == current:
        return []

    pattern = re.compile(app.config.attnbook_import_pattern, re.MULTILINE)
    dependent = pages_importing(app, env, pattern)
    removed_records = 0
    cache_path = _cache_dir(app)
    if cache_path.is_dir():
        from jupyter_cache import get_cache

        cache = get_cache(str(cache_path))
        targets = set(dependent.values())
        for record in cache.list_cache_records():
            if record.uri and Path(record.uri).resolve() in targets:
                cache.remove_cache(record.pk)
                removed_records += 1
    logger.info(
        f"[attnbook] package sources changed: dropped {removed_records} cached execution(s); "
        f"re-executing {len(dependent)} page(s) that import attnbook"
    )
    return sorted(set(dependent) - set(added) - set(changed))


def record_hash(app: Sphinx, exception) -> None:
    current = getattr(app.env, "attnbook_sources_hash", None)
    if exception is not None or current is None:
        return
    cache_path = _cache_dir(app)
    if cache_path.is_dir():
        (cache_path / STAMP_NAME).write_text(current + "\n")


def setup(app: Sphinx) -> dict:
    app.add_config_value("attnbook_sources", "code/src/attnbook", "env")
    app.add_config_value(
        "attnbook_import_pattern", r"^\s*(?:import|from)\s+attnbook\b", "env"
    )
    app.add_config_value("attnbook_threads", 1, "env")
    app.connect("config-inited", prepare_kernel_environment)
    app.connect("config-inited", normalise_nitpick_ignore)
    app.connect("env-get-outdated", invalidate_stale_pages)
    app.connect("build-finished", record_hash)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
