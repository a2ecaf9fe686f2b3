"""Sphinx extension: the PDF edition's structure, repaired where Jupyter Book's LaTeX gets it wrong.

Jupyter Book's LaTeX (sphinx-jupyterbook-latex 1.0, sphinx-proof 0.4) assembles the book from
the root page and the table of contents. Six things it does are wrong for this book; each
repair below is a transform of the assembled document for the LaTeX builder only, so the HTML
is untouched, and ``tests/test_pdf.py`` checks the result in the LaTeX source.

1. The root page's title becomes the book's title, so its text (the introduction) is printed
   after the contents with no heading and no entry in them, and its own headings as bold
   lines. It gets an unnumbered chapter "Introduction" in the contents, and sections.
2. Each part is titled with its caption in the table of contents, "Part I: ...", under LaTeX's
   own "Part I": the caption loses its "Part I: " prefix.
3. The bibliography page's ``{bibliography}`` is moved to the end of the book by
   sphinx-jupyterbook-latex, where it prints its own heading, leaving the page as a near-empty
   chapter "Bibliography" before it: that chapter is removed, and the bibliography is printed
   once, at the end.
4. sphinx-proof prints a proof as an admonition with an empty title bar and no end mark: it is
   printed as a proof is in a book, "*Proof.* ... ∎", without a box.
5. With parts, sphinx-jupyterbook-latex numbers to two levels (``numfig_secnum_depth = 2``),
   which LaTeX needs for its own chapter-wise figure and equation numbers, but which also made
   every definition, theorem, algorithm and exercise "Definition 1.1.1" where the website
   (and every cross-reference in the text) says "Definition 1.1". Those are numbered by chapter,
   as on the website.
6. sphinx-exercise resolves a reference to an exercise for LaTeX only within its own page; a
   reference from another page pointed at a label it never prints, and the PDF showed "??".
   Such a reference is made the one sphinx-exercise prints for its own page.
"""

from __future__ import annotations

import re

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform
from sphinx.util import logging

logger = logging.getLogger(__name__)

PART_PREFIX = re.compile(r"^Part\s+[IVXLC]+\s*[:.]\s*", re.IGNORECASE)
QED = r"\nobreak\hfill\ensuremath{\blacksquare}"


def _raw(latex: str) -> nodes.raw:
    return nodes.raw("", latex, format="latex")


class IntroductionChapter(SphinxPostTransform):
    """Give the root page's text a chapter heading, in the contents, and real sections."""

    default_priority = 720  # after sphinx-jupyterbook-latex's LatexRootDocPostTransforms (700)
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        from sphinx_jupyterbook_latex.nodes import RootHeader

        root = self.app.config.root_doc
        if self.app.project.path2doc(self.document.get("source", "")) != root:
            return
        top = next((s for s in self.document.findall(nodes.section) if s.get("docname") == root),
                   None)
        if top is None or not top.children or not isinstance(top[0], nodes.title):
            return
        title = self.app.config.attnbook_latex_introduction
        top.insert(1, _raw("\\chapter*{%s}\\addcontentsline{toc}{chapter}{%s}\\markboth{%s}{%s}\n"
                           % ((title,) * 4)))
        # The page's headings are all of one level (sphinx-jupyterbook-latex numbers sibling
        # headings as if each were nested in the one before).
        for header in list(top.findall(RootHeader)):
            text = header.astext().replace("\\", "").replace("{", "").replace("}", "")
            header.replace_self(_raw("\\section*{%s}\n" % text))


class PartTitles(SphinxPostTransform):
    """"Part I: from ..." under LaTeX's "Part I" becomes "From ..."."""

    default_priority = 720
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        for title in self.document.findall(nodes.title):
            section = title.parent
            if not isinstance(section, nodes.section) or not isinstance(
                    section.parent, addnodes.start_of_file):
                continue
            text = title.astext()
            if section.get("docname") == text and PART_PREFIX.match(text):
                rest = PART_PREFIX.sub("", text)
                title.children = [nodes.Text(rest[:1].upper() + rest[1:])]


class BibliographyOnce(SphinxPostTransform):
    """Remove the bibliography page's chapter once its bibliography has moved to the end."""

    # After Sphinx's own BibliographyTransform (750) has gathered the citations at the end.
    default_priority = 760
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        from sphinx.builders.latex.nodes import thebibliography

        docname = self.app.config.attnbook_latex_bibliography_page
        if not docname:
            return
        for start in list(self.document.findall(addnodes.start_of_file)):
            if start.get("docname") != docname:
                continue
            if any(True for _ in start.findall(lambda n: isinstance(n, (thebibliography,
                                                                            nodes.citation)))):
                continue  # the bibliography is still here: keep the chapter
            start.parent.remove(start)
            # Links to the page ({doc}`bibliography`) now lead to the bibliography at the end.
            for bibliography in self.document.findall(thebibliography):
                bibliography.parent.insert(
                    bibliography.parent.index(bibliography),
                    _raw("\\phantomsection\\label{\\detokenize{%s::doc}}\n" % docname))
                break


class ProofsAsInBooks(SphinxPostTransform):
    """A proof: "*Proof.* ... ∎" in the text, not a box with an empty title bar."""

    default_priority = 720
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        for box in list(self.document.findall(nodes.admonition)):
            if "proof" not in box["classes"] or any(isinstance(c, nodes.title) for c in box):
                continue
            children = list(box.children)
            first = children[0] if children else None
            if isinstance(first, nodes.paragraph) and first.children and isinstance(
                    first[0], nodes.Text) and first[0].astext().startswith("Proof. "):
                rest = first[0].astext()[len("Proof. "):]
                first.replace(first[0], nodes.Text(rest))
                first.insert(0, nodes.Text(" "))
                first.insert(0, nodes.emphasis("", "Proof."))
            replacement = [_raw("\\par\\medskip\n"), *children]
            last = replacement[-1]
            if isinstance(last, nodes.paragraph):
                last.append(_raw(QED))
            else:
                replacement.append(_raw("\\par\\noindent" + QED + "\\par\n"))
            replacement.append(_raw("\\par\\medskip\n"))
            box.replace_self(replacement)


# Numbered by LaTeX itself (chapter-wise caption and equation counters): left alone.
LATEX_NUMBERED = {"figure", "table", "code-block"}


def number_by_chapter(app: Sphinx, env) -> list[str]:
    """Renumber every other numbered box (chapter, section, n) -> (chapter, k), in page order.

    Runs on env-get-updated after Sphinx's own numbering (TocTreeCollector, priority 500).
    """
    if app.builder.name != "latex":
        return []
    for types in env.toc_fignumbers.values():
        for figtype, numbers in types.items():
            if figtype in LATEX_NUMBERED:
                continue
            in_order = sorted(numbers.items(), key=lambda item: item[1])
            for k, (node_id, number) in enumerate(in_order, start=1):
                numbers[node_id] = (number[0], k)
    return []


class ExercisesAcrossPages(SphinxPostTransform):
    """A reference to an exercise on another page: point it at the label the exercise prints."""

    default_priority = 25  # after sphinx-exercise's ResolveLinkTextToSolutions (22)
    builders = ("latex",)

    def run(self, **kwargs) -> None:
        from sphinx_exercise.nodes import exercise_enumerable_node, exercise_latex_number_reference

        registry = getattr(self.env, "sphinx_exercise_registry", {})
        for node in list(self.document.findall(nodes.reference)):
            # The LaTeX builder writes a reference to another page as "%<docname>#<label>".
            uri = node.get("refuri", "")
            label = uri.partition("#")[2] if uri.startswith("%") else ""
            target = registry.get(label, {}).get("node")
            if not isinstance(target, exercise_enumerable_node):
                continue
            # sphinx-exercise prints "\hyperref[exercise:<label>]{<text>}" for this node.
            new = exercise_latex_number_reference(refid=label)
            new += nodes.Text(node.astext())
            node.replace_self(new)


def setup(app: Sphinx) -> dict:
    app.add_config_value("attnbook_latex_introduction", "Introduction", "env")
    app.add_config_value("attnbook_latex_bibliography_page", "book/bibliography", "env")
    for transform in (IntroductionChapter, PartTitles, BibliographyOnce, ProofsAsInBooks,
                      ExercisesAcrossPages):
        app.add_post_transform(transform)
    app.connect("env-get-updated", number_by_chapter, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
