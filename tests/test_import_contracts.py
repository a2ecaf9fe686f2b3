"""The import contracts of .importlinter are checked, and a layering violation breaks them.

`python3 dev.py test` runs `lint-imports` in its first step; these tests check that the
configuration it reads names every contract, that the package keeps them, and that each kind of
violation is caught: a copy of code/src with one planted import is linted and must fail.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"


def contracts() -> dict[str, str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return {section.rpartition(":")[2]: config[section]["name"]
            for section in config.sections() if section.startswith("importlinter:contract:")}


def lint(where: Path, src: Path) -> subprocess.CompletedProcess:
    # The packages are found on the path: the copy under test comes before the editable install.
    env = dict(os.environ, PYTHONPATH=str(src), NO_COLOR="1", COLUMNS="200")
    return subprocess.run([str(LINT), "--no-cache"], cwd=where, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_package_keeps_every_contract():
    names = contracts()
    assert {"layers", "data", "no-data-in-models", "figures", "recipes"} <= set(names)
    out = lint(ROOT, ROOT / "code" / "src")
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())  # the report wraps long names
    for name in names.values():
        assert f"{' '.join(name.split())} KEPT" in text, f"contract not checked: {name}\n{out.stdout}"
    assert f"Contracts: {len(names)} kept, 0 broken." in text


@pytest.mark.parametrize("module, line, contract", [
    # a function imports a layer (the Transformer) that sits above it
    ("attnbook/attention.py", "from attnbook import transformer", "layers"),
    # the data reaches into the models
    ("attnbook/tasks/vocab.py", "from attnbook import nn", "data"),
    # a model takes its special ids from the data instead of attnbook.tokens
    ("attnbook/decoding.py", "from attnbook.tasks import PAD", "no-data-in-models"),
    # the package reaches into the book's recipes
    ("attnbook/metrics.py", "import book_recipes", "recipes"),
])
def test_a_planted_violation_breaks_its_contract(tmp_path, module, line, contract):
    src = tmp_path / "src"
    shutil.copytree(ROOT / "code" / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    target = src / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # planted\n", encoding="utf-8")
    out = lint(tmp_path, src)
    assert out.returncode != 0, f"{line} in {module} broke no contract:\n{out.stdout}"
    text = " ".join(out.stdout.split())
    assert f"{' '.join(contracts()[contract].split())} BROKEN" in text, out.stdout
