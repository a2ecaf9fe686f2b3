"""Sphinx extension: each chapter's ``.ipynb`` download runs anywhere and reads as prose.

sphinx-book-theme offers a notebook page's executed notebook (myst-nb's
``jupyter_execute/<page>.ipynb``, with outputs: see ``attnbook_parallel``) as
``_sources/<page>.ipynb``. Its markdown is MyST, which Jupyter and Colab show raw
(``{glue:text}`...```, ``{cite:t}`...```, directive fences), and its code imports ``myst_nb``
and ``attnbook``, which a reader's environment may lack. At the end of the build
(``build-finished``) every such download is written afresh from ``jupyter_execute`` with:

- **Readable markdown.** Glued values substituted (as myst-nb formats them); citations as
  author-year text, linked to the work's URL or DOI from ``references.bib``; ``{numref}``,
  ``{ref}``, ``{doc}``, ``{eq}`` and ``{prf:ref}`` as the text the site shows ("Figure 4.2",
  "(5.1)", the chapter's title), resolved by Sphinx's own domains; labelled equations numbered
  with ``\\tag``; exercises, solutions, definitions, theorems, proofs, algorithms and
  admonitions as blocks between rules, titled as on the site ("Exercise 4.1", "Theorem 5.1 (...)");
  ``literalinclude`` as the included code; labels, comments and LaTeX-only blocks dropped; a
  figure's caption as a markdown cell below it. A role or directive this does not know is a
  warning (a strict build fails), never raw text in the download.
- **A first cell that sets up any Jupyter** (:data:`SETUP`): one BLAS thread, ``attnbook``
  installed where it is missing (``ATTNBOOK_PIP_SPEC``, default: the package from the book's
  repository), and a stand-in ``myst_nb`` whose ``glue`` records and shows values where
  myst-nb is not installed.
- Removed and hidden-input cells (setup, glue, checks) stay, since later cells need them, but
  their code is collapsed (``jupyter.source_hidden``).

``tests/test_notebooks.py`` checks the downloads (no MyST left) and executes every one of them
with nbclient in a fresh virtual environment.
"""

from __future__ import annotations

import codecs
import html
import json
import re
from pathlib import Path

import nbformat
from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

SETUP_TAG = "attnbook-setup"
DEFAULT_PIP_SPEC = "attnbook @ git+{repository}@{branch}#subdirectory=code"

SETUP = '''\
# Run this cell first: it sets up any Jupyter (JupyterLab, Colab, Binder) for this chapter.
# - one BLAS thread, as when the book was built (timings then mean what the text says);
# - attnbook (the book's package) installed if it is missing; set ATTNBOOK_PIP_SPEC to install
#   it from elsewhere, e.g. a local clone: ATTNBOOK_PIP_SPEC=/path/to/attention-executed/code
# - a stand-in for myst_nb's glue() if myst-nb (the book's build tool) is not installed.
import importlib.util
import os
import subprocess
import sys
import types

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

if importlib.util.find_spec("attnbook") is None:
    _spec = os.environ.get("ATTNBOOK_PIP_SPEC", {pip_spec!r})
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", _spec], check=True)
    importlib.invalidate_caches()

if importlib.util.find_spec("myst_nb") is None:
    GLUED = {{}}

    def glue(name, variable, display=True):
        """Stand-in for myst_nb.glue: record the value (myst_nb.GLUED) and show it if asked."""
        GLUED[name] = variable
        if display:
            from IPython.display import display as _display
            _display(variable)

    sys.modules["myst_nb"] = types.ModuleType("myst_nb")
    sys.modules["myst_nb"].glue, sys.modules["myst_nb"].GLUED = glue, GLUED

from threadpoolctl import threadpool_limits

threadpool_limits(1)
import attnbook

print(f"attnbook {{attnbook.__version__}} ready, one BLAS thread")
'''

# {role}`content`: MyST's inline role syntax.
ROLE = re.compile(r"\{(?P<name>[a-zA-Z][\w:-]*)\}(?P<ticks>`+)(?P<content>.+?)(?P=ticks)", re.DOTALL)
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*)$")
PLAIN_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})")
LABELLED_MATH = re.compile(r"\$\$(?P<body>.+?)\$\$[ \t]*\((?P<label>[\w:.-]+)\)", re.DOTALL)
TARGET_LINE = re.compile(r"^\([\w:.-]+\)=[ \t]*$")
PROOF_KINDS = ("algorithm", "axiom", "conjecture", "corollary", "criterion", "definition",
               "example", "lemma", "observation", "property", "proposition", "remark", "theorem",
               "assumption", "proof")


def _expand_one_argument(text: str, name: str, template: str) -> str:
    """Replace every ``\\name`` and its argument (a braced group, a control word or one
    character, as TeX reads it) by ``template`` with ``#1`` standing for the argument."""
    out, pos = [], 0
    for match in re.finditer(rf"\\{name}(?![a-zA-Z])\s*", text):
        if match.start() < pos:
            continue  # inside an argument already replaced
        start = end = match.end()
        if end < len(text) and text[end] == "{":
            depth = 0
            while end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
                if depth == 0:
                    break
            argument = text[start + 1:end - 1]
        else:
            word = re.match(r"\\[a-zA-Z]+|\\.|.", text[start:], re.DOTALL)
            if word is None:
                raise Unknown(f"macro \\{name} without an argument")
            end = start + word.end()
            argument = word.group()
        out += [text[pos:match.start()], template.replace("#1", argument)]
        pos = end
    return "".join(out) + text[pos:]


class Unknown(Exception):
    """Markup the converter does not know: a build warning, never raw MyST in the download."""


# -- citations -------------------------------------------------------------------------------

def _latex_text(text: str) -> str:
    import latexcodec  # noqa: F401  (registers the codec; sphinxcontrib-bibtex depends on it)

    text = codecs.decode(text, "ulatex")
    return re.sub(r"[{}]", "", text).strip()


class Bibliography:
    """Author-year text and a link for each entry of the book's ``.bib`` files."""

    def __init__(self, files: list[Path]):
        from pybtex.database import parse_file

        self.entries = {}
        for file in files:
            self.entries.update(parse_file(str(file)).entries)

    def authors(self, key: str) -> str:
        entry = self.entries[key]
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [_latex_text(" ".join(p.prelast_names + p.last_names)) for p in people]
        if not names:
            return _latex_text(entry.fields.get("organization", entry.fields.get("title", key)))
        if len(names) == 1:
            return names[0]
        if len(names) == 2:
            return f"{names[0]} and {names[1]}"
        return f"{names[0]} et al."

    def year(self, key: str) -> str:
        return self.entries[key].fields.get("year", "n.d.")

    def url(self, key: str) -> str | None:
        fields = self.entries[key].fields
        if fields.get("url"):
            return fields["url"]
        if fields.get("doi"):
            return "https://doi.org/" + fields["doi"]
        return None

    def _link(self, text: str, key: str) -> str:
        url = self.url(key)
        return f"[{text}]({url})" if url else text

    def cite(self, keys: list[str], textual: bool) -> str:
        missing = [k for k in keys if k not in self.entries]
        if missing:
            raise Unknown(f"citation key(s) not in the bibliography: {missing}")
        if textual:
            return "; ".join(self._link(f"{self.authors(k)} ({self.year(k)})", k) for k in keys)
        return "(" + "; ".join(self._link(f"{self.authors(k)}, {self.year(k)}", k) for k in keys) + ")"


# -- the titles the site shows (exercise and proof numbers) ----------------------------------

ADMONITION = re.compile(r'<div class="(?P<classes>[^"]*\badmonition\b[^"]*)"[^>]*>\s*'
                        r'<p class="admonition-title">(?P<title>.*?)</p>', re.DOTALL)


def _html_text(fragment: str) -> str:
    text = re.sub(r"<[^>]+>", "", fragment)
    text = html.unescape(text).replace("\\(", "$").replace("\\)", "$")
    return re.sub(r"\s+", " ", text).strip()


def site_titles(page_html: str) -> dict[str, list[str]]:
    """Titles of the page's exercises, solutions and proof boxes, by kind, in page order."""
    titles: dict[str, list[str]] = {}
    for match in ADMONITION.finditer(page_html):
        classes = match["classes"].split()
        if "exercise" in classes:
            kind = "exercise"
        elif "solution" in classes:
            kind = "solution"
        elif "proof" in classes:
            kinds = [c for c in classes if c in PROOF_KINDS and c != "proof"]
            kind = "prf:" + (kinds[0] if kinds else "proof")
        else:
            continue
        titles.setdefault(kind, []).append(_html_text(match["title"]))
    return titles


# -- a page's markdown ----------------------------------------------------------------------

class Converter:
    """Turns the MyST markdown of one page into markdown Jupyter renders."""

    def __init__(self, app: Sphinx, docname: str, glued: dict, bib: Bibliography, titles: dict):
        self.app, self.env, self.docname = app, app.env, docname
        self.glued, self.bib, self.titles = glued, bib, titles
        self.counts: dict[str, int] = {}
        self.problems: list[str] = []
        self.srcdir = Path(app.env.doc2path(docname)).parent

    # -- roles
    def resolve(self, domain: str, typ: str, target: str, title: str | None) -> str:
        explicit = title is not None
        text = title if explicit else target
        node = addnodes.pending_xref("", nodes.inline(text, text), refdomain=domain, reftype=typ,
                                     reftarget=target, refexplicit=explicit, refdoc=self.docname,
                                     refwarn=True)
        contnode = nodes.inline(text, text)
        result = self.env.get_domain(domain).resolve_xref(self.env, self.docname, self.app.builder,
                                                          typ, target, node, contnode)
        if result is None:
            raise Unknown(f"{{{domain + ':' if domain != 'std' else ''}{typ}}}`{target}`: no such target")
        return result.astext().strip()

    def xref(self, domain: str, typ: str, content: str, lower: bool) -> str:
        match = re.fullmatch(r"(?P<title>.*?)\s*<(?P<target>[^<>]+)>", content.strip(), re.DOTALL)
        title, target = (match["title"], match["target"]) if match else (None, content.strip())
        if typ == "doc":
            target = str(Path(self.docname).parent / target) if not target.startswith("/") else target[1:]
            target = re.sub(r"\.(md|ipynb)$", "", target)
            target = str(Path(target).as_posix())
            return self.resolve(domain, typ, "/" + target, title)
        if lower:
            target = target.lower()
        return self.resolve(domain, typ, target, title)

    def glue(self, content: str, markdown: bool = False) -> str:
        from myst_nb.core.variables import format_plain_text

        if "::" in content:
            raise Unknown(f"glue from another page ({content}) is not supported in downloads")
        key, _, fmt = content.partition(":")
        output = self.glued.get(key)
        if markdown:
            # {glue:md}`key:myst`: the suffix names the Markdown flavour, not a number format;
            # the glued Markdown goes into the cell as it is (a notebook reads $...$ too).
            if output is None or "text/markdown" not in output.get("data", {}):
                raise Unknown(f"no glued text/markdown value named {key!r}")
            text = output["data"]["text/markdown"]
            return "".join(text) if isinstance(text, list) else text
        if output is None or "text/plain" not in output.get("data", {}):
            raise Unknown(f"no glued text/plain value named {key!r}")
        return format_plain_text(output["data"]["text/plain"], fmt)

    def role(self, match: re.Match) -> str:
        try:
            return self._role(match["name"], match["content"])
        except Unknown as exc:
            self.problems.append(str(exc))
            return match["content"]

    def _role(self, name: str, content: str) -> str:
        if name in ("glue", "glue:", "glue:text"):
            return self.glue(content)
        if name == "glue:md":
            return self.glue(content, markdown=True)
        if name in ("cite", "cite:p", "cite:ps", "cite:t", "cite:ts", "cite:alp"):
            keys = [k.strip() for k in content.split(",") if k.strip()]
            return self.bib.cite(keys, textual=name in ("cite:t", "cite:ts"))
        if name == "eq":
            return self.xref("math", "eq", content, lower=False)
        if name in ("numref", "ref"):
            return self.xref("std", name, content, lower=True)
        if name == "doc":
            return self.xref("std", "doc", content, lower=False)
        if name == "prf:ref":
            return self.xref("prf", "ref", content, lower=False)
        if name == "math":
            return f"${content}$"
        raise Unknown(f"role {{{name}}}")

    def inline(self, text: str) -> str:
        # "({eq}`x`)" would read "((4.1))": the reference brings its own parentheses.
        text = re.sub(r"\((\{eq\}`[^`]+`)\)", r"\1", text)
        text = LABELLED_MATH.sub(self._labelled_math, text)
        return self.expand_macros(ROLE.sub(self.role, text))

    def expand_macros(self, text: str) -> str:
        """The book's MathJax macros (``mathjax3_config``), which Jupyter does not know, spelled
        out: ``\\R`` is ``\\mathbb{R}``, ``\\vec{h}`` is ``\\boldsymbol{\\mathrm{h}}``."""
        macros = ((self.app.config.mathjax3_config or {}).get("tex", {}) or {}).get("macros", {})
        for name, definition in macros.items():
            if isinstance(definition, (list, tuple)):
                template, nargs = definition[0], definition[1]
                if nargs != 1 or template.count("#1") != 1 or "#" in template.replace("#1", ""):
                    raise Unknown(f"macro \\{name}: only one-argument macros using #1 once are expanded")
                text = _expand_one_argument(text, name, template)
            else:
                text = re.sub(rf"\\{name}(?![a-zA-Z])", lambda _: definition, text)
        return text

    def _labelled_math(self, match: re.Match) -> str:
        number = self.resolve("math", "eq", match["label"], None).strip("()")
        body = match["body"].rstrip()
        newline = "\n" if "\n" in body else " "
        return f"$${body}{newline}\\tag{{{number}}}{newline}$$"

    # -- directives
    def title(self, kind: str, fallback: str) -> str:
        index = self.counts.get(kind, 0)
        self.counts[kind] = index + 1
        titles = self.titles.get(kind, [])
        if index < len(titles):
            return titles[index]
        raise Unknown(f"the site has no title for {kind} number {index + 1} (fallback {fallback!r})")

    @staticmethod
    def quote(title: str, body: str) -> str:
        """A box of the site as a titled block between rules (not a ``>`` quote: Jupyter would
        typeset the quote marks inside display math)."""
        return f"\n---\n\n**{title}**\n\n{body.strip()}\n\n---\n"

    def directive(self, name: str, arg: str, options: dict, body: str) -> str:
        converted = self.convert(body)
        if name == "admonition":
            return self.quote(self.inline(arg) or "Note", converted)
        if name in ("note", "tip", "warning", "important", "hint", "caution", "attention", "seealso"):
            return self.quote(self.inline(arg) or name.capitalize(), converted)
        if name == "exercise":
            return self.quote(self.title("exercise", f"Exercise ({arg})"), converted)
        if name == "solution":
            return self.quote(self.title("solution", "Solution"), converted)
        if name == "solution-start":
            return f"**{self.title('solution', 'Solution')}**\n\n{converted}".rstrip()
        if name == "solution-end":
            return "*(End of the solution.)*"
        if name.startswith("prf:") and name[4:] in PROOF_KINDS:
            if name == "prf:proof":
                return self.quote("Proof.", converted.rstrip() + " $\\blacksquare$")
            return self.quote(self.title(name, name[4:].capitalize()), converted)
        if name == "literalinclude":
            return self.literalinclude(arg, options)
        if name == "only":
            return converted if "html" in arg else ""
        if name == "table":
            return f"**{self.inline(arg)}**\n\n{converted}" if arg else converted
        if name in ("tabularcolumns", "bibliography", "tableofcontents"):
            return ""
        raise Unknown(f"directive {{{name}}}")

    def literalinclude(self, arg: str, options: dict) -> str:
        from sphinx.directives.code import LiteralIncludeReader

        path = (self.srcdir / arg).resolve()
        keep = {k: v for k, v in options.items() if k in ("pyobject", "lines", "start-after",
                "end-before", "start-at", "end-at", "dedent", "prepend", "append")}
        if "dedent" in keep:
            keep["dedent"] = int(keep["dedent"]) if keep["dedent"] else None
        try:
            text, _ = LiteralIncludeReader(str(path), keep, self.app.config).read()
        except (OSError, ValueError) as exc:
            raise Unknown(f"literalinclude {arg}: {exc}") from exc
        language = options.get("language", "python")
        try:
            shown = path.relative_to(Path(self.app.srcdir).resolve()).as_posix()
        except ValueError:
            shown = path.name
        what = f"`{options['pyobject']}` in " if "pyobject" in options else ""
        return f"From {what}`{shown}`:\n\n```{language}\n{text.rstrip()}\n```"

    def convert(self, text: str) -> str:
        """Markdown with every directive converted and every role resolved."""
        lines, out, i = text.splitlines(), [], 0
        prose: list[str] = []

        def flush():
            if prose:
                kept = [l for l in prose if not TARGET_LINE.match(l) and not re.match(r"^%", l)]
                out.append(self.inline("\n".join(kept)))
                prose.clear()

        while i < len(lines):
            line = lines[i]
            match = FENCE.match(line)
            plain = PLAIN_FENCE.match(line) if not match else None
            if match or plain:
                m = match or plain
                fence, indent = m["fence"], m["indent"]
                j = i + 1
                close = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
                while j < len(lines) and not close.match(lines[j]):
                    j += 1
                body = lines[i + 1:j]
                if plain:  # a code block: as it is
                    prose.extend(lines[i:j + 1])
                    i = j + 1
                    continue
                flush()
                options, k = {}, 0
                if body and body[0].strip() == "---":
                    end = body.index("---", 1) if "---" in body[1:] else 0
                    import yaml

                    options = yaml.safe_load("\n".join(body[1:end])) or {}
                    k = end + 1
                else:
                    while k < len(body) and (opt := re.match(r"^[ \t]*:([\w-]+):[ \t]*(.*)$", body[k])):
                        options[opt[1]] = opt[2].strip()
                        k += 1
                inner = "\n".join(l[len(indent):] if l.startswith(indent) else l for l in body[k:])
                try:
                    converted = self.directive(match["name"], match["arg"].strip(), options, inner)
                except Unknown as exc:
                    self.problems.append(str(exc))
                    converted = self.convert(inner)
                out.append(converted)
                i = j + 1
                continue
            prose.append(line)
            i += 1
        flush()
        return "\n".join(part for part in out).strip("\n") + ("\n" if text.endswith("\n") else "")


# -- the notebook ----------------------------------------------------------------------------

def pip_spec(app: Sphinx) -> str:
    options = app.config.html_theme_options or {}
    repository = options.get("repository_url") or "https://github.com/attention-executed/attention-executed"
    branch = options.get("repository_branch") or "main"
    return app.config.attnbook_notebook_pip_spec or DEFAULT_PIP_SPEC.format(
        repository=repository.rstrip("/"), branch=branch)


def readable_notebook(app: Sphinx, docname: str, notebook: nbformat.NotebookNode, glued: dict,
                      bib: Bibliography, page_html: str) -> nbformat.NotebookNode:
    converter = Converter(app, docname, glued, bib, site_titles(page_html))
    cells = [nbformat.v4.new_code_cell(SETUP.format(pip_spec=pip_spec(app)),
                                       metadata={"tags": [SETUP_TAG]})]
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = converter.convert(cell.source)
            cells.append(cell)
            continue
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.get("tags", [])
        if {"remove-cell", "remove-input", "hide-input", "hide-cell"} & set(tags):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
        figure = cell.metadata.get("mystnb", {}).get("figure", {})
        if figure.get("caption"):
            label = figure.get("name")
            try:
                number = converter.resolve("std", "numref", label.lower(), None) if label else "Figure"
            except Unknown as exc:
                converter.problems.append(str(exc))
                number = "Figure"
            caption = converter.convert(str(figure["caption"])).strip()
            cells.append(nbformat.v4.new_markdown_cell(f"**{number}:** {caption}"))
    for i, cell in enumerate(cells):  # reproducible ids (nbformat 4.5)
        cell["id"] = f"cell-{i}"
    notebook.cells = cells
    notebook.nbformat_minor = max(notebook.nbformat_minor, 5)
    notebook.metadata.pop("source_map", None)
    notebook.metadata.pop("jupytext", None)
    notebook.metadata["attnbook"] = {"page": docname, "readable": True}
    for problem in converter.problems:
        logger.warning(f"the notebook download of {docname} would show raw MyST: {problem}",
                       location=docname, type="attnbook", subtype="notebook")
    return notebook


def write_readable_notebooks(app: Sphinx, exception) -> None:
    """``build-finished``: rewrite every ``_sources/<page>.ipynb`` download as readable."""
    if exception is not None or app.builder.format != "html":
        return
    execute = Path(app.outdir).parent / "jupyter_execute"
    bib = Bibliography([Path(app.srcdir) / f for f in app.config.bibtex_bibfiles])
    for docname in sorted(app.env.found_docs):
        download = Path(app.outdir) / "_sources" / (docname + ".ipynb")
        source = execute / (docname + ".ipynb")
        page = Path(app.outdir) / (docname + ".html")
        if not (download.is_file() and source.is_file() and page.is_file()):
            continue
        glue_file = execute / (docname + ".glue.json")
        glued = json.loads(glue_file.read_text(encoding="utf-8")) if glue_file.is_file() else {}
        notebook = nbformat.read(source, as_version=4)
        try:
            notebook = readable_notebook(app, docname, notebook, glued, bib, page.read_text(encoding="utf-8"))
            nbformat.validate(notebook)
        except Exception as exc:  # noqa: BLE001 - a warning (strict builds fail), never a crash
            logger.warning(f"the notebook download of {docname} could not be made readable: "
                           f"{type(exc).__name__}: {exc}", location=docname, type="attnbook",
                           subtype="notebook")
            continue
        download.write_text(nbformat.writes(notebook), encoding="utf-8")


def setup(app: Sphinx) -> dict:
    app.add_config_value("attnbook_notebook_pip_spec", "", "")
    app.connect("build-finished", write_readable_notebooks)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
