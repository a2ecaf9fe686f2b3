"""Sphinx extension: resolve ``{numref}`` without unpickling the target page every time.

Sphinx 7.4's ``StandardDomain._resolve_numref_xref`` calls ``env.get_doctree(docname)`` for
every numbered reference it resolves, and ``get_doctree`` unpickles the whole target page each
time. The book's 105 numbered references are resolved about 260 times (once for the page, once
more for its readable ``.ipynb`` download, _ext/attnbook_notebooks.py, and for the downloads'
figure numbers). Sharing the pages took a build with every page cached from 54 s to 42 s
(timed per Sphinx event, without a profiler), most of it in the downloads.

While a numbered reference is resolved, this extension hands out one unpickled copy of each
page, kept while Sphinx's own cache holds the same pickled bytes for it (Sphinx 7.4 fills that
cache once per page and build, so the shared copy is exactly as fresh as the copies Sphinx
unpickles itself). Nothing else changes: ``get_doctree`` called anywhere else still unpickles a
fresh copy, so the pages that are written, which Sphinx changes as it resolves them, are never
shared. The numref code only looks a node up and reads its type and number (``ids.get``,
``get_enumerable_node_type``, ``get_fignumber``), so sharing the copy is safe; Sphinx resolves
every page in the main process, also when it writes pages in parallel. The copies are dropped
when the build finishes. The patch itself is process-wide: a later Sphinx application in the
same process shares copies in the same way, whether or not it loads this extension.

tests/test_numref.py checks that the links come out the same and that a page is unpickled once,
and that the repair is still needed: when an upgrade stops calling ``get_doctree`` for every
reference, that test fails; remove this extension then.
"""

from __future__ import annotations

import threading

from sphinx.application import Sphinx
from sphinx.domains.std import StandardDomain
from sphinx.environment import BuildEnvironment

_state = threading.local()  # .active: resolving a numref now
# Per environment (by id, dropped when its build finishes): docname -> (the pickled bytes it
# came from, the unpickled copy). A copy refers to its environment, so a weak dictionary
# keyed on the environment would never let go of either.
_shared: dict[int, dict] = {}


def _get_doctree(self: BuildEnvironment, docname: str):
    if not getattr(_state, "active", False):
        return _original_get_doctree(self, docname)
    shared = _shared.setdefault(id(self), {})
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


def _drop_shared(app: Sphinx, exception) -> None:
    """``build-finished``: let the shared copies go with the build."""
    _shared.pop(id(app.env), None)


_original_get_doctree = BuildEnvironment.get_doctree
_original_resolve_numref_xref = StandardDomain._resolve_numref_xref


def setup(app: Sphinx) -> dict:
    if BuildEnvironment.get_doctree is not _get_doctree:
        BuildEnvironment.get_doctree = _get_doctree
        StandardDomain._resolve_numref_xref = _resolve_numref_xref
    # After every other build-finished handler: the notebook downloads resolve theirs there.
    app.connect("build-finished", _drop_shared, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
