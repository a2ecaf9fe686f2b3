"""pytest plugin: under ``CI=true`` a skipped test fails, since a skip there means a missing tool.

The test command (``python3 dev.py test``) loads it into both test runs, the package's
(``code/tests``) and the site's (``tests/``), with ``-p no_silent_skips`` (this folder on
``PYTHONPATH``) and prints every skip reason with ``-rs``. Locally a test may skip when a tool
is missing (no Chromium, no Node.js, no CPU build of torch), and says why; in CI the test
command has installed every tool, so a skip can only mean an install step is broken, and it
fails the run instead of passing unseen.

A skip for a reason that is not a missing tool is allowed only when its reason starts with one
of ``NOT_A_MISSING_TOOL`` (keep that list short and each entry explained).
"""

from __future__ import annotations

import os

import pytest

NOT_A_MISSING_TOOL = (
    # tests/test_references.py: the course's references are checked only once the chapters
    # that teach their topic exist.
    "no course reference is due yet",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def reason_of(report) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed(reason: str) -> bool:
    return reason.startswith(NOT_A_MISSING_TOOL)


def fail_skip(report, where: str) -> None:
    reason = reason_of(report)
    if report.skipped and in_ci() and not allowed(reason):
        report.outcome = "failed"
        report.longrepr = (
            f"{where} skipped under CI=true: {reason}\n"
            "In CI every tool the tests need must be installed (python3 dev.py test installs "
            "them on Debian as root); a skip there means an install step is broken. "
            "(tests/tools/no_silent_skips.py)"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_skip(outcome.get_result(), item.nodeid)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    # A module-level importorskip (or skip) skips the whole module while it is collected.
    outcome = yield
    fail_skip(outcome.get_result(), collector.nodeid)
