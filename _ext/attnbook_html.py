"""Three repairs to the HTML that Sphinx 7.4, docutils 0.21 and myst-nb 1.4 write.

Each one is found by tests/test_browser.py (a real browser with axe-core) and each is a plain
substitution on a page as it is written, so removing this extension brings the finding back.
tests/test_html_repairs.py checks that each is applied to the built site and that each is still
needed: a minimal project built with the pinned versions, without this extension, still shows
the defect. When an upgrade fixes one upstream, that test fails: remove the repair.

1. Sphinx 7.4 registers an inline script added after ``Builder.init()`` twice (once with the
   filename ``None``, once with ``''``): sphinx-thebe's ``const THEBE_JS_URL`` is then declared
   twice and every page logs a SyntaxError. Keep the first of each script.
2. docutils 0.21 writes the bibliography as ``<div role="list">`` holding entries with the
   deprecated role ``doc-biblioentry``, which a list may not contain (axe: aria-required-children,
   critical). Give the entries the role a list expects.
3. myst-nb names every "Show code cell source" toggle "Toggle hidden content" (aria-label), so
   the visible label is not part of the accessible name (WCAG 2.5.3; axe:
   label-content-name-mismatch, serious) and voice control cannot find it. Without the
   aria-label the visible text is the name.
"""

from __future__ import annotations

from sphinx.application import Sphinx


def dedupe_scripts(app: Sphinx, pagename, templatename, context, doctree) -> None:
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (js.filename or "", js.priority, tuple(sorted(js.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"][:] = unique


def repair_body(app: Sphinx, pagename, templatename, context, doctree) -> None:
    body = context.get("body")
    if body:
        body = body.replace('role="doc-biblioentry"', 'role="listitem"')
        body = body.replace('<summary aria-label="Toggle hidden content">', "<summary>")
        context["body"] = body


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", dedupe_scripts)
    app.connect("html-page-context", repair_body)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
