"""The test command prints why tests skip and, under CI=true, fails a test that skips.

Runs pytest, as ``python3 dev.py test`` does (its own arguments), on small test files that
skip the ways the real tests do: ``pytest.skip`` in a test or fixture, and a module-level
``pytest.importorskip`` (which skips the module while it is collected).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT

SKIPS = textwrap.dedent("""\
    import pytest

    @pytest.fixture
    def chromium():
        pytest.skip("no Chromium found")

    def test_needs_chromium(chromium):
        pass

    def test_runs():
        pass
""")
MODULE_SKIP = 'import pytest\nnpm = pytest.importorskip("no_such_tool_module")\n\ndef test_x():\n    pass\n'
ALLOWED = 'import pytest\n\ndef test_later():\n    pytest.skip("no course reference is due yet: waiting")\n'


def dev_module():
    spec = importlib.util.spec_from_file_location("dev", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_pytest(folder: Path, ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    env["PYTHONPATH"] = str(ROOT / "tests" / "tools")
    return subprocess.run([sys.executable, *dev_module().PYTEST, str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True)


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "test_skips.py").write_text(SKIPS)
    return tmp_path


def test_locally_a_skip_passes_and_says_why(suite):
    result = run_pytest(suite, ci=False)
    assert result.returncode == 0, result.stdout
    assert "SKIPPED" in result.stdout and "no Chromium found" in result.stdout


def test_under_ci_a_skip_fails(suite):
    result = run_pytest(suite, ci=True)
    assert result.returncode == 1, result.stdout
    assert "skipped under CI=true: no Chromium found" in result.stdout
    assert "1 passed, 1 error" in result.stdout  # the skip was in a fixture: setup error


def test_under_ci_a_module_level_importorskip_fails(tmp_path):
    (tmp_path / "test_module_skip.py").write_text(MODULE_SKIP)
    result = run_pytest(tmp_path, ci=True)
    assert result.returncode != 0, result.stdout
    assert "could not import 'no_such_tool_module'" in result.stdout


def test_under_ci_a_listed_reason_still_skips(tmp_path):
    (tmp_path / "test_allowed.py").write_text(ALLOWED)
    result = run_pytest(tmp_path, ci=True)
    assert result.returncode == 0, result.stdout
    assert "no course reference is due yet" in result.stdout


def test_the_package_tests_run_on_two_cores():
    dev = dev_module()
    assert dev.PACKAGE_TESTS[:2] == ["-n", "2"]
    assert "pytest-xdist==" in (ROOT / "requirements-test.txt").read_text()


def test_ci_installs_the_cpu_build_of_torch():
    """The GitHub workflow runs the test command with PyTorch's CPU index, which dev.py uses."""
    import yaml

    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    step = next(s for s in ci["jobs"]["test"]["steps"] if s.get("run") == "python3 dev.py test")
    assert step["env"]["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    source = (ROOT / "dev.py").read_text()
    assert 'os.environ.get("TORCH_INDEX_URL")' in source and '"--index-url", index' in source
