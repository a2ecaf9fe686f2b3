"""The build never serves stale outputs, and reuses them when nothing changed.

A small book in a temporary folder uses the same extension (_ext/attnbook_build.py) with its
own tiny package in place of attnbook. Three builds: a clean one, one with nothing changed,
and one after the package is edited.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

PAGE = """\
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

# {title}

```{{code-cell}} ipython3
{code}
```
"""

CONFIG = """\
title: cache test
only_build_toc_files: true
execute:
  execute_notebooks: cache
  timeout: 120
sphinx:
  local_extensions:
    attnbook_build: {ext}
  config:
    attnbook_sources: pkg/minipkg
    attnbook_import_pattern: '^\\s*(?:import|from)\\s+minipkg\\b'
"""


def build(book: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(book / "pkg"))
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jb), "build", str(book), "-W", "-n", "--keep-going"],
        env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def executed(log: str) -> set[str]:
    return set(re.findall(r"(\w+)\.md: Executing notebook", log))


def page_text(book: Path, name: str) -> str:
    return (book / "_build" / "html" / f"{name}.html").read_text()


@pytest.fixture
def book(tmp_path: Path) -> Path:
    (tmp_path / "pkg" / "minipkg").mkdir(parents=True)
    (tmp_path / "pkg" / "minipkg" / "__init__.py").write_text("VALUE = 'first-value'\n")
    ext = (ROOT / "_ext").as_posix()
    (tmp_path / "_config.yml").write_text(CONFIG.format(ext=ext))
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: uses\nchapters:\n  - file: other\n"
    )
    (tmp_path / "uses.md").write_text(PAGE.format(
        title="Uses the package",
        code=textwrap.dedent("""\
            import os
            import minipkg
            print("value:", minipkg.VALUE, "threads:", os.environ.get("OPENBLAS_NUM_THREADS"))"""),
    ))
    (tmp_path / "other.md").write_text(PAGE.format(
        title="Does not", code='print("independent", 6 * 7)'
    ))
    return tmp_path


def test_cache_reuse_and_invalidation(book: Path):
    first = build(book)
    assert executed(first) == {"uses", "other"}
    assert "value: first-value threads: 1" in page_text(book, "uses")

    again = build(book)
    assert executed(again) == set(), "a rebuild with nothing changed executed pages again"
    assert "value: first-value" in page_text(book, "uses")

    init = book / "pkg" / "minipkg" / "__init__.py"
    init.write_text("VALUE = 'second-value'\n")
    edited = build(book)
    assert executed(edited) == {"uses"}, "only the page importing the package re-executes"
    assert "value: second-value" in page_text(book, "uses")
    assert "first-value" not in page_text(book, "uses")
    assert "independent 42" in page_text(book, "other")

    # A clean of the pages (keeping the cache) rebuilds from the cache without executing.
    shutil.rmtree(book / "_build" / "html")
    shutil.rmtree(book / "_build" / ".doctrees")
    after_clean = build(book)
    assert executed(after_clean) == set()
    assert "value: second-value" in page_text(book, "uses")
