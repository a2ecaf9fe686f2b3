"""Code cells link to the API reference (sphinx-codeautolink), and its repairs are applied and needed.

_ext/attnbook_api.py repairs four things between sphinx-codeautolink 0.20 and this book (its
docstring, items 4 to 7). For each, the built site shows it applied; for those that concern
codeautolink itself, a minimal project built with the pinned versions but without the repair
still shows the defect (when an upgrade fixes it upstream, the test fails: remove the repair).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HTML, ROOT

LINK = re.compile(r'<a [^>]*class="sphinx-codeautolink-a"[^>]*>')
HREF = re.compile(r'href="([^"]*api\.html#[^"]+)"')


def links(page: str) -> set[str]:
    html = (HTML / "book" / f"{page}.html").read_text(encoding="utf-8")
    return {m.group(1).rpartition("#")[2] for tag in LINK.findall(html) if (m := HREF.search(tag))}


@pytest.fixture(scope="module")
def built():
    if not (HTML / "book" / "api.html").exists():
        pytest.fail("No built site in _build/html: build it first (python3 dev.py book)")


def test_every_chapter_links_its_code_to_the_reference(built):
    for page in sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]-*.md")):
        assert links(page), f"{page}: no name in its code links to the API reference"


def test_names_from_the_removed_setup_cell_are_linked(built):
    # Chapter 2 imports `attnbook as ab` in a removed cell, then calls ab.dot_score (repair 6).
    assert "attnbook.scores.dot_score" in links("02-alignment-scores")
    # Chapter 4 includes the method Seq2Seq._step: indented code, parsed dedented (repair 5).
    assert links("04-learning-to-align")


CONF = """\
extensions = ["sphinx_exercise", "sphinx_codeautolink"{more}]
"""
INDEX = """\
Page
====

.. exercise:: Something

   Do it.

.. code-block:: python

   import os
   os.getcwd()

.. literalinclude:: mod.py
   :pyobject: C.method
   :language: python
"""
MOD = """\
import os


class C:
    def method(self):
        return os.sep
"""


def build_minimal(tmp_path: Path, repaired: bool, exercise: bool = True) -> subprocess.CompletedProcess:
    src = tmp_path / f"{'repaired' if repaired else 'plain'}-{exercise}"
    src.mkdir()
    more = ', "attnbook_api"' if repaired else ""
    (src / "conf.py").write_text(CONF.format(more=more), encoding="utf-8")
    index = INDEX if exercise else INDEX.replace(".. exercise:: Something\n\n   Do it.\n", "")
    (src / "index.rst").write_text(index, encoding="utf-8")
    (src / "mod.py").write_text(MOD, encoding="utf-8")
    return sphinx_html(src)


def sphinx_html(src: Path) -> subprocess.CompletedProcess:
    """Build the project in ``src`` into ``src/_build`` with the book's _ext on the path."""
    env_path = str(ROOT / "_ext")
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {env_path!r}); "
         "from sphinx.cmd.build import main; sys.exit(main(sys.argv[1:]))",
         "-b", "html", "-q", str(src), str(src / "_build")],
        capture_output=True, text=True, timeout=300)


def test_the_repairs_are_still_needed(tmp_path):
    plain = build_minimal(tmp_path, repaired=False)
    # Repair 4: an exercise's untitled section empties codeautolink's title stack.
    assert plain.returncode != 0 and "pop from empty list" in plain.stdout + plain.stderr, (
        "sphinx-codeautolink now reads untitled sections: remove repair 4 of _ext/attnbook_api.py\n"
        + plain.stdout + plain.stderr)
    repaired = build_minimal(tmp_path, repaired=True)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    # Repair 5: without it, the indented block is a parse warning.
    assert "unexpected indent" not in repaired.stderr, repaired.stderr
    unparsed = build_minimal(tmp_path, repaired=False, exercise=False)
    assert "unexpected indent" in unparsed.stderr, (
        "sphinx-codeautolink now parses indented code: remove repair 5 of _ext/attnbook_api.py\n"
        + unparsed.stderr)


def test_ctrl_click_follows_a_link_in_live_code(built):
    # Live code makes every code area editable, and a browser follows no link inside one: live.js
    # follows a Ctrl+click on a name; a plain click only places the caret.
    import time

    pytest.importorskip("websockets", reason="the browser tests need websockets (requirements-test.txt)")
    from tools import chromium

    executable = chromium.find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: install the Debian package chromium, or set CHROMIUM")
    page = "book/02-alignment-scores.html"
    with chromium.serve(HTML) as base, chromium.launch(executable) as browser:
        tab = browser.new_tab(base)
        tab.enable()
        tab.open(f"{base}/{page}")
        where = tab.evaluate("""(async () => {
          for (let i = 0; i < 50 && !document.querySelector('pre[contenteditable]'); i++)
            await new Promise(r => setTimeout(r, 100));
          const a = document.querySelector('div.cell .cell_input pre[contenteditable] a.sphinx-codeautolink-a');
          if (!a) return null;
          a.scrollIntoView({block: 'center'});
          const r = a.getBoundingClientRect();
          return {x: r.x + r.width / 2, y: r.y + r.height / 2, href: a.href};
        })()""")
        assert where, f"{page}: no linked name in an editable code cell"
        for modifiers, expected in ((0, f"{base}/{page}"), (2, where["href"])):  # 2: Ctrl
            for kind in ("mousePressed", "mouseReleased"):
                tab.call("Input.dispatchMouseEvent", {"type": kind, "x": where["x"], "y": where["y"],
                                                      "button": "left", "clickCount": 1,
                                                      "modifiers": modifiers})
            time.sleep(1.0)
            assert tab.evaluate("location.href") == expected, f"click with modifiers {modifiers}"


def test_functions_named_like_their_module_link_to_the_function(built):
    # Repair 7: ab.softmax(x) calls the function attnbook.softmax.softmax, not the module.
    import inspect

    import attnbook

    assert "attnbook.softmax.softmax" in links("03-context-vectors")
    assert "attnbook.gradcheck.gradcheck" in links("09-cost")  # from attnbook import gradcheck
    for page in sorted(p.stem for p in (ROOT / "book").glob("[0-9][0-9]-*.md")):
        for target in links(page):
            if target.startswith("module-attnbook."):
                name = target.removeprefix("module-attnbook.").split(".")[0]
                assert inspect.ismodule(getattr(attnbook, name)), (
                    f"{page}: a name links to the module page {target}, but attnbook.{name} "
                    "is a function: see repair 7 of _ext/attnbook_api.py")


SOFTMAX_INDEX = """\
Page
====

.. automodule:: attnbook.softmax
   :members: softmax

.. code-block:: python

   import attnbook as ab
   ab.softmax([1.0, 2.0])
"""


def test_functions_named_like_their_module_still_need_the_repair(tmp_path):
    def build(repaired):
        src = tmp_path / f"softmax-{repaired}"
        src.mkdir()
        more = ', "sphinx.ext.autodoc"' + (', "attnbook_api"' if repaired else "")
        (src / "conf.py").write_text(CONF.format(more=more), encoding="utf-8")
        (src / "index.rst").write_text(SOFTMAX_INDEX, encoding="utf-8")
        done = sphinx_html(src)
        assert done.returncode == 0, done.stdout + done.stderr
        html = (src / "_build" / "index.html").read_text(encoding="utf-8")
        return {m.group(1) for tag in LINK.findall(html) if (m := re.search(r'href="[^"]*#([^"]+)"', tag))}

    assert "module-attnbook.softmax" in build(repaired=False), (
        "sphinx-codeautolink now links ab.softmax to the function: remove repair 7 of "
        "_ext/attnbook_api.py")
    repaired = build(repaired=True)
    assert "attnbook.softmax.softmax" in repaired and "module-attnbook.softmax" not in repaired
