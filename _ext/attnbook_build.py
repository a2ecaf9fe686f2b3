"""Sphinx extension: executed pages that cannot be stale, and warnings that cannot be lost.

jupyter-cache keys an executed page on the page's own code cells only (myst-nb #299,
jupyter-book #1633): edit ``attnbook``, upgrade NumPy or change Python, and it keeps serving
the old outputs. Instead of detecting such changes, this extension makes them choose the
cache: in ``config-inited`` it hashes everything an executed page depends on besides its own
code, and points myst-nb's execution cache at a folder named by that hash::

    _build/.jupyter_cache/<hash>/      jupyter-cache's database and executed notebooks
    _build/.jupyter_cache/<hash>/inputs.json   what went into the hash (to see why it changed)

A new hash means an empty cache, so every page executes again; and since the cache path is a
configuration value that Sphinx records, Sphinx also reads every page again. Folders of other
hashes are removed. The hash covers (see :func:`environment_inputs`):

- every file under ``attnbook_sources`` (the folder holding ``attnbook`` and ``book_recipes``),
  by path relative to it and content, so a moved checkout with the same sources hashes the same;
- the files ``attnbook_hash_files`` (``code/pyproject.toml`` and the requirements files);
- the Python version and the name and version of every distribution installed beside Sphinx
  (the kernels run in the same environment), so an upgrade by hand counts too (pip,
  setuptools and wheel aside: they install, and never run in a page);
- ``attnbook_threads``, the BLAS thread count, which changes floating-point results.

A build that warned or failed never leaves state that lets the next build pass: its saved
environment is removed at ``build-finished``, so the next build reads every page again and
repeats every warning (Sphinx itself does this only on an exception). Pages that executed
successfully still come from the cache; a page whose execution failed is not cached and
executes again. myst-nb's reports of failed pages (``<outdir>/reports``) are cleared when a
build starts: every failing page of this build writes its report again.

Kernels inherit this process's environment, so here, before any kernel starts, the BLAS
thread count is pinned (thread count changes summation order, and so training trajectories,
even with fixed seeds), glibc is told to keep mid-sized arrays mapped (faster training, same
numbers), and trained models are cached for the build under ``_build/.attnbook_cache``
(``ATTNBOOK_CACHE_DIR``). The pages are executed two at a time by ``attnbook_parallel``,
which this extension loads.

Configuration (``sphinx: config:`` in ``_config.yml``):

``attnbook_sources``
    Folder (relative to the book's root) whose files are hashed.
``attnbook_hash_files``
    Further files (relative to the book's root) whose content is hashed.
``attnbook_threads``
    Thread count for BLAS/OpenMP in executed pages.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path

from sphinx.application import ENV_PICKLE_FILENAME, Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Bump when the meaning of the hash changes (what it covers, or how outputs are produced).
HASH_SCHEME = "attnbook-execution-2"
HASH_FOLDER = re.compile(r"^[0-9a-f]{16}$")
INPUTS_NAME = "inputs.json"
# What jupyter-cache kept directly in _build/.jupyter_cache before caches had hash folders.
LEGACY_ENTRIES = ("global.db", "executed", "__version__.txt", "attnbook-sources.sha256")
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "268435456"}
THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def _ignored(parts: tuple[str, ...]) -> bool:
    # Byte code, install metadata (pip install -e writes *.egg-info next to the sources) and
    # hidden folders of tools (.pytest_cache, .hypothesis) are not sources.
    return any(
        p == "__pycache__" or p.endswith((".pyc", ".pyo", ".egg-info")) or p.startswith(".")
        for p in parts
    )


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def source_digests(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every source file under ``folder``."""
    found = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.is_file() and not _ignored(relative.parts):
            found[relative.as_posix()] = file_digest(path)
    return found


# Installers: dev.py upgrades pip whenever it installs, and none of them runs in a page.
NOT_HASHED = {"pip", "setuptools", "wheel"}


def installed_distributions() -> list[str]:
    """``name==version`` of every distribution importable here (installers aside), sorted."""
    found = set()
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in NOT_HASHED:
            found.add(f"{name}=={dist.version}")
    return sorted(found)


def environment_inputs(root: Path, sources: str, files: list[str], threads: int) -> dict:
    """Everything an executed page depends on besides its own code, as a JSON-able dict."""
    folder = (root / sources).resolve()
    return {
        "scheme": HASH_SCHEME,
        "sources": {
            f"{sources}/{name}": digest for name, digest in source_digests(folder).items()
        } if folder.is_dir() else {f"{sources}/": "missing"},
        "files": {
            name: file_digest(root / name) if (root / name).is_file() else "missing"
            for name in sorted(files)
        },
        "python": f"{sys.implementation.name} {sys.version} {platform.machine()}",
        "distributions": installed_distributions(),
        "threads": str(threads),
    }


def environment_hash(inputs: dict) -> str:
    text = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_inputs(old: dict, new: dict) -> list[str]:
    """Names of what differs between two ``environment_inputs`` (for the log)."""
    changed = []
    for group in ("sources", "files"):
        a, b = old.get(group, {}), new.get(group, {})
        changed += sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
    a, b = set(old.get("distributions", [])), set(new.get("distributions", []))
    changed += [f"installed {d}" for d in sorted(b - a)]
    changed += [f"removed {d}" for d in sorted(a - b)]
    for key in ("python", "threads", "scheme"):
        if old.get(key) != new.get(key):
            changed.append(key)
    return changed


def cache_base(app: Sphinx, config) -> Path:
    """The folder that holds one execution cache per hash."""
    configured = config.nb_execution_cache_path  # execute: cache: in _config.yml
    if configured:
        return (Path(app.confdir) / configured).resolve()
    return (Path(app.outdir).parent / ".jupyter_cache").resolve()


def previous_inputs(base: Path, current: str) -> dict | None:
    """The inputs of the most recently used other cache under ``base``, if any."""
    others = [p for p in base.glob("*/" + INPUTS_NAME) if p.parent.name != current]
    if not others:
        return None
    try:
        return json.loads(max(others, key=lambda p: p.stat().st_mtime).read_text())
    except (OSError, ValueError):
        return None


def prune(base: Path, keep: str) -> list[str]:
    """Remove every other hash folder, and the single-cache layout of earlier versions."""
    removed = []
    for entry in sorted(base.iterdir()):
        if (HASH_FOLDER.match(entry.name) and entry.name != keep) or entry.name in LEGACY_ENTRIES:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def choose_execution_cache(app: Sphinx, config) -> None:
    """Point myst-nb's execution cache at the folder of this environment's hash."""
    root = Path(app.confdir)
    base = cache_base(app, config)
    inputs = environment_inputs(
        root, config.attnbook_sources, list(config.attnbook_hash_files), config.attnbook_threads
    )
    current = environment_hash(inputs)
    folder = base / current
    # A configuration value: when it changes, Sphinx reads every page again.
    config.nb_execution_cache_path = str(folder)
    config.attnbook_environment_hash = current
    if config.nb_execution_mode != "cache":
        return
    if not (root / config.attnbook_sources).is_dir():
        logger.warning(f"attnbook_sources: {root / config.attnbook_sources} is not a folder; "
                       "check _config.yml")
    for name, digest in inputs["files"].items():
        if digest == "missing":
            logger.warning(f"attnbook_hash_files: {root / name} does not exist; check _config.yml")
    base.mkdir(parents=True, exist_ok=True)
    if not folder.is_dir():
        old = previous_inputs(base, current)
        why = ", ".join(changed_inputs(old, inputs)[:8]) if old else "no earlier cache"
        logger.info(f"[attnbook] new execution cache {current} ({why}): every page executes")
    folder.mkdir(exist_ok=True)
    (folder / INPUTS_NAME).write_text(json.dumps(inputs, indent=1, sort_keys=True) + "\n")
    removed = prune(base, keep=current)
    if removed:
        logger.info(f"[attnbook] removed the execution caches of other environments: {removed}")


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
    # Models trained by one page are reused by later pages of the same build (attnbook keys
    # them on their configuration and the package sources); `clean --all` removes them.
    os.environ.setdefault(
        "ATTNBOOK_CACHE_DIR", str(Path(app.outdir).parent / ".attnbook_cache")
    )


def normalise_nitpick_ignore(app: Sphinx, config) -> None:
    # _config.yml can only give lists; Sphinx looks (type, target) tuples up in this set.
    config.nitpick_ignore = {tuple(entry) for entry in config.nitpick_ignore}


def clear_reports(app: Sphinx) -> None:
    # myst-nb writes <outdir>/reports/<page>.err.log for a failed page and never removes it.
    # Every failing page writes its report again in this build: a previous build that had a
    # failing page warned, so its environment was removed and every page is read again.
    shutil.rmtree(Path(app.outdir) / "reports", ignore_errors=True)


def forget_failed_build(app: Sphinx, exception) -> None:
    """Remove the saved environment of a build that warned or failed."""
    warnings = getattr(app, "_warncount", None)  # Sphinx's own count; unknown: assume some
    if exception is None and warnings == 0:
        return
    envfile = Path(app.doctreedir) / ENV_PICKLE_FILENAME
    if envfile.is_file():
        envfile.unlink()
        logger.info("[attnbook] this build warned or failed: its saved environment is removed, "
                    "so the next build reads every page again and repeats every warning")


def setup(app: Sphinx) -> dict:
    app.add_config_value("attnbook_sources", "code/src", "env")
    app.add_config_value(
        "attnbook_hash_files",
        ["code/pyproject.toml", "requirements.txt", "requirements-test.txt"],
        "env",
    )
    app.add_config_value("attnbook_threads", 1, "env")
    app.add_config_value("attnbook_environment_hash", "", "env")  # set by choose_execution_cache
    # After myst-nb's own config-inited handlers (priority 500), before builder-inited, where
    # myst-nb reads nb_execution_cache_path.
    app.connect("config-inited", choose_execution_cache, priority=800)
    app.connect("config-inited", prepare_kernel_environment)
    app.connect("config-inited", normalise_nitpick_ignore)
    app.connect("builder-inited", clear_reports)
    app.connect("build-finished", forget_failed_build)
    app.setup_extension("attnbook_parallel")
    return {"version": "2.0", "parallel_read_safe": True, "parallel_write_safe": True}
