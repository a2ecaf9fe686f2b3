"""Checks of the built site, as a reader would meet it."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conftest import HTML, ROOT

EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
# Images written by executed cells are named by a hash of their content (myst-nb).
EXECUTED_IMAGE = re.compile(r"_images/[0-9a-f]{32,}\.(?:png|svg|jpe?g|gif)$")
FILE_LIKE = re.compile(r"^\S+\.(?:png|svg|jpe?g|gif|pdf)$|^[0-9a-f]{16,}$", re.IGNORECASE)


def test_every_internal_link_and_anchor_resolves(site):
    broken = []
    for path, page in site.items():
        for href in page.links:
            if not href or EXTERNAL.match(href):
                continue
            parts = urlsplit(href)
            if parts.path:
                target = (path.parent / unquote(parts.path)).resolve()
                if target.is_dir():
                    target = target / "index.html"
            else:
                target = path
            if not target.exists():
                broken.append(f"{path.relative_to(HTML)}: {href} (no file {target})")
                continue
            anchor = unquote(parts.fragment)
            if anchor and target.suffix == ".html":
                if anchor not in site[target].ids:
                    broken.append(f"{path.relative_to(HTML)}: {href} (no anchor #{anchor})")
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_every_executed_figure_has_real_alt_text(book_pages):
    bad = []
    count = 0
    for path, page in book_pages.items():
        for img in page.images:
            if not EXECUTED_IMAGE.search(img["src"]):
                continue
            count += 1
            alt = (img["alt"] or "").strip()
            if len(alt.split()) < 4 or FILE_LIKE.match(alt):
                bad.append(f"{path.relative_to(HTML)}: {img['src']} has alt {alt!r}")
    assert count > 0, "no executed figure found: is the book executing its pages?"
    assert not bad, "figures without a real description (set mystnb: image: alt:):\n" + "\n".join(bad)


def test_no_page_shows_a_traceback_or_error_output(book_pages):
    bad = []
    for path, page in book_pages.items():
        text = "".join(page.text)
        if "Traceback (most recent call last)" in text:
            bad.append(f"{path.relative_to(HTML)}: a traceback")
        for cls in page.classes:
            words = set(cls.split())
            if "output" in words and words & {"traceback", "error", "stderr"}:
                bad.append(f"{path.relative_to(HTML)}: an output of class {cls!r}")
    assert not bad, "\n".join(bad)


def test_no_execution_reports(site):
    reports = HTML / "reports"
    logs = sorted(reports.glob("**/*.err.log")) if reports.exists() else []
    assert not logs, "cells failed; see " + ", ".join(str(p.relative_to(ROOT)) for p in logs)


def test_every_chapter_in_the_toc_was_built():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"file:\s*(\S+)", toc) + re.findall(r"^root:\s*(\S+)", toc, re.MULTILINE)
    missing = [f for f in files if not (HTML / f"{f}.html").exists()]
    assert files and not missing, f"pages in _toc.yml without a built page: {missing}"
