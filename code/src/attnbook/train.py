"""Training loop and a per-build model cache.

``fit`` runs a fixed number of updates and returns a :class:`History`. ``cached`` trains a
model once per build: the result is stored under a key that hashes the configuration,
the training code, every source file of attnbook, NumPy's version and the BLAS thread count (which changes
training trajectories), so a later cell or chapter with the same configuration reuses
the model, and any change to the code or the setup retrains it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import glob
import hashlib
import importlib
import json
import math
import os
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .optim import clip_grad_norm
from .tensor import no_grad

__all__ = ["History", "fit", "cached", "cache_key", "cache_dir", "blas_threads"]


@dataclass
class History:
    """What happened during training.

    Attributes
    ----------
    losses : list of float
        The training loss at every update.
    lrs : list of float
        The learning rate used at every update.
    grad_norms : list of float
        The global gradient norm before clipping (empty when not clipping).
    eval_steps : list of int
        Updates after which ``eval_fn`` ran.
    metrics : dict of str to list of float
        One list per metric returned by ``eval_fn``, aligned with ``eval_steps``.
    seconds : float
        Wall-clock training time (evaluation included).

    Examples
    --------
    >>> History(losses=[2.0, 1.0]).to_json()[:22]
    '{"losses": [2.0, 1.0],'

    See Also
    --------
    fit : fills it.
    """

    losses: list = field(default_factory=list)
    lrs: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    eval_steps: list = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self):
        """The history as a JSON string."""
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text):
        """Rebuild a history saved with :meth:`to_json`."""
        return cls(**json.loads(text))


def _batch_stream(batches):
    """Yield batches forever: a sequence is cycled, an iterator is read until it ends."""
    while True:
        n = 0
        for batch in batches:
            n += 1
            yield batch
        if n == 0 or iter(batches) is batches:
            return


def fit(model, batches, loss_fn, optimizer, steps, *, schedule=None, clip=None, eval_fn=None,
        eval_every=None):
    """Train ``model`` for ``steps`` updates.

    Each update: forget the gradients, ``loss = loss_fn(model, batch)``, back-propagate,
    clip the global gradient norm to ``clip``, set the learning rate from ``schedule``,
    and take an optimiser step.

    Parameters
    ----------
    model : Module
    batches : iterable
        Anything ``loss_fn`` understands. A list (or other re-iterable) is cycled; an
        iterator or generator must yield at least ``steps`` batches.
    loss_fn : callable
        ``loss_fn(model, batch)`` returns a one-element Tensor.
    optimizer : SGD, Adam or AdamW
    steps : int
        Number of updates.
    schedule : callable, optional
        Learning rate of the 1-based update number (see ``attnbook.optim``); None keeps
        the optimiser's ``lr``.
    clip : float, optional
        Global gradient-norm bound.
    eval_fn : callable, optional
        ``eval_fn(model)`` returns a dict of floats; it runs under ``no_grad()`` every
        ``eval_every`` updates and after the last one.
    eval_every : int, optional

    Returns
    -------
    History

    Raises
    ------
    ValueError
        If ``steps`` is not positive, the batches run out, or the loss is not finite
        (the message names the update; lower the learning rate or clip).

    Examples
    --------
    >>> from attnbook import Tensor
    >>> from attnbook.nn import Linear
    >>> from attnbook.optim import SGD
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((64, 3)); y = x @ np.array([[1.0], [-2.0], [0.5]])
    >>> model = Linear(3, 1, rng=rng)
    >>> loss = lambda m, b: ((m(b[0]) - b[1]) ** 2).mean()
    >>> history = fit(model, [(x, y)], loss, SGD(model.parameters(), lr=0.1), steps=200)
    >>> history.losses[-1] < 1e-6
    True

    See Also
    --------
    cached : train once per build.
    Chapter 4, *Learning to align and translate*, trains its models with it.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}.")
    params = model.parameters()
    history = History()
    stream = _batch_stream(batches)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        try:
            batch = next(stream)
        except StopIteration:
            raise ValueError(
                f"the batches ran out after {step - 1} of {steps} updates; pass a list (it is "
                "cycled) or a generator that yields batches forever."
            ) from None
        for p in params:
            p.grad = None
        loss = loss_fn(model, batch)
        value = float(loss.item())
        if not math.isfinite(value):
            raise ValueError(
                f"the loss is {value} at update {step}: training diverged; lower the learning "
                "rate, add warm-up, or clip the gradient norm."
            )
        loss.backward()
        if clip is not None:
            history.grad_norms.append(clip_grad_norm(params, clip))
        if schedule is not None:
            optimizer.lr = schedule(step)
        optimizer.step()
        history.losses.append(value)
        history.lrs.append(float(optimizer.lr))
        if eval_fn is not None and ((eval_every and step % eval_every == 0) or step == steps):
            with no_grad():
                results = eval_fn(model)
            history.eval_steps.append(step)
            for name, v in results.items():
                history.metrics.setdefault(name, []).append(float(v))
    history.seconds = time.perf_counter() - start
    return history


def blas_threads():
    """The number of threads NumPy's BLAS uses (read from OpenBLAS, else the environment).

    Examples
    --------
    >>> blas_threads() >= 1
    True

    See Also
    --------
    cache_key : includes it, since the thread count changes training trajectories.
    """
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__) + ".libs", "*openblas*"))
    for lib in libs:
        try:
            handle = ctypes.CDLL(lib)
        except OSError:
            continue
        for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
                     "openblas_get_num_threads"):
            if hasattr(handle, name):
                return int(getattr(handle, name)())
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def _sources_digest():
    """Hash of every file of the attnbook package (code, data files, style sheets)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


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

    Examples
    --------
    >>> cache_dir().name in ("attnbook", os.path.basename(os.environ.get("ATTNBOOK_CACHE_DIR", "")))
    True

    See Also
    --------
    cached : stores models there.
    """
    return Path(os.environ.get("ATTNBOOK_CACHE_DIR") or Path.home() / ".cache" / "attnbook")

_PLAIN = (int, float, complex, str, bytes, bool, type(None))


def _const_repr(value):
    """repr of a constant, with set order fixed (it varies with the string hash seed)."""
    if isinstance(value, types.CodeType):
        return _code_fingerprint(value)
    if isinstance(value, (set, frozenset)):
        return "{" + ",".join(sorted(_const_repr(v) for v in value)) + "}"
    if isinstance(value, (tuple, list)):
        return "(" + ",".join(_const_repr(v) for v in value) + ")"
    if isinstance(value, dict):
        return "{" + ",".join(sorted(f"{_const_repr(k)}:{_const_repr(v)}" for k, v in value.items())) + "}"
    return repr(value)


def _code_fingerprint(code):
    # Bytecode, not source: a class defined in a notebook cell has no source inspect can
    # find on Python 3.11, and comments should not retrain a model.
    return "|".join([code.co_code.hex(), repr(code.co_names), repr(code.co_varnames),
                     *(_const_repr(c) for c in code.co_consts)])


def _global_names(code):
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _fingerprint(obj, seen):
    """What decides the behaviour of ``obj``: its code, and (recursively) the functions,
    classes and plain constants of its own module that it uses. Everything imported from
    attnbook is covered by the package digest, and libraries by their versions."""
    if id(obj) in seen:
        return "<seen>"
    seen.add(id(obj))
    module = getattr(obj, "__module__", None)
    if isinstance(obj, type):
        parts = [obj.__qualname__]
        for base in obj.__bases__:
            if base.__module__ == module:
                parts.append(_fingerprint(base, seen))
        for name, member in sorted(vars(obj).items()):
            member = getattr(member, "__func__", member)  # staticmethod, classmethod
            member = member.fget if isinstance(member, property) else member
            if isinstance(member, types.FunctionType):
                parts.append(f"{name}:{_fingerprint(member, seen)}")
            elif isinstance(member, _PLAIN + (tuple, list, dict, set, frozenset)):
                parts.append(f"{name}={_const_repr(member)}")
        return "\n".join(parts)
    if not isinstance(obj, types.FunctionType):
        return getattr(obj, "__qualname__", type(obj).__qualname__)
    parts = [_code_fingerprint(obj.__code__), _const_repr(obj.__defaults__),
             _const_repr(obj.__kwdefaults__)]
    for name in sorted(_global_names(obj.__code__)):
        ref = obj.__globals__.get(name)
        if isinstance(ref, (types.FunctionType, type)) and getattr(ref, "__module__", None) == module:
            parts.append(f"{name}:{_fingerprint(ref, seen)}")
        elif isinstance(ref, _PLAIN + (tuple, list, dict, set, frozenset)):
            parts.append(f"{name}={_const_repr(ref)}")
    return "\n".join(parts)


def cache_key(config, fn=None):
    """The hex key of a configuration in this build (see :func:`cached`).

    Examples
    --------
    >>> from attnbook.optim import Schedule
    >>> cache_key(Schedule("constant", 1e-3)) == cache_key(Schedule("constant", 1e-3))
    True
    >>> cache_key(Schedule("constant", 1e-3)) == cache_key(Schedule("constant", 2e-3))
    False

    Raises
    ------
    ValueError
        If ``config`` is not a frozen dataclass or holds values that cannot be hashed.

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
        "config": _config_json(config), "sources": _sources_digest(), "numpy": np.__version__,
        "python": sys.version, "blas_threads": blas_threads(),
        "fn": _fingerprint(fn, set()) if fn is not None else "",
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


def cached(config, build_and_train_fn, directory=None):
    """Return ``build_and_train_fn(config)``'s (model, history), training only on a cache miss.

    The key hashes the configuration, the code of ``build_and_train_fn`` together with the
    functions, classes and plain constants of its own module (a notebook, say) that it uses,
    recursively, every file of the attnbook package, the Python and NumPy versions and the
    BLAS thread count, so results are never stale. Weights are stored as ``<ConfigName>-<key>.npz`` and the
    history, the model's class and its configuration as ``<ConfigName>-<key>.json`` in
    :func:`cache_dir`.

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
        If ``config`` is not a frozen dataclass, or the model cannot be rebuilt.

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

    See Also
    --------
    fit : the training loop.
    """
    key = cache_key(config, build_and_train_fn)
    folder = Path(directory) if directory is not None else cache_dir()
    stem = f"{type(config).__name__}-{key[:24]}"  # readable, and 96 bits of the key
    weights, meta = folder / f"{stem}.npz", folder / f"{stem}.json"
    if weights.exists() and meta.exists():
        info = json.loads(meta.read_text())
        module, qualname = info["model_class"].split(":")
        cls = getattr(importlib.import_module(module), qualname)
        model = cls(_config_from_json(info["model_config"]), rng=np.random.default_rng(0))
        with np.load(weights) as state:
            model.load_state_dict(dict(state))
        return model, History(**info["history"])
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
    info = {"model_class": f"{cls.__module__}:{cls.__qualname__}", "model_config": _config_json(model.config),
            "history": dataclasses.asdict(history), "config": _config_json(config)}
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomic(weights, lambda tmp: np.savez(tmp, **model.state_dict()))
    _write_atomic(meta, lambda tmp: Path(tmp).write_text(json.dumps(info)))
    return model, history
