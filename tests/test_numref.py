"""_ext/attnbook_numref.py: the same numbered references, with each page unpickled once.

A minimal project with one figure and six ``:numref:`` references to it is built twice with the
pinned Sphinx, without and with the extension, counting how often Sphinx unpickles a page:

- *needed*: without the extension the count grows by one per reference (Sphinx 7.4 unpickles
  the target page for each). When an upgrade stops doing that, this test fails: remove the
  extension then;
- *works*: with it, the six references cost one unpickling, and every page comes out byte for
  byte the same as without it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

N_REFS = 6

CONF = """\
import pickle, sys
sys.path.insert(0, {ext!r})
import sphinx.environment

extensions = [{more}]
numfig = True
loads = []


class CountingPickle:  # sphinx.environment's own name for the pickle module
    def __getattr__(self, name):
        return getattr(pickle, name)

    @staticmethod
    def loads(data, *args, **kwargs):
        loads.append(1)
        return pickle.loads(data, *args, **kwargs)


sphinx.environment.pickle = CountingPickle()


def setup(app):
    app.connect("build-finished", lambda app, exc: open({count!r}, "w").write(str(len(loads))))
    if "attnbook_numref" in extensions:  # after the extension's own handler (priority 900)
        import attnbook_numref
        app.connect("build-finished", lambda app, exc: open({kept!r}, "w").write(
            str(len(attnbook_numref._shared))), priority=950)
"""
INDEX = """\
Index
=====

.. toctree::

   figure
   refs
"""
FIGURE = """\
Figure
======

.. _fig-one:

.. figure:: pixel.png

   A caption.
"""
REFS = "Refs\n====\n\n" + "".join(f"See :numref:`fig-one` ({i}).\n\n" for i in range(N_REFS))
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def build(folder: Path, repaired: bool) -> tuple[int, dict[str, str]]:
    src, out, count, kept = folder / "src", folder / "out", folder / "count", folder / "kept"
    src.mkdir(parents=True)
    more = '"attnbook_numref"' if repaired else ""
    (src / "conf.py").write_text(CONF.format(ext=str(ROOT / "_ext"), more=more, count=str(count),
                                                kept=str(kept)))
    (src / "index.rst").write_text(INDEX)
    (src / "figure.rst").write_text(FIGURE)
    (src / "refs.rst").write_text(REFS)
    (src / "pixel.png").write_bytes(PNG)
    subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", str(src), str(out)],
                   check=True, capture_output=True, text=True)
    pages = {name: (out / f"{name}.html").read_text() for name in ("index", "figure", "refs")}
    if repaired:  # the shared copies go with the build
        assert kept.read_text() == "0"
    return int(count.read_text()), pages


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return (build(tmp_path_factory.mktemp("plain"), repaired=False),
            build(tmp_path_factory.mktemp("repaired"), repaired=True))


def test_each_reference_unpickles_its_page_without_the_extension(builds):
    (plain, _), (repaired, _) = builds
    assert plain - repaired == N_REFS - 1, (plain, repaired)


def test_the_references_come_out_the_same(builds):
    (_, plain), (_, repaired) = builds
    assert repaired["refs"].count("Fig. 1") == N_REFS
    assert repaired == plain
