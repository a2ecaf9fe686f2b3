"""The built site as a reader meets it: a real browser, with the network cut off.

Headless Chromium (the Debian package ``chromium``; ``python3 dev.py test`` installs it when it
can) opens every page of _build/html, served on 127.0.0.1, once with the light and once with
the dark colour scheme. Every request that tries to leave localhost is refused and recorded.
On every page: the math is typeset by the local MathJax, the console shows no error, every
request is local and succeeds, and axe-core (from the npm registry, installed into .cache/)
finds no serious or critical accessibility violation (all its rules on the light theme, its
colour rules again on the dark one). A deliberately broken page checks that the harness
notices each of these failures.

Without a browser (or without npm, for axe-core) those tests skip with a message; the checks
that need no browser (headings in order, no third-party script, stylesheet or font) always run.
Set CHROMIUM=/path/to/chrome to use another Chromium, and ATTNBOOK_SITE=/path/to/html to check
a site built elsewhere (e.g. with --path-output).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import HTML as BUILT, ROOT, site_pages as pages

HTML = Path(os.environ.get("ATTNBOOK_SITE", BUILT))
AXE = "axe-core@4.14.1"
AXE_DIR = ROOT / ".cache" / "axe-core"
SCHEMES = ("light", "dark")
BLOCKING_IMPACTS = {"serious", "critical"}

# Findings in the theme itself that are not accessibility barriers, each with the reason. Keep
# this list short and exact: an entry matches one rule on elements of one kind only.
ACCEPTED = {
    # pydata-sphinx-theme 0.17.1's colour-mode button is named "Color mode"; its three icons
    # (only one shown at a time) carry SVG <title>s "Light", "Dark", "System Settings", which
    # axe counts as text content. The button shows no visible text, so WCAG 2.5.3 (label in
    # name) has nothing to match; screen readers announce "Color mode, button".
    ("label-content-name-mismatch", "theme-switch-button"),
}

MATH = """(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  // Sphinx marks every formula with the class "math"; MathJax renders each into an mjx-container.
  const maths = [...document.querySelectorAll('.math')];
  return {
    count: maths.length,
    bare: maths.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.trim().slice(0, 60)),
    errors: [...document.querySelectorAll('mjx-merror')].map(e => e.getAttribute('data-mjx-error') || e.textContent),
  };
})()"""

AXE_RUN = """axe.run(document, %s).then(r => r.violations.map(v => ({
  id: v.id, impact: v.impact, help: v.help,
  nodes: v.nodes.map(n => ({target: n.target.join(' '), html: n.html.slice(0, 300)})),
})))"""
# The rules whose outcome depends on the colours: all that the dark pass needs to run again
# (axe takes several seconds on a long chapter).
THEME_RULES = ["color-contrast", "link-in-text-block"]


def accepted(violation: dict, node: dict) -> bool:
    return any(violation["id"] == rule and marker in node["html"] for rule, marker in ACCEPTED)


def blocking(violation: dict) -> list[dict]:
    """The nodes of a serious or critical violation that ACCEPTED does not excuse."""
    if violation["impact"] not in BLOCKING_IMPACTS:
        return []
    return [n for n in violation["nodes"] if not accepted(violation, n)]


def browser_tools():
    """tests/tools/chromium.py, which needs websockets; skips the browser tests without it."""
    pytest.importorskip("websockets", reason="the browser tests need websockets (requirements-test.txt)")
    from tools import chromium

    return chromium


def read(tab, url: str, axe_source: str | None, rules: list[str] | None = None) -> dict:
    """Open ``url`` in ``tab`` and report everything the tests look at (axe: only ``rules``)."""
    visit = tab.open(url)
    reading = {
        "visit": visit,
        "math": tab.evaluate(MATH),
        "theme": tab.evaluate("document.documentElement.dataset.theme"),
        "axe": None,
    }
    if axe_source is not None:
        tab.evaluate(axe_source)
        options = {"resultTypes": ["violations"]}
        if rules is not None:
            options["runOnly"] = {"type": "rule", "values": rules}
        reading["axe"] = tab.evaluate(AXE_RUN % json.dumps(options))
    return reading


@pytest.fixture(scope="module")
def chromium() -> str:
    path = browser_tools().find_chromium()
    if path is None:
        pytest.skip("no Chromium found: install the Debian package chromium (python3 dev.py test "
                    "does so when run as root with apt-get), or set CHROMIUM=/path/to/chromium")
    return path


@pytest.fixture(scope="module")
def axe_source() -> str | None:
    """axe-core's browser bundle, installed from the npm registry on first use; None without npm."""
    bundle = AXE_DIR / "node_modules" / "axe-core" / "axe.min.js"
    if not bundle.exists():
        npm = shutil.which("npm")
        if npm is None:
            return None
        AXE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix", str(AXE_DIR), AXE],
                       check=True, capture_output=True)
    return bundle.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def readings(chromium, axe_source) -> dict[tuple[str, str], dict]:
    """Every page read once per colour scheme, keyed by (scheme, page path): all of axe's rules
    on the light theme, the colour rules again on the dark one."""
    if not (HTML / "index.html").exists():
        pytest.fail("No built site in _build/html: build it first (python3 dev.py book).")
    tools, found = browser_tools(), {}
    with tools.serve(HTML) as base, tools.launch(chromium) as browser:
        tab = browser.new_tab(base)
        for scheme in SCHEMES:
            tab.prefer_color_scheme(scheme)
            for page in pages(HTML):
                name = page.relative_to(HTML).as_posix()
                rules = None if scheme == "light" else THEME_RULES
                found[scheme, name] = read(tab, f"{base}/{name}", axe_source, rules)
    assert found, f"no page read from {HTML}: every check over the readings would check nothing"
    return found


@pytest.mark.slow
def test_math_is_typeset_on_every_page(readings):
    problems, with_math = [], 0
    for (scheme, name), r in readings.items():
        with_math += r["math"]["count"] > 0
        for tex in r["math"]["bare"]:
            problems.append(f"{name} ({scheme}): not typeset: {tex!r}")
        for error in r["math"]["errors"]:
            problems.append(f"{name} ({scheme}): MathJax error: {error}")
    assert with_math, "no page has any math: is MathJax still wired to the pages?"
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_no_console_errors(readings):
    problems = [f"{name} ({scheme}): {e}" for (scheme, name), r in readings.items()
                for e in r["visit"].console_errors]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_request_stays_on_localhost_and_succeeds(readings):
    problems = []
    for (scheme, name), r in readings.items():
        problems += [f"{name} ({scheme}): tried to reach {u}" for u in r["visit"].outside_requests]
        problems += [f"{name} ({scheme}): failed: {u}" for u in r["visit"].failed_requests]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_each_colour_scheme_really_renders_its_theme(readings):
    wrong = [f"{name}: asked for {scheme}, got {r['theme']!r}"
             for (scheme, name), r in readings.items() if r["theme"] != scheme]
    assert not wrong, "\n".join(wrong)


@pytest.mark.slow
@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_serious_or_critical_accessibility_violation(readings, axe_source, scheme):
    if axe_source is None:
        pytest.skip("axe-core needs npm to be installed from the npm registry (not found on PATH)")
    assert any(s == scheme for s, _ in readings), f"no page was read in the {scheme} scheme"
    problems = [
        f"{name}: [{v['impact']}] {v['id']}: {v['help']} at {', '.join(n['target'] for n in nodes[:3])}"
        for (s, name), r in readings.items() if s == scheme
        for v in r["axe"] if (nodes := blocking(v))
    ]
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_every_accepted_finding_still_occurs(readings, axe_source):
    """An accepted finding the theme no longer produces must leave ACCEPTED."""
    if axe_source is None:
        pytest.skip("axe-core needs npm to be installed from the npm registry (not found on PATH)")
    seen = {(rule, marker) for r in readings.values() for v in r["axe"] for n in v["nodes"]
            for rule, marker in ACCEPTED if v["id"] == rule and marker in n["html"]}
    assert seen == ACCEPTED, f"no longer found, remove from ACCEPTED: {ACCEPTED - seen}"


@pytest.mark.slow
def test_the_harness_notices_a_broken_page(chromium, axe_source, tmp_path):
    (tmp_path / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><title>Broken</title>'
        '<script src="https://cdn.jsdelivr.net/npm/not-allowed.js"></script></head>'
        '<body><main><h1>Broken</h1><img src="missing.png"><p class="math">\\(x^2\\)</p>'
        '<script>console.error("deliberate error")</script></main></body></html>'
    )
    tools = browser_tools()
    with tools.serve(tmp_path) as base, tools.launch(chromium) as browser:
        r = read(browser.new_tab(base), f"{base}/index.html", axe_source)
    visit = r["visit"]
    assert visit.outside_requests == ["https://cdn.jsdelivr.net/npm/not-allowed.js"]
    assert any("missing.png" in f and "404" in f for f in visit.failed_requests), visit.failed_requests
    assert any("deliberate error" in e for e in visit.console_errors), visit.console_errors
    assert r["math"]["bare"] == ["\\(x^2\\)"]
    if axe_source is not None:
        assert any(v["id"] == "image-alt" and v["impact"] in BLOCKING_IMPACTS for v in r["axe"]), r["axe"]


# Checks of the built files that need no browser.

ARTICLE = re.compile(r'<article class="bd-article"[^>]*>(.*?)</article>', re.DOTALL)
HEADING = re.compile(r"<h([1-6])\b")
EXTERNAL_ASSET = re.compile(
    r"""<(?:script|link|img|iframe|source|video|audio)\b[^>]*\b(?:src|href)=["']((?:https?:)?//[^"']+)["']"""
)
CSS_REMOTE = re.compile(r"""(?:url\(\s*["']?|@import\s+["']?)((?:https?:)?//[^"')\s]+)""")


def test_headings_go_down_one_level_at_a_time():
    problems, checked = [], set()
    for page in pages(HTML):
        match = ARTICLE.search(page.read_text(encoding="utf-8"))
        if not match:
            continue
        checked.add(page)
        levels = [int(h) for h in HEADING.findall(match.group(1))]
        name = page.relative_to(HTML).as_posix()
        if levels.count(1) != 1 or levels[0] != 1:
            problems.append(f"{name}: needs exactly one h1, first; has levels {levels}")
        problems += [f"{name}: h{a} followed by h{b}" for a, b in zip(levels, levels[1:]) if b > a + 1]
    assert pages(HTML), "no built pages in _build/html: build the book first"
    chapters = {p for p in pages(HTML) if (HTML / "book") in p.parents}
    assert chapters and chapters <= checked, \
        f"no article found on {sorted(p.name for p in chapters - checked)}: has the theme's markup changed?"
    assert not problems, "\n".join(problems)


def test_no_page_or_stylesheet_loads_anything_from_the_network():
    problems = []
    assert pages(HTML), "no built pages in _build/html: build the book first"
    for page in pages(HTML):
        for url in EXTERNAL_ASSET.findall(page.read_text(encoding="utf-8")):
            problems.append(f"{page.relative_to(HTML)}: loads {url}")
    for css in sorted((HTML / "_static").rglob("*.css")):
        for url in CSS_REMOTE.findall(css.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{css.relative_to(HTML)}: loads {url}")
    assert (HTML / "_static" / "mathjax" / "tex-chtml.js").exists(), "the local MathJax is not in the site"
    assert not problems, "third-party assets (the site must render offline):\n" + "\n".join(problems)


def test_the_pdf_defines_every_macro_the_web_pages_use():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))["sphinx"]["config"]
    web = set(config["mathjax3_config"]["tex"]["macros"])
    pdf = set(re.findall(r"\\renewcommand\{\\(\w+)\}", config["latex_elements"]["preamble"]))
    assert web == pdf, f"only for MathJax: {sorted(web - pdf)}; only for LaTeX: {sorted(pdf - web)}"
