"""Checks of the built site, as a reader would meet it."""

from __future__ import annotations

import re

from conftest import HTML, ROOT, parse
from sitecheck import (broken_links, error_outputs, executed_figures, figures_shown_as_text,
                       figures_without_alt)


def test_every_internal_link_and_anchor_resolves(site):
    broken = broken_links(site, HTML)
    assert not broken, "broken internal links:\n" + "\n".join(broken)


def test_every_executed_figure_has_real_alt_text(book_pages):
    assert executed_figures(book_pages), "no executed figure found: is the book executing its pages?"
    bad = figures_without_alt(book_pages, HTML)
    assert not bad, "figures without a real description (set mystnb: image: alt:):\n" + "\n".join(bad)


def test_no_page_shows_a_traceback_or_error_output(book_pages):
    bad = error_outputs(book_pages, HTML)
    assert not bad, "\n".join(bad)


def test_every_figure_is_drawn_not_printed(book_pages):
    bad = figures_shown_as_text(book_pages, HTML)
    assert not bad, "figures that matplotlib could not draw:\n" + "\n".join(bad)


def test_no_execution_reports():
    reports = HTML / "reports"
    logs = sorted(reports.glob("**/*.err.log")) if reports.exists() else []
    assert not logs, "cells failed; see " + ", ".join(str(p.relative_to(ROOT)) for p in logs)


def test_every_page_in_the_toc_was_built():
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"file:\s*(\S+)", toc) + re.findall(r"^root:\s*(\S+)", toc, re.MULTILINE)
    missing = [f for f in files if not (HTML / f"{f}.html").exists()]
    assert files and not missing, f"pages in _toc.yml without a built page: {missing}"


def test_the_checks_catch_a_broken_site(tmp_path):
    """The checks above must be able to fail: a small site with one of each defect."""
    (tmp_path / "_images").mkdir()
    image = "_images/" + "ab" * 32 + ".png"
    (tmp_path / image).write_bytes(b"")
    (tmp_path / "other.html").write_text('<p id="here">x</p>')
    (tmp_path / "page.html").write_text(
        '<a href="other.html#here">ok</a><a href="other.html#gone">bad anchor</a>'
        '<a href="missing.html">bad file</a><a href="https://example.org/">external</a>'
        f'<img src="{image}" alt="{"ab" * 32}.png"><img src="{image}" alt="">'
        f'<img src="{image}" alt="Attention weights of three queries over five keys.">'
        '<div class="output stderr">oops</div><pre>Traceback (most recent call last):</pre>'
        '<pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre>'
    )
    site = {p: parse(p) for p in sorted(tmp_path.glob("*.html"))}
    assert len(broken_links(site, tmp_path)) == 2
    assert len(figures_without_alt(site, tmp_path)) == 2
    assert len(error_outputs(site, tmp_path)) == 2
    assert len(figures_shown_as_text(site, tmp_path)) == 1
