"""Train once per build: a model cache whose keys cover everything that decides the model.

:func:`cached` stores a trained model under a key (:func:`cache_key`) that hashes the
configuration and a fingerprint of the training function; what it cannot fingerprint, it
refuses, so a result is never served for code or data that has changed. Two processes
(two pages executing at once) asking for the same model train it once: the second waits
for the first and loads its result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._fingerprint import fingerprint, sources_digest
from .runtime import blas_threads
from .train import History

try:  # POSIX; elsewhere two processes may both train a model (writes stay atomic)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = ["cached", "cache_key", "cache_dir"]


def _config_json(config):
    """A JSON-able description of a (possibly nested) dataclass config, with its class."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        cls = type(config)
        return {"__class__": f"{cls.__module__}:{cls.__qualname__}",
                "fields": {f.name: _config_json(getattr(config, f.name)) for f in dataclasses.fields(config)}}
    if isinstance(config, (list, tuple)):
        return [_config_json(x) for x in config]
    if isinstance(config, dict):
        return {str(k): _config_json(v) for k, v in config.items()}
    if isinstance(config, (np.integer, np.floating)):
        return config.item()
    if config is None or isinstance(config, (bool, int, float, str)):
        return config
    raise ValueError(
        f"cached: the configuration holds a {type(config).__name__} ({config!r}), which cannot be "
        "hashed reliably; use numbers, strings, tuples and nested frozen dataclasses."
    )


def _config_from_json(obj):
    if isinstance(obj, dict) and "__class__" in obj:
        module, qualname = obj["__class__"].split(":")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        return cls(**{k: _config_from_json(v) for k, v in obj["fields"].items()})
    if isinstance(obj, list):
        return tuple(_config_from_json(x) for x in obj)
    return obj


def cache_dir():
    """The cache folder: ``$ATTNBOOK_CACHE_DIR``, else ``~/.cache/attnbook``.

    Returns
    -------
    pathlib.Path

    Examples
    --------
    >>> cache_dir().name in ("attnbook", os.path.basename(os.environ.get("ATTNBOOK_CACHE_DIR", "")))
    True

    See Also
    --------
    cached : stores models there.
    """
    return Path(os.environ.get("ATTNBOOK_CACHE_DIR") or Path.home() / ".cache" / "attnbook")


def cache_key(config, fn=None):
    """The hex key of ``config`` trained by ``fn`` in this build (the rule is in :func:`cached`).

    Parameters
    ----------
    config : frozen dataclass
    fn : callable, optional
        The training function.

    Returns
    -------
    str
        64 hexadecimal digits.

    Raises
    ------
    ValueError
        If ``config`` is not a frozen dataclass or holds values that cannot be hashed, or if
        ``fn`` depends on something that cannot be fingerprinted (the message names it).

    Examples
    --------
    >>> from attnbook.optim import Schedule
    >>> cache_key(Schedule("constant", 1e-3)) == cache_key(Schedule("constant", 1e-3))
    True
    >>> cache_key(Schedule("constant", 1e-3)) == cache_key(Schedule("constant", 2e-3))
    False

    See Also
    --------
    cached : uses it.
    """
    if not (dataclasses.is_dataclass(config) and not isinstance(config, type)
            and type(config).__dataclass_params__.frozen):
        raise ValueError(
            f"cached needs a frozen dataclass configuration, got {type(config).__name__}; declare it "
            "with @dataclass(frozen=True) so it cannot change after hashing."
        )
    parts = {
        "config": _config_json(config),
        "config_code": fingerprint(config, "the configuration"),
        "fn": fingerprint(fn, getattr(fn, "__qualname__", "the training function")) if fn is not None else "",
        "sources": sources_digest(), "numpy": np.__version__, "python": sys.version,
        "blas_threads": blas_threads(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _write_atomic(path, write):
    """Write through a temporary file and rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def _key_lock(path):
    """Hold an exclusive lock on ``path`` (created if missing); other holders wait."""
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks while another process trains this key
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(weights, meta):
    """The cached (model, history), or None if this key has not been stored."""
    if not (weights.exists() and meta.exists()):  # meta is written last
        return None
    info = json.loads(meta.read_text())
    module, qualname = info["model_class"].split(":")
    cls = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    model = cls(_config_from_json(info["model_config"]), rng=np.random.default_rng(0))
    with np.load(weights) as state:
        model.load_state_dict(dict(state))
    return model, History(**info["history"])


def cached(config, build_and_train_fn, directory=None):
    """Return ``build_and_train_fn(config)``'s (model, history), training only on a cache miss.

    **What the key covers.** The key hashes the configuration (its values and its class), a
    fingerprint of ``build_and_train_fn``, every file of the attnbook package, the Python and
    NumPy versions and the BLAS thread count. The fingerprint follows what the function
    depends on, recursively:

    - a function written outside attnbook and the installed libraries (a notebook cell,
      ``book_recipes``, a test): its bytecode and constants, its default arguments, the
      values in its closure cells, and every global name it reads;
    - a class written there: its bases, methods, properties and class attributes, and, for a
      dataclass, its fields and their defaults;
    - values: None, booleans, numbers, strings, bytes, NumPy scalars and dtypes, NumPy
      arrays (by dtype, shape and contents), tuples, lists, dicts and sets of these, dataclass
      instances (by class and fields), ``functools.partial`` objects;
    - anything of attnbook (its functions, classes, modules and module-level objects such as
      ``SRC_VOCAB``): by the digest of attnbook's source files, all but the drawing modules
      ``diagrams`` and ``style``, which no module that trains or decodes may import (the import
      contracts of ``.importlinter``): editing a figure retrains nothing;
    - anything of an installed library (in site-packages) or of the standard library: by its
      name and the library's version (the standard library's by Python's).

    **It fails closed.** Anything else the function reaches (a random generator, a model or
    Tensor in a global variable, an open file, an instance of an arbitrary class, a module of
    your own) is refused with a ``ValueError`` that names it and the path to it: pass it
    through the configuration, build it inside the function from the configuration, or make
    it a NumPy array. State read through a library (``os.environ``, a file, the clock) is
    outside the fingerprint: what the function reads that way belongs in the configuration.

    **Storage.** Weights are stored as ``<ConfigName>-<key>.npz`` and the history, the
    model's class and its configuration as ``<ConfigName>-<key>.json`` in :func:`cache_dir`,
    each written to a temporary file and renamed, so a reader never sees half a file. A
    process that finds no stored model takes a lock on ``<ConfigName>-<key>.lock`` before
    training; another process asking for the same key at the same moment waits for it and
    then loads the stored model instead of training it again (POSIX only; elsewhere both may
    train).

    Parameters
    ----------
    config : frozen dataclass
        Everything that decides the result (sizes, seed, steps, learning rate...).
    build_and_train_fn : callable
        ``build_and_train_fn(config)`` returns ``(model, history)``. The model must have a
        ``config`` attribute (a frozen dataclass) and be rebuildable as
        ``type(model)(model.config, rng=...)``, as every model of attnbook is.
    directory : str or Path, optional
        Overrides :func:`cache_dir`.

    Returns
    -------
    model : Module
    history : History

    Raises
    ------
    ValueError
        If ``config`` is not a frozen dataclass, the function depends on something that
        cannot be fingerprinted, or the model cannot be rebuilt.

    Examples
    --------
    >>> import tempfile
    >>> from dataclasses import dataclass
    >>> from attnbook.seq2seq import Seq2Seq, Seq2SeqConfig
    >>> @dataclass(frozen=True)
    ... class Run:
    ...     seed: int = 0
    >>> def train(run):
    ...     model = Seq2Seq(Seq2SeqConfig(10, 10), rng=np.random.default_rng(run.seed))
    ...     return model, History(losses=[1.0])
    >>> folder = tempfile.mkdtemp()
    >>> first, _ = cached(Run(), train, directory=folder)
    >>> again, history = cached(Run(), train, directory=folder)  # loaded, not trained
    >>> bool((again.out.W.data == first.out.W.data).all()), history.losses
    (True, [1.0])
    >>> rng = np.random.default_rng(0)
    >>> def train_from_a_global_generator(run):
    ...     return Seq2Seq(Seq2SeqConfig(10, 10), rng=rng), History()
    >>> cached(Run(), train_from_a_global_generator, directory=folder)
    Traceback (most recent call last):
    ...
    ValueError: cached cannot fingerprint a numpy.random._generator.Generator, reached from train_from_a_global_generator -> global 'rng'...

    See Also
    --------
    attnbook.train.fit : the training loop.
    Chapter 1, *The bottleneck problem*, trains its models through the cache.
    """
    key = cache_key(config, build_and_train_fn)
    folder = Path(directory) if directory is not None else cache_dir()
    stem = f"{type(config).__name__}-{key[:24]}"  # readable, and 96 bits of the key
    weights, meta = folder / f"{stem}.npz", folder / f"{stem}.json"
    found = _load(weights, meta)
    if found is not None:
        return found
    folder.mkdir(parents=True, exist_ok=True)
    with _key_lock(folder / f"{stem}.lock"):
        found = _load(weights, meta)  # trained by another process while this one waited
        if found is not None:
            return found
        model, history = build_and_train_fn(config)
        if not isinstance(history, History):
            raise ValueError(
                f"cached: build_and_train_fn must return (model, History), got a {type(history).__name__} "
                "as the history; return the History that fit() gives (or History() if there is none)."
            )
        if not hasattr(model, "config"):
            raise ValueError(
                f"cached: the model ({type(model).__name__}) has no .config, so it cannot be rebuilt "
                "from the cache; give it a frozen dataclass config and a (config, rng=...) constructor."
            )
        cls = type(model)
        info = {"model_class": f"{cls.__module__}:{cls.__qualname__}",
                "model_config": _config_json(model.config),
                "history": dataclasses.asdict(history), "config": _config_json(config)}
        _write_atomic(weights, lambda tmp: np.savez(tmp, **model.state_dict()))
        _write_atomic(meta, lambda tmp: Path(tmp).write_text(json.dumps(info)))
    return model, history
