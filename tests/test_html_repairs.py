"""Each repair of _ext/attnbook_html.py is applied to the built site, and still needed.

For every repair, two cheap checks:

- *applied*: the built site (``_build/html``) shows the repaired form and never the defect;
- *needed*: a minimal project built with the pinned Sphinx, docutils, myst-nb and sphinx-thebe
  but without the extension still shows the defect. When an upgrade fixes it upstream, this
  test fails: remove the repair (and these tests) then.

The same minimal project built with the extension shows each defect repaired.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HTML, MYST_NOTEBOOK_HEADER, ROOT

CONF = """\
extensions = ["myst_nb", "sphinx_thebe"{more}]
nb_execution_mode = "off"
thebe_config = {{}}
"""
INDEX = MYST_NOTEBOOK_HEADER + """\

# A notebook page

```{code-cell} ipython3
:tags: [hide-input]
print("hidden input")
```

```{toctree}
cite
```
"""
CITE = """\
Cited
=====

As [CIT2002]_ shows.

.. [CIT2002] A book.
"""

THEBE = "const THEBE_JS_URL"
BIBLIOENTRY = 'role="doc-biblioentry"'
TOGGLE_LABEL = 'aria-label="Toggle hidden content"'


def build_minimal(folder: Path, repaired: bool) -> dict[str, str]:
    src, out = folder / "src", folder / "out"
    src.mkdir(parents=True)
    more = ', "attnbook_html"' if repaired else ""
    (src / "conf.py").write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT / '_ext')!r})\n" + CONF.format(more=more))
    (src / "index.md").write_text(INDEX)
    (src / "cite.rst").write_text(CITE)
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src), str(out)],
                   check=True, capture_output=True, text=True)
    return {name: (out / f"{name}.html").read_text() for name in ("index", "cite")}


@pytest.fixture(scope="module")
def unrepaired(tmp_path_factory) -> dict[str, str]:
    return build_minimal(tmp_path_factory.mktemp("unrepaired"), repaired=False)


@pytest.fixture(scope="module")
def repaired(tmp_path_factory) -> dict[str, str]:
    return build_minimal(tmp_path_factory.mktemp("repaired"), repaired=True)


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    if not (HTML / "index.html").exists():
        pytest.fail("No built site in _build/html: build it first (python3 dev.py book).")
    return {p.relative_to(HTML).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted((HTML / "book").glob("*.html"))}


# 1. Sphinx 7.4 writes an inline script added after Builder.init() twice (sphinx-thebe's).

def test_inline_script_twice_is_still_an_upstream_defect(unrepaired):
    assert unrepaired["index"].count(THEBE) == 2


def test_inline_script_written_once(repaired, built):
    assert repaired["index"].count(THEBE) == 1
    counts = {name: html.count(THEBE) for name, html in built.items()}
    assert set(counts.values()) == {1}, counts


# 2. docutils 0.21 gives bibliography entries a role a list may not contain.

def test_biblioentry_role_is_still_an_upstream_defect(unrepaired):
    assert BIBLIOENTRY in unrepaired["cite"]


def test_bibliography_entries_are_list_items(repaired, built):
    assert BIBLIOENTRY not in repaired["cite"] and 'role="listitem"' in repaired["cite"]
    bibliography = built["book/bibliography.html"]
    assert len(re.findall(r'role="listitem"', bibliography)) > 10
    assert not [name for name, html in built.items() if BIBLIOENTRY in html]


# 3. myst-nb names every code-cell toggle "Toggle hidden content", not what it shows.

def test_toggle_label_is_still_an_upstream_defect(unrepaired):
    assert TOGGLE_LABEL in unrepaired["index"]


def test_toggles_are_named_by_their_visible_text(repaired, built):
    assert TOGGLE_LABEL not in repaired["index"] and "<summary>" in repaired["index"]
    toggles = sum(html.count('<details class="admonition hide') for html in built.values())
    assert toggles > 0, "no page hides code any more: the repair has nothing to repair"
    assert not [name for name, html in built.items() if TOGGLE_LABEL in html]

