"""Sphinx extension: resolve ``{numref}`` without unpickling the target page every time.

Sphinx 7.4's ``StandardDomain._resolve_numref_xref`` calls ``env.get_doctree(docname)`` for
every numbered reference, and ``get_doctree`` unpickles the whole target page each time. The
book has about 260 numbered references (the pages and their readable ``.ipynb`` downloads,
_ext/attnbook_notebooks.py, resolve them): unpickling took about 16 s of a 53 s build, a third
of everything the build does besides executing the pages.

While a numbered reference is resolved, this extension hands out one unpickled copy of each
page, kept for as long as Sphinx's own cache holds the same pickled bytes for that page (a page
read again gets new bytes, and so a fresh copy). Nothing else changes: ``get_doctree`` called
anywhere else still unpickles a fresh copy, so the pages that are written, which Sphinx changes
as it resolves them, are never shared. The numref code only looks a node up and reads its type
and number (``ids.get``, ``get_enumerable_node_type``, ``get_fignumber``), so sharing the copy is
safe. tests/test_numref.py checks that the links come out the same and that a page is unpickled
once, and that the repair is still needed: when an upgrade stops calling ``get_doctree`` for
every reference, that test fails; remove this extension.
"""

from __future__ import annotations

import threading
import weakref

from sphinx.application import Sphinx
from sphinx.domains.std import StandardDomain
from sphinx.environment import BuildEnvironment

_state = threading.local()  # .active: resolving a numref now
# Per environment: docname -> (the pickled bytes it came from, the unpickled copy).
_shared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _get_doctree(self: BuildEnvironment, docname: str):
    if not getattr(_state, "active", False):
        return _original_get_doctree(self, docname)
    shared = _shared.setdefault(self, {})
    serialised = self._pickled_doctree_cache.get(docname)
    kept = shared.get(docname)
    if kept is not None and serialised is not None and kept[0] is serialised:
        return kept[1]
    doctree = _original_get_doctree(self, docname)
    shared[docname] = (self._pickled_doctree_cache.get(docname), doctree)
    return doctree


def _resolve_numref_xref(self, env, *args, **kwargs):
    previous = getattr(_state, "active", False)
    _state.active = True
    try:
        return _original_resolve_numref_xref(self, env, *args, **kwargs)
    finally:
        _state.active = previous


_original_get_doctree = BuildEnvironment.get_doctree
_original_resolve_numref_xref = StandardDomain._resolve_numref_xref


def setup(app: Sphinx) -> dict:
    if BuildEnvironment.get_doctree is not _get_doctree:
        BuildEnvironment.get_doctree = _get_doctree
        StandardDomain._resolve_numref_xref = _resolve_numref_xref
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
