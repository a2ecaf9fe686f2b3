"""The PDF edition, as built by ``jupyter-book build . --builder pdflatex`` into _build/latex.

The weekly workflow runs this file after building the PDF; locally it skips without a PDF
(set ATTNBOOK_LATEX=/path/to/latex for one built elsewhere). What it checks, in the LaTeX log,
the LaTeX source and the PDF's text (``pdftotext``, from poppler-utils):

- ``\\vec`` is bold where the document begins, after every package (unicode-math redefines it);
- no reference or citation is left unresolved;
- no figure is too large for its page, or wider than the text;
- every figure is included as a vector PDF, not as pixels;
- no page is blank, and no box's title is printed alone at the foot of a page;
- the introduction is a chapter in the contents; parts are not named "Part I" twice;
- one bibliography, no index of the proofs' labels;
- every proof ends with its mark, and no box has an empty title;
- boxes are numbered by chapter, as on the website ("Definition 1.1", not "Definition 1.1.1").
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

LATEX = Path(os.environ.get("ATTNBOOK_LATEX", ROOT / "_build" / "latex"))
NAME = "attention-executed"
BOX_TITLE = re.compile(
    r"^(Definition|Theorem|Lemma|Proposition|Corollary|Algorithm|Exercise|Solution|Remark|"
    r"Example|Note|Warning|Important|Tip|Learning objectives)\b")


@pytest.fixture(scope="module")
def built() -> dict[str, Path]:
    files = {kind: LATEX / f"{NAME}.{kind}" for kind in ("pdf", "tex", "log", "toc")}
    if not files["pdf"].exists():
        pytest.skip(f"no PDF in {LATEX}: build it with  jupyter-book build . --builder pdflatex")
    return files


@pytest.fixture(scope="module")
def tex(built) -> str:
    return built["tex"].read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def log(built) -> str:
    return built["log"].read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def pages(built) -> list[str]:
    """The text of every page of the PDF, in order."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not found: install poppler-utils")
    text = subprocess.run(["pdftotext", "-layout", str(built["pdf"]), "-"], check=True,
                          capture_output=True, text=True).stdout
    return text.split("\f")[:-1]  # a form feed ends every page


def test_vec_is_bold_once_the_document_begins(log):
    # Printed by the preamble (_config.yml) when the document has begun and every package has
    # made its definitions.
    meaning = re.findall(r"attnbook-check: vec=(.*)", log)
    assert meaning, "the LaTeX log does not say what \\vec means: is the check in the preamble?"
    assert meaning[-1].strip().endswith(r"->\symbf {#1}"), f"\\vec is {meaning[-1]}, not bold"


def test_every_character_is_printed(log):
    # A glyph missing from its font is dropped from the page: \mathbf{\alpha} took the bold
    # text font, which has no math Greek, and every bold alpha, beta and gamma vanished. The
    # zero-width space (U+200B), a line-break opportunity Sphinx puts in long code, prints
    # nothing in any font.
    missing = set(re.findall(r"Missing character: There is no (.) \((U\+[0-9A-F]+)\)", log))
    assert not {m for m in missing if m[1] != "U+200B"}, f"characters dropped: {sorted(missing)}"


def test_no_unresolved_reference_or_citation(log, tex):
    # A warning is wrapped at 79 columns by TeX: "undefined" may start the next line.
    unresolved = re.findall(r"LaTeX Warning: (?:Reference|Citation|Hyper reference) `([^']+)'"
                            r"[^`]*?undefined", log)
    assert not unresolved, f"unresolved in the PDF: {sorted(set(unresolved))}"
    assert "There were undefined references" not in log
    # Sphinx prints a reference it could not resolve as its bare target.
    assert "\\sphinxcrossref{??}" not in tex


def _figure_lines(tex: str) -> set[int]:
    """The line numbers of the LaTeX source that lie inside a figure."""
    inside, lines = False, set()
    for number, line in enumerate(tex.splitlines(), start=1):
        if "\\begin{figure}" in line:
            inside = True
        if inside:
            lines.add(number)
        if "\\end{figure}" in line:
            inside = False
    return lines


def test_no_figure_too_large_for_its_page(log, tex):
    assert "Float too large for page" not in log, (
        "a figure and its caption do not fit on a page: "
        + "; ".join(re.findall(r"Float too large for page by ([\d.]+pt) on input line (\d+)", log)))
    in_figures = _figure_lines(tex)
    overfull = [(kind, int(a)) for kind, a in
                re.findall(r"Overfull \\([hv])box \([\d.]+pt too \w+\) (?:in paragraph|detected) at lines? (\d+)", log)]
    wide = [line for _, line in overfull if line in in_figures]
    assert not wide, f"figures overfull at LaTeX source lines {wide}"


def test_every_figure_is_vector(tex):
    # Sphinx writes \sphinxincludegraphics[options]{{name}.ext}.
    images = [re.sub(r"[{}]", "", i) for i in re.findall(
        r"\\sphinxincludegraphics(?:\[[^\]]*\])?\{((?:[^{}]|\{[^{}]*\})*)\}", tex)]
    assert images, "no figure in the PDF"
    raster = [i for i in images if not i.lower().endswith(".pdf")]
    assert not raster, f"figures included as pixels (style.use() asks for PDF): {raster[:10]}"


def test_no_blank_page(pages):
    blank = [n for n, text in enumerate(pages, start=1)
             if not re.sub(r"[\divxlc\s]", "", text, flags=re.IGNORECASE)]
    assert not blank, f"blank pages: {blank}"


def test_no_box_title_alone_at_the_foot_of_a_page(pages):
    stranded = []
    for number, text in enumerate(pages, start=1):
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # The last line is the footer (the page number); a box title just above it, with
        # nothing of its box after it on the page, is stranded.
        body = lines[:-1]
        if body and BOX_TITLE.match(body[-1]):
            stranded.append(f"page {number}: {body[-1][:60]}")
    assert not stranded, "box titles alone at the foot of a page:\n" + "\n".join(stranded)


def test_the_introduction_is_a_chapter_in_the_contents(built):
    toc = built["toc"].read_text(encoding="utf-8")
    assert re.search(r"\\contentsline \{chapter\}\{Introduction\}", toc), toc[:500]


def test_parts_are_named_once(built):
    toc = built["toc"].read_text(encoding="utf-8")
    parts = re.findall(r"\\contentsline \{part\}\{(.*?)\}\{\d+\}", toc)
    assert parts, "no part in the contents"
    doubled = [p for p in parts if re.search(r"\\hspace \{1em\}Part\s+[IVX]+", p)]
    assert not doubled, f"parts named twice: {doubled}"


def test_one_bibliography_and_no_proof_index(tex, built):
    assert tex.count("\\begin{sphinxthebibliography}") == 1
    toc = built["toc"].read_text(encoding="utf-8")
    assert len(re.findall(r"\{chapter\}\{[^}]*Bibliography\}", toc)) == 1, toc
    assert "Proof Index" not in tex and "Proof Index" not in toc


def test_every_proof_ends_with_its_mark(tex):
    proofs = sum(len(re.findall(r"^```\{prf:proof\}", p.read_text(encoding="utf-8"), re.M))
                 for p in (ROOT / "book").glob("*.md"))
    assert proofs, "no proof in the book"
    assert tex.count("\\ensuremath{\\blacksquare}") == proofs
    assert tex.count("\\sphinxstyleemphasis{Proof.}") == proofs
    assert "\\begin{sphinxadmonition}{note}{}" not in tex, "a box with an empty title"


def test_boxes_are_numbered_as_on_the_website(tex):
    three_levels = sorted(set(re.findall(
        r"(?:Definition|Theorem|Lemma|Proposition|Corollary|Algorithm|Exercise) \d+\.\d+\.\d+", tex)))
    assert not three_levels, f"numbered to three levels, unlike the website: {three_levels[:10]}"
    assert re.search(r"Definition \d+\.\d+\b", tex), "no numbered definition found"
