"""Shared fixtures: the built site under _build/html, parsed once."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
# The front matter that makes a MyST Markdown file a notebook (for the tests' small books).
MYST_NOTEBOOK_HEADER = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---
"""


@dataclass
class Page:
    path: Path
    ids: set[str] = field(default_factory=set)
    links: list[str] = field(default_factory=list)
    images: list[dict[str, str]] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    # Text outside docstring examples (``div.doctest``, the API page's ``>>>`` blocks, which may
    # show an expected traceback on purpose).
    text_outside_examples: list[str] = field(default_factory=list)


class _Collector(HTMLParser):
    def __init__(self, page: Page):
        super().__init__(convert_charrefs=True)
        self.page = page
        self.divs: list[bool] = []  # for each open div: is it a docstring example?

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name"):
            if a.get(key):
                self.page.ids.add(a[key])
        if tag == "a" and a.get("href") is not None:
            self.page.links.append(a["href"])
        if tag in ("link", "script") and (a.get("href") or a.get("src")):
            self.page.links.append(a.get("href") or a.get("src"))
        if tag == "img":
            self.page.images.append({"src": a.get("src") or "", "alt": a.get("alt")})
        if a.get("class"):
            self.page.classes.append(a["class"])
        if tag == "div":
            self.divs.append("doctest" in (a.get("class") or "").split())

    def handle_endtag(self, tag):
        if tag == "div" and self.divs:
            self.divs.pop()

    def handle_data(self, data):
        self.page.text.append(data)
        if not any(self.divs):
            self.page.text_outside_examples.append(data)


def parse(path: Path) -> Page:
    page = Page(path)
    _Collector(page).feed(path.read_text(encoding="utf-8"))
    return page


def site_pages(html: Path) -> list[Path]:
    """Every page of the site built in ``html``."""
    # _static holds the theme's template fragments, copied verbatim: not pages.
    return [p for p in sorted(html.rglob("*.html")) if "_static" not in p.relative_to(html).parts]


@pytest.fixture(scope="session")
def site() -> dict[Path, Page]:
    if not (HTML / "index.html").exists():
        pytest.fail("No built site in _build/html: build it first (python3 dev.py book), "
                    "or run the whole test command (python3 dev.py test).")
    return {p: parse(p) for p in site_pages(HTML)}


@pytest.fixture(scope="session")
def book_pages(site) -> dict[Path, Page]:
    """The pages written from book/ (not search, genindex or the redirect)."""
    pages = {p: page for p, page in site.items() if (HTML / "book") in p.parents}
    if not pages:  # every check over the pages would pass, checking nothing
        pytest.fail(f"no page of book/ in {HTML}: is the book built, and the filter right?")
    return pages
