"""The package's public names and where each is defined, read from the sources.

A public name is any name in the ``__all__`` of a public module of ``attnbook`` (a module
whose dotted path has no part starting with ``_``). Many names are re-exported (``attnbook.softmax``
is ``attnbook.softmax.softmax``; ``attnbook.tasks.PAD`` is ``attnbook.tokens.PAD``): each is
documented once, under its *home*, the module that defines it. The home is found by following
``from ... import`` statements in the sources, so a constant (which has no ``__module__``) is
placed as surely as a function.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from functools import cache
from pathlib import Path


@cache
def public_modules() -> tuple[str, ...]:
    import attnbook

    names = ["attnbook"]
    for info in pkgutil.walk_packages(attnbook.__path__, "attnbook."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return tuple(names)


@cache
def _tree(module: str) -> ast.Module:
    path = Path(importlib.import_module(module).__file__)
    return ast.parse(path.read_text(encoding="utf-8"))


def _defines(module: str, name: str) -> bool:
    for node in _tree(module).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
            return True
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AnnAssign) else [])
        if any(isinstance(n, ast.Name) and n.id == name for t in targets for n in ast.walk(t)):
            return True
    return False


def home(module: str, name: str) -> str:
    """The module that defines ``module.name`` (following re-exports)."""
    if _defines(module, name):
        return module
    is_package = Path(importlib.import_module(module).__file__).name == "__init__.py"
    for node in _tree(module).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        for alias in node.names:
            if (alias.asname or alias.name) != name:
                continue
            if node.level == 0:
                source = node.module
            else:
                base = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                source = f"{base}.{node.module}" if node.module else base
            return home(source, alias.name)
    raise LookupError(f"{module}.{name} is in __all__ but neither defined nor imported there")


@cache
def public_names() -> dict[str, tuple[str, ...]]:
    """Each public name's home path (``attnbook.masks.padding_mask``) -> the modules exporting it."""
    found: dict[str, list[str]] = {}
    for module in public_modules():
        for name in getattr(importlib.import_module(module), "__all__", ()):
            found.setdefault(f"{home(module, name)}.{name}", []).append(module)
    return {path: tuple(mods) for path, mods in sorted(found.items())}


def resolve(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)
