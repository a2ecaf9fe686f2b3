"""The build never serves stale outputs, never hides a failure, and executes pages in parallel.

A small book in a temporary folder uses the book's extensions (_ext/attnbook_build.py and
_ext/attnbook_parallel.py) with its own tiny package ``minipkg`` in place of attnbook and its
own ``requirements.txt``. Every build is strict (``-W -n --keep-going``), as the test command's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import MYST_NOTEBOOK_HEADER, ROOT

pytestmark = pytest.mark.slow

PAGE = MYST_NOTEBOOK_HEADER + """\

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
  timeout: {timeout}
  stderr_output: warn
sphinx:
  local_extensions:
    attnbook_build: {ext}
  config:
    nb_execution_show_tb: true
    attnbook_sources: pkg
    attnbook_hash_files: [requirements.txt]
    attnbook_execute_first: []
"""

# The two pages meet: each marks that it started and waits (a minute at most) for the other's
# mark, so the output says whether they ran at the same time, however slowly kernels start.
MEET = """\
import os, time
os.makedirs("rendezvous", exist_ok=True)
open("rendezvous/{me}", "w").close()
deadline = time.time() + 60
while not os.path.exists("rendezvous/{other}") and time.time() < deadline:
    time.sleep(0.05)
print("{me} beside {other}:", os.path.exists("rendezvous/{other}"))"""
USES = MEET.format(me="uses", other="other") + """
import minipkg
print("value:", minipkg.VALUE, "threads:", os.environ.get("OPENBLAS_NUM_THREADS"))"""
OTHER = MEET.format(me="other", other="uses") + """
print("independent", 6 * 7)"""


def make_book(folder: Path, pages: dict[str, str], timeout: int = 120) -> Path:
    (folder / "pkg" / "minipkg").mkdir(parents=True)
    (folder / "pkg" / "minipkg" / "__init__.py").write_text("VALUE = 'first-value'\n")
    (folder / "requirements.txt").write_text("numpy==2.4.6\n")
    (folder / "_config.yml").write_text(CONFIG.format(
        ext=(ROOT / "_ext").as_posix(), timeout=timeout))
    names = list(pages)
    (folder / "_toc.yml").write_text(
        f"format: jb-book\nroot: {names[0]}\n"
        + ("chapters:\n" + "".join(f"  - file: {n}\n" for n in names[1:]) if names[1:] else "")
    )
    for name, code in pages.items():
        (folder / f"{name}.md").write_text(PAGE.format(title=name, code=code))
    return folder


def build(book: Path, ok: bool = True) -> str:
    """Build ``book`` strictly; check that it passed (``ok``) or failed; return its log."""
    # pkg: the package's sources (hashed); site: where the test installs a distribution.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(book / "pkg"), str(book / "site")]))
    shutil.rmtree(book / "rendezvous", ignore_errors=True)  # the marks of an earlier build
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jb), "build", str(book), "-W", "-n", "--keep-going"],
        env=env, capture_output=True, text=True,
    )
    log = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, (
        f"expected the build to {'pass' if ok else 'fail'}:\n" + log[-4000:])
    return log


def in_parallel(log: str) -> set[str]:
    """Pages executed (successfully) by attnbook_parallel before Sphinx read them."""
    return set(re.findall(r"\[attnbook\] \[\d+/\d+\] (\w+): executed", log))


def by_mystnb(log: str) -> set[str]:
    """Pages myst-nb executed itself while reading them (a cache miss)."""
    return set(re.findall(r"(\w+)\.md: Executing notebook", log))


def page_text(book: Path, name: str) -> str:
    return (book / "_build" / "html" / f"{name}.html").read_text()


def outputs(path: Path) -> str:
    """Every output of the notebook at ``path``, as text."""
    return json.dumps([c.get("outputs", []) for c in json.loads(path.read_text())["cells"]])


def download(book: Path, name: str) -> str:
    """The outputs of the executed .ipynb that sphinx-book-theme offers for download (it copies
    it into _sources where launch buttons are configured, as in the book)."""
    return outputs(book / "_build" / "jupyter_execute" / f"{name}.ipynb")


def hash_folders(book: Path) -> list[str]:
    return sorted(p.name for p in (book / "_build" / ".jupyter_cache").iterdir() if p.is_dir())


@pytest.fixture
def book(tmp_path: Path) -> Path:
    return make_book(tmp_path / "book", {"uses": USES, "other": OTHER})


def test_pages_execute_two_at_a_time_and_are_reused(book: Path):
    first = build(book)
    assert in_parallel(first) == {"uses", "other"}
    assert by_mystnb(first) == set(), "myst-nb executed a page the parallel step had executed"
    assert "uses beside other: True" in page_text(book, "uses"), "the pages ran one by one"
    assert "other beside uses: True" in page_text(book, "other")
    assert "value: first-value threads: 1" in page_text(book, "uses")
    times = (book / "_build" / ".jupyter_cache" / "execution-times.json").read_text()
    assert '"uses"' in times and "cpu_seconds" in times

    assert "value: first-value" in download(book, "uses"), "the .ipynb download has no outputs"

    again = build(book)
    assert in_parallel(again) | by_mystnb(again) == set(), "a rebuild with nothing changed executed"
    assert "value: first-value" in page_text(book, "uses")

    # A clean of the pages (keeping the cache) rebuilds from the cache without executing.
    shutil.rmtree(book / "_build" / "html")
    shutil.rmtree(book / "_build" / ".doctrees")
    after_clean = build(book)
    assert in_parallel(after_clean) | by_mystnb(after_clean) == set()
    assert "value: first-value" in page_text(book, "uses")
    assert "value: first-value" in download(book, "uses")


def test_package_edit_in_a_moved_checkout_reexecutes(book: Path, tmp_path: Path):
    build(book)
    old_folders = hash_folders(book)
    moved = tmp_path / "moved"
    shutil.copytree(book, moved)  # the cache travels with the checkout, as CI restores it

    unchanged = build(moved)
    assert in_parallel(unchanged) | by_mystnb(unchanged) == set(), "same sources: reuse the cache"

    (moved / "pkg" / "minipkg" / "__init__.py").write_text("VALUE = 'second-value'\n")
    edited = build(moved)
    # The hash of the sources chooses the cache: every page executes again, none by myst-nb.
    assert in_parallel(edited) == {"uses", "other"}
    assert by_mystnb(edited) == set()
    assert "value: second-value" in page_text(moved, "uses")
    assert "first-value" not in page_text(moved, "uses")
    assert "independent 42" in page_text(moved, "other")
    # The cache of the old sources is gone; the original checkout's is untouched.
    assert len(hash_folders(moved)) == 1 and hash_folders(moved) != old_folders
    assert hash_folders(book) == old_folders


def test_requirements_change_reexecutes(book: Path):
    build(book)
    (book / "requirements.txt").write_text("numpy==2.4.7\n")
    changed = build(book)
    assert in_parallel(changed) == {"uses", "other"}
    assert "requirements.txt" in changed, "the log should say what changed"

    # An upgrade by hand, the requirements untouched: a new distribution on the kernels' path.
    info = book / "site" / "fakedist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakedist\nVersion: 1.0\n")
    installed = build(book)
    assert in_parallel(installed) == {"uses", "other"}
    assert "installed fakedist==1.0" in installed


def test_a_warning_fails_every_unchanged_rebuild_too(tmp_path: Path):
    # The page executes successfully (and is cached) but its output warns (stderr_output: warn).
    book = make_book(tmp_path / "book", {
        "uses": USES, "warns": 'import sys\nprint("a warning on stderr", file=sys.stderr)'})
    warning = "warns.md:16: WARNING: stderr was found in the cell outputs"
    first = build(book, ok=False)
    assert warning in first
    second = build(book, ok=False)  # nothing changed: it still fails, from the cache
    assert warning in second
    assert in_parallel(second) | by_mystnb(second) == set()


def test_a_failing_page_fails_every_build_with_its_traceback(tmp_path: Path):
    book = make_book(tmp_path / "book", {"uses": USES, "breaks": "x = 1\n1 / 0"})
    report = book / "_build" / "html" / "reports" / "breaks.err.log"
    for attempt in range(2):  # the second build, unchanged, fails again
        log = build(book, ok=False)
        assert re.search(r"\[attnbook\] \[\d/\d\] breaks: failed \(CellExecutionError", log)
        assert by_mystnb(log) == {"breaks"}, "myst-nb executes the failed page to report it"
        assert "ZeroDivisionError" in log
        assert "ZeroDivisionError" in report.read_text()
        if attempt == 0:
            report.write_text("stale report")


def test_execute_timeout_is_respected(tmp_path: Path):
    book = make_book(tmp_path / "book", {"uses": USES, "hangs": "import time\ntime.sleep(60)"},
                     timeout=3)
    log = build(book, ok=False)
    assert re.search(r"hangs: failed \(CellTimeoutError", log)
    assert "CellTimeoutError" in (book / "_build" / "html" / "reports" / "hangs.err.log").read_text()


# "second" fails when "first" runs at the same time, and passes alone (after half a minute).
RACE_FIRST = """\
import os, time
os.makedirs("rendezvous", exist_ok=True)
open("rendezvous/busy", "w").close()
deadline = time.time() + 30
while not os.path.exists("rendezvous/seen") and time.time() < deadline:
    time.sleep(0.05)
os.remove("rendezvous/busy")"""
RACE_SECOND = """\
import os, time
deadline = time.time() + 30
while not os.path.exists("rendezvous/busy") and time.time() < deadline:
    time.sleep(0.05)
if os.path.exists("rendezvous/busy"):
    open("rendezvous/seen", "w").close()
    raise AssertionError("the other page is running")
print("alone")"""


def test_a_page_that_fails_only_beside_another_is_reported(tmp_path: Path):
    book = make_book(tmp_path / "book", {"first": RACE_FIRST, "second": RACE_SECOND})
    log = build(book, ok=False)
    assert "second failed when executed beside other pages and passed when executed alone" in log


MANGLE = '''\
def setup(app):
    def mangle(app, docname, source):
        source[0] = source[0].replace("6 * 7", "7 * 6")
    app.connect("source-read", mangle)
'''


def test_a_page_myst_nb_reads_differently_is_reported(book: Path):
    # A source-read handler changes the code myst-nb executes: the parallel step's notebook is
    # not the one myst-nb looks up, and the page executes twice. The build must say so.
    (book / "mangle.py").write_text(MANGLE)
    config = book / "_config.yml"
    config.write_text(config.read_text().replace(
        "    attnbook_build:", f"    mangle: {book.as_posix()}\n    attnbook_build:"))
    log = build(book, ok=False)
    assert "myst-nb executed other itself" in log


def parallel_extension():
    """_ext/attnbook_parallel.py, imported with _ext on the path only while it loads."""
    sys.path.insert(0, str(ROOT / "_ext"))
    try:
        import attnbook_parallel
    finally:
        sys.path.remove(str(ROOT / "_ext"))
    return attnbook_parallel


def test_longest_pages_start_first():
    extension = parallel_extension()
    Page, schedule = extension.Page, extension.schedule
    pages = [Page(name, Path(f"{name}.md"), None, None, 60, False) for name in "abcde"]
    history = {"b": {"seconds": 5.0}, "c": {"seconds": 50.0}, "e": {"seconds": 20.0}}
    # Pages named first (in that order), then measured ones by time, then the rest.
    order = [p.docname for p in schedule(pages, history, first=["d", "a"])]
    assert order == ["d", "a", "c", "e", "b"]
    # A named page keeps its place even when measured, whatever its time.
    order = [p.docname for p in schedule(pages, history, first=["b", "d"])]
    assert order == ["b", "d", "c", "e", "a"]
    assert [p.docname for p in schedule(pages, {}, first=[])] == list("abcde")


def test_a_kernel_that_dies_while_starting_is_started_again(monkeypatch):
    """Two kernels starting at once can pick the same port; the loser dies before it runs a
    cell (seen once in a clean build). Such a start is retried; a failure after a cell ran is
    returned at once."""
    import nbformat
    from jupyter_cache.executors import utils

    attnbook_parallel = parallel_extension()
    monkeypatch.setattr(attnbook_parallel.time, "sleep", lambda seconds: None)
    source = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    calls = []

    def runner(outcomes):
        def fake(nb, cwd, **kwargs):
            outcome = outcomes[len(calls)]
            calls.append(outcome)
            if outcome == "ok":
                nb.cells[0].execution_count = 1
                return utils.ExecutionResult(nb, cwd, 1.0)
            if outcome == "crash":  # a cell ran, then the kernel died
                nb.cells[0].execution_count = 1
                err = RuntimeError("Kernel died before replying to kernel_info")
                return utils.ExecutionResult(nb, cwd, 1.0, err, repr(err))
            err = RuntimeError("Kernel died before replying to kernel_info")
            return utils.ExecutionResult(nb, cwd, 0.1, err, repr(err))
        return fake

    def run(outcomes):
        calls.clear()
        monkeypatch.setattr(utils, "single_nb_execution", runner(outcomes))
        return attnbook_parallel.execute(nbformat.writes(source), "/tmp", 60, False)

    result = run(["start", "ok"])
    assert result["error"] is None and result["kernel_starts"] == 2 and calls == ["start", "ok"]
    result = run(["start"] * attnbook_parallel.KERNEL_START_ATTEMPTS)
    assert result["error"] == "RuntimeError"
    assert result["kernel_starts"] == attnbook_parallel.KERNEL_START_ATTEMPTS
    result = run(["crash", "ok"])
    assert result["error"] == "RuntimeError" and calls == ["crash"]


def test_only_the_writing_is_parallel():
    """attnbook_parallel raises app.parallel for Sphinx's writing and restores it afterwards,
    so that a later build in the same process reads its pages one by one."""
    from types import SimpleNamespace

    extension = parallel_extension()
    restore_parallel, write_in_parallel = extension.restore_parallel, extension.write_in_parallel
    app = SimpleNamespace(parallel=1, config=SimpleNamespace(attnbook_write_workers=2),
                          builder=SimpleNamespace(allow_parallel=True))
    write_in_parallel(app, None)
    assert app.parallel == 3  # the main process resolves, two children write
    restore_parallel(app, None)
    assert app.parallel == 1
    app.config.attnbook_write_workers = 1
    write_in_parallel(app, None)
    assert app.parallel == 1
    app.config.attnbook_write_workers, app.builder.allow_parallel = 2, False  # e.g. LaTeX
    write_in_parallel(app, None)
    assert app.parallel == 1


def test_late_outputs_are_waited_for_and_never_dropped_silently(monkeypatch):
    """nbclient's default waits 4 s for a finished cell's outputs, then drops them with a log
    line: glued values went missing that way on a loaded machine."""
    import nbformat
    from jupyter_cache.executors import utils

    attnbook_parallel = parallel_extension()
    seen = {}

    def fake_execution(nb, cwd, timeout, allow_errors, meta_override=True, **kwargs):
        seen.update(kwargs)
        return utils.ExecutionResult(nb, cwd, 0.0, None, None)

    monkeypatch.setattr(utils, "single_nb_execution", fake_execution)
    attnbook_parallel.execute(nbformat.writes(nbformat.v4.new_notebook()), None, 60, False)
    assert seen["raise_on_iopub_timeout"] is True
    assert seen["iopub_timeout"] >= 60


def test_downloads_from_the_cache_lack_outputs_upstream(tmp_path: Path):
    """Why _ext/attnbook_parallel.py writes the executed .ipynb: myst-nb alone, a page from its
    cache is offered for download without outputs. When an upgrade fixes this, this test
    fails: remove write_executed_notebooks then."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text('extensions = ["myst_nb"]\nnb_execution_mode = "cache"\n')
    (src / "index.md").write_text(PAGE.format(title="Page", code='print("an output")'))
    executed = tmp_path / "out" / "jupyter_execute" / "index.ipynb"

    def sphinx():
        subprocess.run([sys.executable, "-m", "sphinx", "-b", "html", "-q", str(src),
                        str(tmp_path / "out" / "html")], check=True, capture_output=True)
        return outputs(executed)

    assert "an output" in sphinx()  # myst-nb executed the page in place
    shutil.rmtree(tmp_path / "out" / "html")  # as dev.py clean: the cache stays
    assert "an output" not in sphinx(), "myst-nb now writes cached outputs: drop the repair"


def test_every_page_of_the_built_site_downloads_executed():
    from conftest import HTML

    notebooks = sorted((HTML / "_sources" / "book").glob("*.ipynb"))
    assert notebooks, "no built site in _build/html: build it first (python3 dev.py book)"
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        assert any(c.get("outputs") for c in cells), f"{path.name}: downloaded without outputs"
