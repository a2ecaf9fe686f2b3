"""The API reference (book/api.md) links to the chapters, and its cross-references resolve.

1. Chapter links. A docstring names the chapter that teaches it in plain words, as
   ``Chapter 8, *The Transformer*, ...`` (readable in ``help()``). When autodoc renders a
   docstring for the book, each such mention becomes a link to that chapter's page. A chapter
   number that does not exist, or a title that is not the chapter's title, is a warning (so the
   strict build fails); tests/test_api.py checks further that the chapter uses the name.
2. Re-exported names. Docstrings refer to the package's short names (``attnbook.softmax``,
   ``attnbook.tasks.make_dataset``); the reference documents each name once, in the module that
   defines it (``attnbook.softmax.softmax``). A Python cross-reference that finds nothing is
   resolved by importing the name and following it to where it is defined.
3. Attribute types. An ``Attributes`` section's types (``ndarray of shape (B, T)``) are shown
   in italics like the parameters' types, not split into references to ``shape``, ``B``, ``T``.
4. sphinx-codeautolink 0.20 and untitled sections. codeautolink's code-cell reader keeps a stack of
   section titles: it pushes at every title and pops at the end of every section. sphinx-proof
   and sphinx-exercise put a ``section`` without a title inside every definition, exercise and
   solution, so the reader pops more than it pushed and the build stops with "IndexError: pop
   from empty list" on the first page with an exercise. Pop only for a section that has a title.
   tests/test_codeautolink.py checks that the repair is applied and still needed.
5. Indented code. A ``literalinclude`` of a method (``:pyobject: Seq2Seq._step``) shows indented
   code, which codeautolink cannot parse (a warning); ``dedent_python`` hands it the code
   dedented. It is registered as codeautolink's reader of "python" blocks here, not with
   ``codeautolink_custom_blocks``: codeautolink replaces that setting's value by the function,
   which Sphinx cannot pickle (another warning).
6. Imports in removed cells. Every chapter imports in a first cell tagged ``remove-cell``
   (``import attnbook as ab``), which is not in the page, so codeautolink never saw where ``ab``
   comes from and linked none of ``ab.softmax``, ``ab.dot_score``, ... The import statements
   of a page's removed cells are given to codeautolink as that page's preface (its
   ``autolink-preface`` with level "file"), before it reads the page.
7. Functions named like their module. ``attnbook.softmax`` and ``attnbook.gradcheck`` are each a
   submodule and, once ``attnbook`` is imported, the function it re-exports under that name
   (``ab.softmax(x)`` calls the function). codeautolink resolves a name by importing the longest
   module prefix it can, so it linked ``ab.softmax`` and ``from attnbook import gradcheck`` to
   the module's page. Each such name of ``attnbook.__all__`` is added to
   ``codeautolink_inventory_map``, mapped to the function's own entry in the reference.
"""

from __future__ import annotations

import ast
import importlib
import re
import textwrap
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

CHAPTER = re.compile(r"Chapter (\d+), \*([^*]+)\*")


def chapters(app: Sphinx) -> dict[int, tuple[str, str]]:
    """Chapter number -> (docname, title), from the files book/NN-*.md."""
    found = {}
    for path in sorted((Path(app.srcdir) / "book").glob("[0-9][0-9]-*.md")):
        title = next((line[2:].strip() for line in path.read_text(encoding="utf-8").splitlines()
                      if line.startswith("# ")), "")
        found[int(path.name[:2])] = (f"book/{path.stem}", title)
    return found


def link_chapters(app: Sphinx, what, name, obj, options, lines: list[str]) -> None:
    known = app.env.attnbook_chapters

    def link(match: re.Match) -> str:
        number, title = int(match.group(1)), match.group(2)
        if number not in known:
            logger.warning(f"{name}: its docstring names Chapter {number}, which does not exist",
                           type="attnbook", subtype="chapter")
            return match.group(0)
        docname, real = known[number]
        if title != real:
            logger.warning(f"{name}: its docstring names Chapter {number} *{title}*; the "
                           f"chapter's title is *{real}*", type="attnbook", subtype="chapter")
        return f":doc:`Chapter {number}, {real} </{docname}>`"

    lines[:] = [CHAPTER.sub(link, line) for line in lines]


VARTYPE = re.compile(r"^(\s*:vartype [^:]+:\s*)(\S.*)$")
SEVERAL = re.compile(r"^(\s*:(?:ivar|vartype) )([^:]+, [^:]+)(:.*)$")


def plain_attribute_types(app: Sphinx, what, name, obj, options, lines: list[str]) -> None:
    """Show an attribute's numpydoc type as the parameters' types are shown, in italics.

    napoleon turns an ``Attributes`` section into ``:ivar:`` / ``:vartype:`` fields, and Sphinx
    makes every word of a ``:vartype:`` a class reference: ``ndarray of shape (B, T)`` becomes
    references to ``shape``, ``B`` and ``T``. A type that is emphasised text is left as it is.
    Several attributes documented together (``src, tgt : ...``) keep their names together (joined
    by a zero-width space, which Sphinx does not split at).
    """
    for i, line in enumerate(lines):
        # ``src, tgt : ...`` documents two attributes; Sphinx would read "src," as a type.
        m = SEVERAL.match(line)
        if m:
            line = lines[i] = m.group(1) + m.group(2).replace(", ", ",\u200b") + m.group(3)
        m = VARTYPE.match(line)
        if m and "*" not in m.group(2) and "`" not in m.group(2):
            lines[i] = f"{m.group(1)}*{m.group(2).rstrip()}*"


def remember_chapters(app: Sphinx) -> None:
    app.env.attnbook_chapters = chapters(app)


def follow_reexports(app: Sphinx, env, node, contnode):
    """Resolve ``attnbook.softmax`` to ``attnbook.softmax.softmax`` (where it is documented)."""
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    candidates = [target]
    module = node.get("py:module")
    if module and not target.startswith("attnbook"):
        # A short name in a docstring: the module's own, or the package's (``gradcheck``).
        candidates += [f"{module}.{target}", f"attnbook.{target}"]
    domain = env.get_domain("py")
    for candidate in candidates:
        if not candidate.startswith("attnbook."):
            continue
        home = _home(candidate)
        if home is None or home == candidate:
            continue
        found = domain.find_obj(env, "", "", home, None, 1)
        if found:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], home,
                                       node, contnode)
    return None


def _home(dotted: str) -> str | None:
    """Where the object named ``dotted`` is defined, as ``module.qualname``."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
        if isinstance(module, str) and isinstance(qualname, str) and module.startswith("attnbook"):
            return f"{module}.{qualname}"
        return None
    return None


def functions_named_like_modules() -> dict[str, str]:
    """``{"attnbook.softmax": "attnbook.softmax.softmax", ...}`` (repair 7)."""
    import importlib.util
    import inspect

    import attnbook

    return {f"attnbook.{name}": _home(f"attnbook.{name}") for name in attnbook.__all__
            if not inspect.ismodule(getattr(attnbook, name))
            and importlib.util.find_spec(f"attnbook.{name}") is not None}


def map_functions_named_like_modules(app: Sphinx, config) -> None:
    """Repair 7: a mapping set in the configuration by hand is kept."""
    config.codeautolink_inventory_map = {**functions_named_like_modules(),
                                         **config.codeautolink_inventory_map}


def repair_codeautolink() -> None:
    """Repairs 4 and 5 of the module docstring (idempotent)."""
    try:
        from sphinx_codeautolink.extension.block import CodeBlockAnalyser
    except ImportError:  # not installed: nothing to repair
        return
    if getattr(CodeBlockAnalyser, "attnbook_repaired", False):
        return
    depart = CodeBlockAnalyser.depart_section

    def depart_section(self, node) -> None:
        if node.children and isinstance(node.children[0], nodes.title):
            depart(self, node)

    CodeBlockAnalyser.depart_section = depart_section
    CodeBlockAnalyser.attnbook_repaired = True
    from sphinx_codeautolink.extension import block

    for lexer in ("python", "python3", "py", "py3"):
        if block.BUILTIN_BLOCKS.get(lexer) is None:
            block.BUILTIN_BLOCKS[lexer] = dedent_python


def dedent_python(source: str) -> tuple[str, str]:
    """codeautolink's reader for Python blocks: (shown source, source to parse) (repair 5)."""
    return source, textwrap.dedent(source)


def hidden_imports(source: str) -> list[str]:
    """The import statements of a cell's source, one per line (none if it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    return [ast.unparse(node) for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom)) and node.col_offset == 0]


def preface_removed_imports(app: Sphinx, doctree: nodes.document) -> None:
    """Repair 6 of the module docstring."""
    if "sphinx_codeautolink" not in app.extensions:
        return
    if app.builder.name not in ("html", "dirhtml"):
        # codeautolink reads (and removes) its markers only for HTML; a marker left in a LaTeX
        # doctree cannot be copied (PrefaceMarker.copy drops its level) and loses the chapter.
        return
    try:
        from myst_nb.core.read import create_nb_reader
        from sphinx_codeautolink.extension.directive import PrefaceMarker
    except ImportError:
        return
    path = Path(app.env.doc2path(app.env.docname))
    if path.suffix != ".md":
        return
    text = path.read_text(encoding="utf-8")
    md_config = getattr(app.env, "myst_config", None)
    if md_config is None:
        from myst_parser.config.main import MdParserConfig

        md_config = MdParserConfig()
    reader = create_nb_reader(str(path), md_config, app.env.mystnb_config, text)
    if reader is None:
        return
    lines = []
    for cell in reader.read(text).cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and ("remove-cell" in tags or "remove-input" in tags):
            lines += hidden_imports(cell.source)
    if lines:
        doctree.insert(0, PrefaceMarker("\n".join(lines), "file"))


def setup(app: Sphinx) -> dict:
    repair_codeautolink()
    app.connect("builder-inited", remember_chapters)
    app.connect("config-inited", map_functions_named_like_modules)
    # After napoleon (priority 500) has turned the numpydoc sections into reStructuredText.
    app.connect("autodoc-process-docstring", link_chapters, priority=600)
    app.connect("autodoc-process-docstring", plain_attribute_types, priority=600)
    app.connect("missing-reference", follow_reexports)
    # Before codeautolink reads the page's code (its doctree-read handler has priority 490).
    app.connect("doctree-read", preface_removed_imports, priority=480)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
