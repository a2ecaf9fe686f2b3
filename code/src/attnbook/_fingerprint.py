"""Fingerprints of code and data for :mod:`attnbook.cache`: what decides a training result.

The rule (documented for users in :func:`attnbook.cache.cached`): code written outside
attnbook and the installed libraries is fingerprinted by its bytecode, defaults, closure
cells and the globals it reads, recursively; attnbook by the digest of its sources;
installed libraries and the standard library by name and version; plain values by content.
Anything else raises ``ValueError``: the cache fails closed.
"""

from __future__ import annotations

import dataclasses
import dis
import functools
import hashlib
import importlib.metadata
import inspect
import site
import sys
import sysconfig
import types
from pathlib import Path

import numpy as np

_PACKAGE = Path(__file__).resolve().parent
_PLAIN = (type(None), bool, int, float, complex, str, bytes)
# Installed, but the book's own code: fingerprinted by its code, never by a version number.
_BY_CODE = {"book_recipes"}
# Class attributes that say nothing about behaviour, or that the fingerprint covers otherwise.
_SKIP_CLASS_ATTRS = {
    "__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__annotations__",
    "__firstlineno__", "__static_attributes__", "__dataclass_fields__", "__dataclass_params__",
    "__match_args__", "__orig_bases__", "__parameters__", "__abstractmethods__", "_abc_impl",
}
_C_CALLABLES = (types.BuiltinFunctionType, types.MethodDescriptorType, types.WrapperDescriptorType,
                types.ClassMethodDescriptorType, np.ufunc)


# Drawing only: the import contracts (.importlinter, "no-data-in-models" and "data") forbid every
# module that defines data, models, training or decoding to import them, so they cannot change a
# trained result; editing a figure's style or a diagram re-executes the pages (the execution
# cache hashes every file) but retrains nothing.
DRAWING_ONLY = ("diagrams.py", "style.py", "attnbook.mplstyle")


def sources_digest():
    """Hash of every file of the attnbook package (code, data files) but ``DRAWING_ONLY``."""
    h = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*")):
        if path.parent == _PACKAGE and path.name in DRAWING_ONLY:
            continue
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            h.update(str(path.relative_to(_PACKAGE)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def _site_dirs():
    dirs = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")} | set(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.add(site.getusersitepackages())
    return tuple(Path(d).resolve() for d in dirs)


@functools.lru_cache(maxsize=None)
def _distributions():
    return importlib.metadata.packages_distributions()


@functools.lru_cache(maxsize=None)
def _library_version(module_name):
    """``"name==version"`` of the installed library or standard module ``module_name``, else None."""
    top = module_name.partition(".")[0]
    if top in _BY_CODE or top in ("attnbook", "__main__"):
        return None
    if top in sys.stdlib_module_names or top == "builtins":
        return f"python=={sys.version.split()[0]}"
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if file is None or not any(Path(file).resolve().is_relative_to(d) for d in _site_dirs()):
        return None
    names = sorted(set(_distributions().get(top, ())))
    if not names:
        return None
    return ",".join(f"{n}=={importlib.metadata.version(n)}" for n in names)


def _in_attnbook(module_name):
    return module_name == "attnbook" or (module_name or "").startswith("attnbook.")


def _code_library(code):
    """``"name==version"`` if ``code`` was written in an installed library or the standard
    library, else None."""
    path = Path(code.co_filename)
    if not path.is_absolute() or not path.exists():
        return None
    path = path.resolve()
    for site_dir in _site_dirs():
        if path.is_relative_to(site_dir):
            top = path.relative_to(site_dir).parts[0].removesuffix(".py")
            return _library_version(top)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    return f"python=={sys.version.split()[0]}" if path.is_relative_to(stdlib) else None


def _digest(parts):
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _globals_read(code):
    """Names ``code`` (and the functions and classes nested in it) load as globals."""
    names = set()
    for instr in dis.get_instructions(code):
        if instr.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.add(instr.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _globals_read(const)
    return names


def _code_fingerprint(code):
    """Bytecode and what it refers to, without file names or line numbers (so moving a
    function, or editing a comment, does not retrain a model)."""
    consts = [_code_fingerprint(c) if isinstance(c, types.CodeType) else _value(c) for c in code.co_consts]
    return "|".join([code.co_code.hex(), repr(code.co_names), repr(code.co_varnames),
                     repr(code.co_freevars), repr(code.co_cellvars),
                     repr((code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount)),
                     *consts])


def _value(c):
    """A code constant: plain values and (frozen)sets and tuples of them, in a fixed order."""
    if isinstance(c, (set, frozenset)):
        return "{" + ",".join(sorted(_value(v) for v in c)) + "}"
    if isinstance(c, tuple):
        return "(" + ",".join(_value(v) for v in c) + ")"
    return f"{type(c).__name__}:{c!r}"


class _Fingerprinter:
    def __init__(self):
        self.done = {}  # id -> fingerprint of objects already seen in this traversal
        self.stack = set()  # ids being fingerprinted: meeting one again is a cycle
        self.alive = []  # keep every visited object alive, so ids stay unique
        self._attnbook_objects = None

    def attnbook_object(self, obj):
        """``module.name`` if ``obj`` is a module-level object of attnbook, else None."""
        if self._attnbook_objects is None:
            self._attnbook_objects = {}
            for name in sorted(m for m in list(sys.modules) if _in_attnbook(m)):
                for attr, value in sorted(vars(sys.modules[name]).items()):
                    if not isinstance(value, _PLAIN):
                        self._attnbook_objects.setdefault(id(value), f"{name}.{attr}")
        return self._attnbook_objects.get(id(obj))

    def refuse(self, obj, path, why=""):
        kind = type(obj)
        raise ValueError(
            f"cached cannot fingerprint a {kind.__module__}.{kind.__qualname__}, reached from "
            f"{' -> '.join(path)}{why}. The cache refuses what it cannot fingerprint rather than "
            "risk a stale model: pass the value through the configuration (numbers, strings, "
            "tuples, frozen dataclasses), build it inside the function from the configuration, "
            "or make it a NumPy array or constant at module level."
        )

    def __call__(self, obj, path):
        if isinstance(obj, _PLAIN):
            return f"{type(obj).__name__}:{obj!r}"
        key = id(obj)
        if key in self.done:
            return self.done[key]
        if key in self.stack:  # a function calling itself, a method using its class...
            return f"<cycle {getattr(obj, '__qualname__', type(obj).__qualname__)}>"
        self.stack.add(key)
        self.alive.append(obj)
        try:
            result = self.dispatch(obj, path)
        finally:
            self.stack.discard(key)
        self.done[key] = result
        return result

    def name_of(self, obj, module, path):
        """How code of attnbook or of a library is fingerprinted: by name (and version)."""
        qualname = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "?")
        if _in_attnbook(module):
            return f"attnbook {module}:{qualname}"
        version = _library_version(module or "")
        if version is None:
            return None
        return f"library {module}:{qualname} {version}"

    def dispatch(self, obj, path):
        fp = self
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                return "object array " + fp(obj.tolist(), path)
            data = np.ascontiguousarray(obj)
            return f"ndarray {data.dtype.str} {data.shape} {hashlib.sha256(data.tobytes()).hexdigest()}"
        if isinstance(obj, np.generic):
            return f"numpy {obj.dtype.str} {obj.tobytes().hex()}"
        if isinstance(obj, np.dtype):
            return f"dtype {obj.str}"
        if isinstance(obj, (tuple, list)):
            return f"{type(obj).__name__}[" + ",".join(fp(x, path) for x in obj) + "]"
        if isinstance(obj, (set, frozenset)):
            return f"{type(obj).__name__}{{" + ",".join(sorted(fp(x, path) for x in obj)) + "}"
        if isinstance(obj, dict):
            items = sorted(f"{fp(k, path)}:{fp(v, path + [f'[{k!r}]'])}" for k, v in obj.items())
            return "dict{" + ",".join(items) + "}"
        if isinstance(obj, (range, slice)):
            return repr(obj)
        if isinstance(obj, types.ModuleType):
            named = self.name_of(obj, obj.__name__, path)
            if named is None:
                self.refuse(obj, path, f" (module {obj.__name__}; import the names you use from it "
                                       "instead, `from module import f`, so they are fingerprinted)")
            return named
        if isinstance(obj, type):
            return self.cls(obj, path)
        if isinstance(obj, types.FunctionType):
            return self.function(obj, path)
        if isinstance(obj, types.MethodType):
            return f"method {fp(obj.__func__, path)} of {fp(obj.__self__, path + ['self'])}"
        if isinstance(obj, functools.partial):
            return (f"partial {fp(obj.func, path)} {fp(obj.args, path + ['args'])} "
                    f"{fp(obj.keywords, path + ['keywords'])}")
        if isinstance(obj, (staticmethod, classmethod)):
            return f"{type(obj).__name__} {fp(obj.__func__, path)}"
        if isinstance(obj, property):
            return "property " + ",".join(fp(f, path) for f in (obj.fget, obj.fset, obj.fdel))
        if isinstance(obj, _C_CALLABLES) or "cython_function" in type(obj).__name__:
            owner = getattr(obj, "__self__", None)
            if owner is not None and not isinstance(owner, (types.ModuleType, type)):
                self.refuse(obj, path, f" (a method bound to a {type(owner).__name__} object, "
                                       "whose state the fingerprint cannot see)")
            module = (getattr(obj, "__module__", None) or getattr(owner, "__name__", None)
                      or getattr(getattr(obj, "__objclass__", None), "__module__", None))
            named = self.name_of(obj, module, path)
            if named is None:
                self.refuse(obj, path)
            return named
        if dataclasses.is_dataclass(obj):
            fields = ",".join(f"{f.name}={fp(getattr(obj, f.name), path + [f.name])}"
                              for f in dataclasses.fields(obj))
            return f"{fp(type(obj), path)}({fields})"
        where = self.attnbook_object(obj)
        if where is not None:
            return f"attnbook object {where}"
        self.refuse(obj, path)

    def cls(self, cls, path):
        named = self.name_of(cls, cls.__module__, path)
        if named is not None:
            return named
        path = path + [f"class {cls.__qualname__}"]
        parts = [f"class {cls.__qualname__}", "bases " + ",".join(self(b, path) for b in cls.__bases__)]
        if dataclasses.is_dataclass(cls):
            parts.append(repr(cls.__dataclass_params__))
            for f in dataclasses.fields(cls):
                default = "-" if f.default is dataclasses.MISSING else self(f.default, path + [f.name])
                factory = ("-" if f.default_factory is dataclasses.MISSING
                           else self(f.default_factory, path + [f.name]))
                parts.append(f"field {f.name} default={default} factory={factory} "
                             f"init={f.init} kw_only={f.kw_only} compare={f.compare}")
        for name, member in sorted(vars(cls).items()):
            if name in _SKIP_CLASS_ATTRS or self.generated_by_dataclass(cls, member):
                continue
            parts.append(f"{name}={self(member, path + [name])}")
        return f"class {cls.__qualname__} " + _digest(parts)

    @staticmethod
    def generated_by_dataclass(cls, member):
        """``__init__``, ``__repr__``, ``__eq__``...: made by @dataclass from the fields (which
        the fingerprint covers); their closures hold dataclasses' private sentinels."""
        if not dataclasses.is_dataclass(cls) or not callable(member):
            return False
        code = getattr(inspect.unwrap(member), "__code__", None)
        return code is not None and code.co_filename == "<string>"

    def function(self, fn, path):
        code = fn.__code__
        module = fn.__module__
        if _in_attnbook(module) and Path(code.co_filename).resolve().is_relative_to(_PACKAGE):
            return f"attnbook {module}:{fn.__qualname__}"
        version = _code_library(code)
        if version is not None:  # a library's function (dataclasses' __repr__ wrapper, say)
            return f"library {code.co_filename}:{fn.__qualname__} {version}"
        path = path + [fn.__qualname__] if path[-1] != fn.__qualname__ else path
        parts = ["code " + _code_fingerprint(code),
                 "defaults " + self(fn.__defaults__, path + ["defaults"]),
                 "kwdefaults " + self(fn.__kwdefaults__ or {}, path + ["defaults"])]
        for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
            try:
                value = cell.cell_contents
            except ValueError:  # not assigned yet
                parts.append(f"closure {name} <empty>")
                continue
            parts.append(f"closure {name}=" + self(value, path + [f"closure variable {name!r}"]))
        builtins = fn.__globals__.get("__builtins__", __builtins__)
        builtins = vars(builtins) if isinstance(builtins, types.ModuleType) else builtins
        for name in sorted(_globals_read(code)):
            if name in fn.__globals__:
                value = fn.__globals__[name]
            elif name in builtins:
                value = builtins[name]
            else:
                parts.append(f"global {name} <undefined>")
                continue
            parts.append(f"global {name}=" + self(value, path + [f"global {name!r}"]))
        return f"function {fn.__qualname__} " + _digest(parts)


def fingerprint(obj, name):
    """A string that changes whenever ``obj``'s behaviour may change (see the module docstring).

    Raises
    ------
    ValueError
        Naming the first thing, and the path to it, that cannot be fingerprinted.
    """
    return _Fingerprinter()(obj, [name])
