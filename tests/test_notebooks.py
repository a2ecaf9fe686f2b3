"""Notebooks that run anywhere (issue 17): each chapter's ``.ipynb`` download, and Binder.

* Every download (``_build/html/_sources/**/*.ipynb``, written by ``_ext/attnbook_notebooks.py``)
  reads as prose in Jupyter: no MyST role or directive left in its markdown, glued values,
  citations, exercises and figure captions in place; its first cell sets up any Jupyter.
* Every download runs top to bottom with nbclient in a fresh virtual environment that has
  neither attnbook nor myst-nb: the first cell installs attnbook (from ``./code`` here, through
  ``ATTNBOOK_PIP_SPEC``) and stands in for myst-nb's ``glue``. The environment (numpy,
  matplotlib, threadpoolctl, ipykernel, nbclient, at the versions of ``requirements.txt``) is
  kept in ``.cache/notebook-venv/<hash of requirements.txt, code/pyproject.toml, Python>``, so it
  is built once; attnbook is installed afresh by the notebook at every run.
  Trained models are loaded from the build's model cache (``_build/.attnbook_cache``, the one the
  build filled), so a chapter runs in seconds to a minute instead of retraining: set
  ``ATTNBOOK_NOTEBOOK_MODELS=fresh`` to train every model again in an empty cache (as a
  reader's first run does; about as long as a clean build). Chapters run
  ``ATTNBOOK_NOTEBOOK_WORKERS`` (default 2) at a time; ``ATTNBOOK_NOTEBOOKS=01,05`` selects
  chapters by prefix.
* Binder, statically (mybinder.org cannot be reached from here): ``.binder/runtime.txt`` names a
  Python that repo2docker provides and that every pinned requirement supports; its requirements
  install attnbook and jupytext; the launch link of every chapter has Binder's URL format, names
  the repository and branch of ``_config.yml``, and opens a file of the repository that jupytext
  reads as a notebook, which JupyterLab then opens as one (``.binder/overrides.json``, copied by
  ``.binder/postBuild``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import HTML, ROOT

DOWNLOADS = HTML / "_sources"
# MyST left raw in markdown: any {role}`...`, a directive fence, a label line, a labelled equation.
RAW_MYST = [
    (re.compile(r"\{[a-zA-Z][\w:-]*\}`"), "a MyST role"),
    (re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\{", re.MULTILINE), "a MyST directive"),
    (re.compile(r"^\([\w:.-]+\)=\s*$", re.MULTILINE), "a label line"),
    (re.compile(r"\$\$\s*\([\w:.-]+\)"), "an equation label"),
]
for _needle in ("{glue", "{cite", "{numref}", "{ref}", "{eq}", "{doc}", "{prf:", "{exercise}",
                "{solution", "{literalinclude}", "{admonition}"):
    RAW_MYST.append((re.compile(re.escape(_needle)), _needle))


def downloads() -> list[Path]:
    found = sorted(DOWNLOADS.rglob("*.ipynb"))
    if not found:
        pytest.fail("no .ipynb downloads in _build/html/_sources: build the book first")
    return found


def chapter_downloads() -> list[Path]:
    chosen = [p for p in os.environ.get("ATTNBOOK_NOTEBOOKS", "").split(",") if p.strip()]
    found = [p for p in downloads() if re.match(r"\d\d-", p.name)]
    return [p for p in found if not chosen or any(p.name.startswith(c.strip()) for c in chosen)]


def source_of(download: Path) -> str:
    return (ROOT / download.relative_to(DOWNLOADS)).with_suffix(".md").read_text(encoding="utf-8")


def markdown_of(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


# ---- the downloads, read ------------------------------------------------------------------

def test_no_download_shows_raw_myst():
    problems = []
    for path in downloads():
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "markdown":
                continue
            for pattern, what in RAW_MYST:
                for m in pattern.finditer(cell.source):
                    around = cell.source[max(0, m.start() - 60):m.end() + 60].replace("\n", " ")
                    problems.append(f"{path.name} cell {i}: {what}: ...{around}...")
    assert not problems, f"{len(problems)} raw MyST fragment(s):\n" + "\n".join(problems[:40])


def test_no_download_uses_the_books_own_math_macros():
    """The site defines MathJax macros (\\R, \\softmax, a bold \\vec, ...) that Jupyter lacks:
    the downloads spell them out."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    macros = config["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]
    pattern = re.compile(r"\\(%s)(?![a-zA-Z])" % "|".join(map(re.escape, macros)))
    problems = [f"{path.name}: \\{m[1]}" for path in downloads()
                for m in pattern.finditer(markdown_of(nbformat.read(path, as_version=4)))]
    assert not problems, problems[:20]


def test_a_one_argument_macro_is_spelled_out_with_its_argument():
    """\\vec is ``\\boldsymbol{\\mathrm{#1}}``: its argument goes inside, whichever way TeX reads
    it (a braced group, a control word, one character)."""
    sys.path.insert(0, str(ROOT / "_ext"))
    from attnbook_notebooks import _expand_one_argument

    template = r"\boldsymbol{\mathrm{#1}}"
    cases = {r"\vec h_j": r"\boldsymbol{\mathrm{h}}_j",
             r"\vec{s}_{i-1}": r"\boldsymbol{\mathrm{s}}_{i-1}",
             r"\vec\alpha_i": r"\boldsymbol{\mathrm{\alpha}}_i",
             r"\vec{\hat{x}} + \vec {W x}": r"\boldsymbol{\mathrm{\hat{x}}} + \boldsymbol{\mathrm{W x}}",
             r"\vector \vecx": r"\vector \vecx"}
    for text, expected in cases.items():
        assert _expand_one_argument(text, "vec", template) == expected, text


def test_the_scan_finds_raw_myst():
    """The scan above must see each kind of markup it looks for."""
    samples = ["as {cite:t}`x` shows", "{glue:text}`a:.2f`", "```{exercise}", ":::{note}",
               "(fig-x)=", "$$ x $$ (eq-x)", "see {numref}`fig-a`", "{doc}`01-bottleneck`"]
    for sample in samples:
        assert any(p.search(sample) for p, _ in RAW_MYST), sample


def test_downloads_carry_the_pages_values_citations_exercises_and_captions():
    for path in chapter_downloads():
        nb = nbformat.read(path, as_version=4)
        md, source = markdown_of(nb), source_of(path)
        first = nb.cells[0]
        assert first.cell_type == "code" and "attnbook-setup" in first.metadata.get("tags", []), path.name
        code = [c for c in nb.cells[1:] if c.cell_type == "code"]
        assert len(code) == len(re.findall(r"^```\{code-cell\}", source, re.MULTILINE)), path.name
        for kind, title in (("exercise", "Exercise"), ("prf:theorem", "Theorem"),
                            ("prf:definition", "Definition"), ("prf:algorithm", "Algorithm")):
            n = len(re.findall(rf"^`{{3,}}\{{{kind}\}}", source, re.MULTILINE))
            numbered = re.findall(rf"^\*\*{title} \d+\.\d+", md, re.MULTILINE)
            assert len(numbered) == n, f"{path.name}: {n} {kind} in the page, {len(numbered)} numbered in the notebook"
        solutions = len(re.findall(r"^`{3,}\{solution(-start)?\}", source, re.MULTILINE))
        assert len(re.findall(r"\*\*Solution to Exercise \d+\.\d+", md)) == solutions, path.name
        if "{cite" in source:
            assert re.search(r"[A-Z][\w-]+(?: et al\.| and [A-Z][\w-]+)?,? \(?\d{4}", md), path.name
        captions = sum(1 for c in nb.cells if c.cell_type == "code"
                       and c.metadata.get("mystnb", {}).get("figure", {}).get("caption"))
        assert len(re.findall(r"^\*\*(?:Fig\.|Figure) \d+\.\d+:\*\* \S", md, re.MULTILINE)) == captions, path.name


def test_glued_values_are_in_the_prose():
    """Every glued value the page's prose shows is in its download's markdown, formatted as
    myst-nb formats it for the site (from the page's glue file)."""
    from myst_nb.core.variables import format_plain_text

    execute = ROOT / "_build" / "jupyter_execute"
    checked = checked_md = 0
    for path in chapter_downloads():
        rel = path.relative_to(DOWNLOADS).with_suffix("")
        glue_file = execute / rel.with_name(rel.name + ".glue.json")
        if not glue_file.exists():
            continue
        glued = json.loads(glue_file.read_text(encoding="utf-8"))
        md = markdown_of(nbformat.read(path, as_version=4))
        # The prose: outside code cells (whose metadata holds captions and alt text).
        prose = re.sub(r"^```\{code-cell\}.*?^```[ \t]*$", "", source_of(path), flags=re.MULTILINE | re.DOTALL)
        for key, fmt in re.findall(r"\{glue:text\}`([^`:]+):?([^`]*)`", prose):
            value = format_plain_text(glued[key]["data"]["text/plain"], fmt)
            assert value in md, f"{path.name}: glued {key} ({value!r}) is not in the notebook"
            checked += 1
        # {glue:md}`key:myst`: a sentence chosen by a measurement, glued as Markdown.
        for key in re.findall(r"\{glue:md\}`([^`:]+)[^`]*`", prose):
            text = glued[key]["data"]["text/markdown"]
            text = "".join(text) if isinstance(text, list) else text
            assert text in md, f"{path.name}: glued Markdown {key} ({text[:60]!r}...) is not in the notebook"
            checked_md += 1
    assert checked and checked_md


# ---- the downloads, run in a fresh environment ---------------------------------------------

RUNNER = r'''
import sys, time, nbformat
from nbclient import NotebookClient
path, out, cwd = sys.argv[1:4]
nb = nbformat.read(path, as_version=4)
for cell in nb.cells:
    if cell.cell_type == "code":
        cell.outputs = []
client = NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": cwd}})
client.execute()
nbformat.write(nb, out)
'''


def requirement_pins() -> list[str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-") and "==" in line:
            pins[line.split("==")[0].lower()] = line
    return [pins[n] for n in ("numpy", "matplotlib", "threadpoolctl", "ipykernel", "nbclient", "nbformat")]


def fresh_venv() -> Path:
    """A virtual environment without attnbook and myst-nb, cached per requirements hash."""
    digest = hashlib.sha256()
    for name in ("requirements.txt", "code/pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(sys.version.encode())
    venv = ROOT / ".cache" / "notebook-venv" / digest.hexdigest()[:16]
    python = venv / "bin" / "python"
    if not (venv / "ready").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *requirement_pins()], check=True)
        (venv / "ready").write_text("\n".join(requirement_pins()) + "\n")
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "attnbook"], check=False,
                   capture_output=True)
    found = subprocess.run([str(python), "-c", "import importlib.util as u; print(u.find_spec('attnbook'), u.find_spec('myst_nb'))"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert found == ["None", "None"], f"the fresh environment is not fresh: {found}"
    return venv


def run_notebook(venv: Path, notebook: Path, out: Path, cwd: Path, env: dict) -> dict:
    script = out.parent / "run_notebook.py"
    script.write_text(RUNNER)
    cwd.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = subprocess.run([str(venv / "bin" / "python"), str(script), str(notebook), str(out), str(cwd)],
                            capture_output=True, text=True, env=env, timeout=3600)
    return {"name": notebook.name, "seconds": time.monotonic() - started, "rc": result.returncode,
            "log": (result.stdout + result.stderr)[-5000:]}


@pytest.mark.slow
def test_every_download_runs_top_to_bottom_in_a_fresh_environment(tmp_path):
    chosen = chapter_downloads()
    assert chosen, "no chapter selected"
    venv = fresh_venv()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATTNBOOK_", "PYTHON", "VIRTUAL_ENV"))}
    # A copy of ./code: pip builds a wheel in the folder it installs from (build/, egg-info).
    package = tmp_path / "code"
    shutil.copytree(ROOT / "code", package, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__", "tests", ".hypothesis", ".pytest_cache"))
    env.update(ATTNBOOK_PIP_SPEC=str(package), HOME=str(tmp_path / "home"),
               PATH=f"{venv / 'bin'}:{os.environ.get('PATH', '')}")
    if os.environ.get("ATTNBOOK_NOTEBOOK_MODELS") == "fresh":
        env["ATTNBOOK_CACHE_DIR"] = str(tmp_path / "models")
    else:
        env["ATTNBOOK_CACHE_DIR"] = str(ROOT / "_build" / ".attnbook_cache")
    # The setup cell alone first: it installs attnbook (once; the chapters then find it).
    setup = nbformat.read(chosen[0], as_version=4)
    setup.cells = setup.cells[:1]
    nbformat.write(setup, tmp_path / "setup.ipynb")
    first = run_notebook(venv, tmp_path / "setup.ipynb", tmp_path / "setup.out.ipynb", tmp_path / "run-setup", env)
    assert first["rc"] == 0, first["log"]
    printed = "".join(o.get("text", "") for o in nbformat.read(tmp_path / "setup.out.ipynb", 4).cells[0].outputs)
    assert re.search(r"attnbook \S+ ready, one BLAS thread", printed), printed
    started = time.monotonic()
    workers = int(os.environ.get("ATTNBOOK_NOTEBOOK_WORKERS", "2"))
    with ThreadPoolExecutor(workers) as pool:
        runs = list(pool.map(lambda nb: run_notebook(venv, nb, tmp_path / nb.name, tmp_path / f"run-{nb.stem}", env),
                             chosen))
    for run in runs:
        print(f"\n[notebooks] {run['name']}: {run['seconds']:.0f} s")
    print(f"\n[notebooks] {len(runs)} notebook(s) in {time.monotonic() - started:.0f} s, {workers} at a time")
    failed = [f"{r['name']}:\n{r['log']}" for r in runs if r["rc"] != 0]
    assert not failed, "\n\n".join(failed)


# ---- Binder, statically --------------------------------------------------------------------

# The Pythons repo2docker (mybinder.org's builder) provides through runtime.txt.
REPO2DOCKER_PYTHONS = {"3.10", "3.11", "3.12"}


def test_binder_names_a_python_that_repo2docker_provides_and_every_pin_supports():
    from importlib.metadata import PackageNotFoundError, metadata

    from packaging.specifiers import SpecifierSet

    runtime = (ROOT / ".binder" / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(3\.\d+)", runtime)
    assert match, f".binder/runtime.txt must read python-3.X, not {runtime!r}"
    version = match[1]
    assert version in REPO2DOCKER_PYTHONS, f"repo2docker provides {sorted(REPO2DOCKER_PYTHONS)}, not {version}"
    checked = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" not in line or line.startswith("-"):
            continue
        name = line.split("==")[0]
        try:
            requires = metadata(name).get("Requires-Python")
        except PackageNotFoundError:
            continue
        if requires:
            assert version + ".0" in SpecifierSet(requires), f"{name} requires Python {requires}, Binder has {version}"
        checked.append(name)
    assert "numpy" in checked and "matplotlib" in checked


def test_binder_requirements_install_the_package_and_jupytext():
    from pip._internal.network.session import PipSession
    from pip._internal.req.req_file import parse_requirements

    # repo2docker runs pip from the repository's root: pip -r .binder/requirements.txt
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        parsed = list(parse_requirements(".binder/requirements.txt", session=PipSession()))
    finally:
        os.chdir(here)
    editable = [Path(ROOT, r.requirement).resolve() for r in parsed if r.is_editable]
    assert (ROOT / "code").resolve() in editable, f"Binder does not install attnbook from ./code: {parsed}"
    names = {re.split(r"[=<>\[ ]", r.requirement)[0].lower() for r in parsed if not r.is_editable}
    assert {"jupytext", "numpy", "ipykernel"} <= names, names


def test_binder_opens_markdown_chapters_as_notebooks():
    overrides = json.loads((ROOT / ".binder" / "overrides.json").read_text())
    viewers = overrides["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers.get("markdown") == "Jupytext Notebook" and viewers.get("myst") == "Jupytext Notebook"
    post = ROOT / ".binder" / "postBuild"
    assert os.access(post, os.X_OK), ".binder/postBuild must be executable"
    script = post.read_text()
    assert "overrides.json" in script and "share/jupyter/lab/settings" in script


def test_every_chapter_has_a_launch_link_that_binder_can_open():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]["url"].rstrip("/")
    org_repo = re.fullmatch(r"https://github\.com/([\w.-]+/[\w.-]+)", repo)[1]
    branch = config["repository"].get("branch", "master")
    hub = config["launch_buttons"]["binderhub_url"].rstrip("/")
    assert hub == "https://mybinder.org"
    ui = {"jupyterlab": "lab/tree", "classic": "tree"}[config["launch_buttons"]["notebook_interface"]]
    pages = sorted(p for p in (HTML / "book").glob("[0-9][0-9]-*.html"))
    assert pages, "build the book first"
    for page in pages:
        links = set(re.findall(r'href="(https://mybinder\.org/[^"]+)"', page.read_text(encoding="utf-8")))
        assert len(links) == 1, f"{page.name}: {links}"
        link = links.pop()
        match = re.fullmatch(rf"{re.escape(hub)}/v2/gh/{re.escape(org_repo)}/{re.escape(branch)}"
                             rf"\?urlpath={re.escape(ui)}/(?P<path>[\w./-]+)", link)
        assert match, f"{page.name}: not Binder's URL format: {link}"
        target = ROOT / match["path"]
        assert target.is_file(), f"{page.name}: the link opens {match['path']}, not a file of the repository"
        import jupytext

        nb = jupytext.read(target)
        assert nb.metadata.get("jupytext", {}).get("text_representation", {}).get("format_name") == "myst", \
            f"{match['path']} is not a MyST notebook for jupytext"
        assert any(c.cell_type == "code" for c in nb.cells)
