"""Checks of a built site, as functions of its parsed pages (used by test_site.py)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from conftest import Page

EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.IGNORECASE)
# Images written by executed cells are named by a hash of their content (myst-nb).
EXECUTED_IMAGE = re.compile(r"_images/[0-9a-f]{32,}\.(?:png|svg|jpe?g|gif)$")
FILE_LIKE = re.compile(r"^\S+\.(?:png|svg|jpe?g|gif|pdf)$|^[0-9a-f]{16,}$", re.IGNORECASE)


def broken_links(site: dict[Path, Page], root: Path) -> list[str]:
    """Internal links whose file or anchor does not exist."""
    broken = []
    for path, page in site.items():
        for href in page.links:
            if not href or EXTERNAL.match(href):
                continue
            parts = urlsplit(href)
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{path.relative_to(root)}: {href} (no file {target})")
                continue
            anchor = unquote(parts.fragment)
            if anchor and target.suffix == ".html" and target in site and anchor not in site[target].ids:
                broken.append(f"{path.relative_to(root)}: {href} (no anchor #{anchor})")
    return broken


def executed_figures(pages: dict[Path, Page]) -> list[tuple[Path, dict]]:
    return [(p, img) for p, page in pages.items() for img in page.images
            if EXECUTED_IMAGE.search(img["src"])]


def figures_without_alt(pages: dict[Path, Page], root: Path) -> list[str]:
    """Executed figures whose alt text is missing, too short to describe, or a file name."""
    bad = []
    for path, img in executed_figures(pages):
        alt = (img["alt"] or "").strip()
        if len(alt.split()) < 4 or FILE_LIKE.match(alt):
            bad.append(f"{path.relative_to(root)}: {img['src']} has alt {alt!r}")
    return bad


def error_outputs(pages: dict[Path, Page], root: Path) -> list[str]:
    """Pages that show a traceback, an error, or text written to stderr."""
    bad = []
    for path, page in pages.items():
        if "Traceback (most recent call last)" in "".join(page.text_outside_examples):
            bad.append(f"{path.relative_to(root)}: a traceback")
        for cls in page.classes:
            words = set(cls.split())
            if "output" in words and words & {"traceback", "error", "stderr"}:
                bad.append(f"{path.relative_to(root)}: an output of class {cls!r}")
    return bad


FIGURE_REPR = re.compile(r"<(?:matplotlib\.figure\.)?Figure size \d+(?:\.\d+)?x\d+(?:\.\d+)? with \d+ Axes>")


def figures_shown_as_text(pages: dict[Path, Page], root: Path) -> list[str]:
    """Pages where a figure printed its repr instead of its picture: matplotlib could not draw
    it (a mathtext symbol it does not know, for one), and the strict build does not notice."""
    bad = []
    for path, page in pages.items():
        for found in FIGURE_REPR.findall("".join(page.text_outside_examples)):
            bad.append(f"{path.relative_to(root)}: {found}")
    return bad
