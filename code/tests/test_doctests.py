"""The docstring examples run exactly once: collected by pytest's --doctest-modules, and by
no test of their own."""

import re
import subprocess
import sys
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]
SOURCES = CODE / "src"
RUNNERS = re.compile(r"\bdoctest\.(testmod|testfile|run_docstring_examples|DocTestSuite|DocFileSuite)\b"
                     r"|\bfrom doctest import\b")


def modules_with_examples():
    """Dotted names of the modules under src/ whose docstrings hold an example."""
    found = set()
    for path in sorted(SOURCES.rglob("*.py")):
        if ">>> " in path.read_text(encoding="utf-8"):
            parts = path.relative_to(SOURCES).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_no_test_runs_the_examples_a_second_time():
    offenders = [p.name for p in sorted((CODE / "tests").glob("*.py"))
                 if p.name != Path(__file__).name and RUNNERS.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"{offenders} run docstring examples themselves; --doctest-modules already does"


def test_every_module_with_examples_is_collected_once():
    # The configuration `pytest code` reads (code/pyproject.toml), asked what it would run.
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                          str(SOURCES)], cwd=CODE, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    items = [line for line in out.stdout.splitlines() if "::" in line]
    assert len(items) == len(set(items))
    collected = {item.split("::")[1].rsplit(".", 1)[0] for item in items}
    expected = modules_with_examples()
    assert len(expected) > 10, "the scan found too few modules: is SOURCES right?"
    missing = {m for m in expected if not any(c == m or c.startswith(m + ".") for c in collected)}
    assert not missing, f"examples never collected: {sorted(missing)}"


def test_no_test_turns_an_import_error_of_the_package_into_a_skip():
    # pytest.importorskip("attnbook...") would report a broken package as a skipped test.
    repo = CODE.parent
    pattern = re.compile(r"importorskip\(\s*['\"](attnbook|book_recipes)\b")
    files = [p for folder in (CODE / "tests", repo / "tests", repo / "bench") if folder.is_dir()
             for p in sorted(folder.rglob("*.py")) if p.resolve() != Path(__file__).resolve()]
    assert len(files) > 20, "the scan found too few test files: are the folders right?"
    offenders = [str(p.relative_to(repo)) for p in files if pattern.search(p.read_text(encoding="utf-8"))]
    assert not offenders, f"{offenders} skip when the package fails to import: import it plainly"
