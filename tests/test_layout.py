"""Every page on a phone (390 px) and on a desktop screen (1280 px): nothing too wide, nothing
clipped, no figure text too small to read.

Headless Chromium (tests/tools/chromium.py) opens every page of _build/html at both widths and
measures, after MathJax has typeset the page:

- the page: no wider than the screen (no sideways scrolling of the whole page);
- boxes: no display equation, table, code block or cell output reaching past the text column,
  and no formula, image, table or code cut off by a box that hides its overflow;
- boxes that scroll sideways (a long equation, a wide table on a phone, a long code line): each
  shows it, by fading out where more waits (_static/attnbook-scroll.js); on a desktop no table
  needs to scroll;
- equation numbers: none drawn over its equation (a long equation scrolls beside its number);
- figures: every text of every figure at least ``MIN_TEXT_PX`` on screen, on the light and on
  the dark theme. A figure is an SVG (attnbook.style makes every notebook figure one), whose
  texts matplotlib writes as glyph outlines scaled to their font size: the size on screen is
  that size times the ratio of the drawing's width on screen (the image's width less its
  padding: the dark theme frames a figure as a padded card) to the SVG's own width. A raster
  figure cannot be measured and is reported.

The rule for figure text (``MIN_TEXT_PX``): on the desktop, no smaller than the page's small
print (its smallest reading text, code, is 14 px: 0.875 of the 16 px text; measured by
``test_the_small_print_is_what_the_rule_assumes``); on a phone, where a figure is scaled down to
the screen's width, at least 9 px, what an 11 pt label of a 6.4 inch figure measures there.
Each glyph is measured on its own (a subscript's ``<use>`` carries its own ``scale(0.7)``, times
its group's scale): a text's size is its largest glyph, held to ``MIN_TEXT_PX``, and its
smallest glyph, a sub- or superscript, is held to ``MIN_SCRIPT_PX`` (7.5 px on a phone, 9.8 px
on a desktop).

``KNOWN_OFFENDERS`` lists, by figure id, the chapter figures whose text is still too small; the
chapter authors remove an entry when they fix the figure, and the test fails when a listed
figure no longer offends (so the list only shrinks). The lead empties it before a release.

Set ATTNBOOK_SITE=/path/to/html to check a site built elsewhere.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import HTML as BUILT, site_pages

HTML = Path(os.environ.get("ATTNBOOK_SITE", BUILT))

# name: (width, height, device pixel ratio, mobile)
VIEWPORTS = {"phone": (390, 844, 3, True), "desktop": (1280, 800, 1, False)}
MIN_TEXT_PX = {"phone": 9.0, "desktop": 14.0}
# Sub- and superscripts (matplotlib's mathtext draws them at 0.7 of their text, nested ones at
# 0.49) carry meaning, as in x_{T_x} or 10^{-1}, so they have a floor of their own. On the
# desktop: 0.7 of MIN_TEXT_PX, a script of the smallest text allowed. On the phone: 7.5 px, the
# line between what a reading of every figure at 390 px found hard to read (7.1 px: the
# subscripts of a 12 pt label in a diagram 6.4 in wide; 6.4 px: the exponents of 11 pt tick
# labels) and what it read without trouble (7.8 px and more: the scripts of 11 pt text in a
# figure up to 5.3 in wide). A figure 6.4 in wide keeps its 11 pt text legible (9 px) but not
# that text's scripts (6.4 px): it needs 15 pt around a script, or to be narrower.
MIN_SCRIPT_PX = {"phone": 7.5, "desktop": 0.7 * MIN_TEXT_PX["desktop"]}
# Figures are measured on both themes: the dark one frames each figure as a padded card
# (_static/attnbook.css), which leaves the drawing less width than the light one.
THEMES = ("light", "dark")
SMALL_PRINT_PX = 14.0

# Figures (their HTML id: the figure's `name`) whose text is still smaller than MIN_TEXT_PX,
# with the width and theme at which they fail ("phone dark"). Chapter authors remove their entries as they fix them.
KNOWN_OFFENDERS: dict[str, set[str]] = {
}

MEASURE = r"""(async () => {
  const THEMES = @@THEMES@@;
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await document.fonts.ready;
  // attnbook-scroll.js marks the boxes that scroll once MathJax is done.
  for (let i = 0; i < 50 && document.documentElement.dataset.attnbookScroll !== 'ready'; i++)
    await new Promise(r => setTimeout(r, 100));
  const article = document.querySelector('article.bd-article') || document.body;
  const column = article.getBoundingClientRect();
  const where = el => {
    const anchor = el.closest('[id]');
    const text = (el.getAttribute('aria-label') || el.textContent || '').replace(/\s+/g, ' ').trim();
    return `${anchor ? '#' + anchor.id : el.tagName.toLowerCase()} ${el.tagName.toLowerCase()}`
      + `${el.className && typeof el.className === 'string' ? '.' + el.className.split(' ')[0] : ''}`
      + ` "${text.slice(0, 50)}"`;
  };
  const found = {pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth,
                 wide: [], clipped: [], numbers: [], figures: {}, raster: [], smallPrint: null};
  // Boxes that must stay inside the text column.
  const boxes = article.querySelectorAll(
    'div.math, mjx-container[display="true"], table, div.highlight, pre, div.cell_output, '
    + 'dl.py > dt, figure, img, div.admonition, div.pst-scrollable-table-container');
  for (const el of boxes) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    // A box inside a scrolling box may extend beyond the column: it is scrolled, not clipped.
    const scroller = el.parentElement && el.parentElement.closest('*');
    let inScroller = false;
    for (let p = el.parentElement; p && p !== article; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') { inScroller = true; break; }
    }
    if (!inScroller && (r.right > column.right + 1 || r.left < column.left - 1))
      found.wide.push(`${where(el)}: ${Math.round(r.left - column.left)}..${Math.round(r.right - column.left)} px of a ${Math.round(column.width)} px column`);
  }
  // Content cut off: a formula, image, table or code block reaching past a box that hides
  // its overflow (a box that scrolls in between shows it instead).
  const content = article.querySelectorAll('mjx-math, img, table, pre, svg');
  for (const el of content) {
    const r = el.getBoundingClientRect();
    if (r.width === 0) continue;
    for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
      const o = getComputedStyle(p).overflowX;
      if (o === 'auto' || o === 'scroll') break;
      if (o === 'hidden' || o === 'clip') {
        const q = p.getBoundingClientRect();
        const cut = Math.max(r.right - q.right, q.left - r.left);
        if (cut > 1) found.clipped.push(`${where(el)}: ${Math.round(cut)} px hidden by ${p.tagName.toLowerCase()}.${(p.className || '').toString().split(' ')[0]}`);
        break;
      }
    }
  }
  // Boxes that scroll sideways: each must show it (attnbook-scroll.js fades the side where more
  // content waits), and a desktop table must not need to.
  found.scrollers = [];
  for (const el of article.querySelectorAll('div.math mjx-container, span.math, .pst-scrollable-table-container, div.highlight pre, div.cell_output pre')) {
    const o = getComputedStyle(el).overflowX;
    if (!(o === 'auto' || o === 'scroll') || el.scrollWidth - el.clientWidth <= 1) continue;
    found.scrollers.push({what: where(el), table: el.matches('.pst-scrollable-table-container'),
                          shown: el.classList.contains('attnbook-more-right') || el.classList.contains('attnbook-more-left')});
  }
  // Equation numbers beside, never over, their equation.
  for (const math of article.querySelectorAll('div.math')) {
    const number = math.querySelector('span.eqno');
    const eq = math.querySelector('mjx-container');
    if (!number || !eq) continue;
    const n = number.getBoundingClientRect();
    const content = eq.querySelector('mjx-math') || eq;
    const box = eq.getBoundingClientRect();
    const c = content.getBoundingClientRect();
    // The visible part of the equation: its box, or the content if it is narrower.
    const visible = {left: Math.max(box.left, c.left), right: Math.min(box.right, c.right),
                     top: Math.max(box.top, c.top), bottom: Math.min(box.bottom, c.bottom)};
    const overlap = Math.min(n.right, visible.right) - Math.max(n.left, visible.left);
    const sameLine = Math.min(n.bottom, visible.bottom) - Math.max(n.top, visible.top) > 0;
    if (overlap > 1 && sameLine) found.numbers.push(`${where(math)}: number ${number.textContent.replace('#', '').trim()} covers ${Math.round(overlap)} px of the equation`);
  }
  // Figures: the font size of every text of every SVG, on screen, on the light and on the dark
  // theme (the dark theme frames each figure as a padded card: the padding is not the figure's).
  const svgs = {};
  const measureFigures = async () => {
    const figures = [];
    for (const img of article.querySelectorAll('img')) {
      const r = img.getBoundingClientRect();
      if (r.width === 0 || !img.src.toLowerCase().endsWith('.svg')) continue;
      const figure = img.closest('figure');
      const id = figure && figure.id ? figure.id : where(img);
      if (!(img.src in svgs))
        svgs[img.src] = new DOMParser().parseFromString(await (await fetch(img.src)).text(), 'image/svg+xml');
      const root = svgs[img.src].documentElement;
      const viewBox = (root.getAttribute('viewBox') || '').split(/\s+/).map(Number);
      // The drawing fills the image's content box: its width less padding and border.
      const st = getComputedStyle(img);
      const inset = ['paddingLeft', 'paddingRight', 'borderLeftWidth', 'borderRightWidth']
        .reduce((sum, side) => sum + (parseFloat(st[side]) || 0), 0);
      const scale = (r.width - inset) / viewBox[2];
      const sizes = [];
      // The scale of one element's transform: scale(a) or scale(a a) (-a: a flipped axis);
      // 1 without a scale, null if it stretches one axis more than the other.
      const own = e => {
        const m = /scale\(\s*(-?[\d.e+-]+)(?:[\s,]+(-?[\d.e+-]+))?\s*\)/.exec(e.getAttribute('transform') || '');
        if (!m) return 1;
        const a = Math.abs(Number(m[1])), b = m[2] === undefined ? a : Math.abs(Number(m[2]));
        return Math.abs(a - b) <= 1e-6 * a ? a : null;
      };
      for (const g of root.querySelectorAll('g[id^="text_"]')) {
        // Each glyph's own size: its <use>'s scale (0.7 for a sub- or superscript in
        // matplotlib's mathtext, 0.49 for a nested one) times the scales of the groups around
        // it, up to the text's group.
        const glyphs = [];
        for (const use of g.querySelectorAll('use')) {
          let s = 1, odd = false, scaled = false;
          for (let e = use; e && e !== g; e = e.parentElement) {
            const k = own(e);
            if (k === null) { odd = true; break; }
            if (k !== 1) scaled = true;
            s *= k;
          }
          if (!odd && scaled) glyphs.push(s);
        }
        if (!glyphs.length) continue;
        const comment = [...g.childNodes].find(c => c.nodeType === 8);
        // px: the text's base size (its largest glyph); least: its smallest glyph.
        sizes.push({text: comment ? comment.textContent.trim() : g.id,
                    px: 100 * Math.max(...glyphs) * scale, least: 100 * Math.min(...glyphs) * scale});
      }
      figures.push({id, width: Math.round(r.width - inset), inset, sizes});
    }
    return figures;
  };
  for (const img of article.querySelectorAll('img')) {
    const r = img.getBoundingClientRect();
    if (r.width > 0 && !img.src.toLowerCase().endsWith('.svg') && img.closest('div.cell_output, figure'))
      found.raster.push(`${img.closest('figure') && img.closest('figure').id ? img.closest('figure').id : where(img)}: ${img.src.split('/').pop()} (${img.naturalWidth} px shown at ${Math.round(r.width)} px)`);
  }
  const html = document.documentElement, chosen = html.dataset.theme;
  for (const theme of THEMES) {
    html.dataset.theme = theme;
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    found.figures[theme] = await measureFigures();
  }
  if (chosen === undefined) delete html.dataset.theme; else html.dataset.theme = chosen;
  // Search fields shown (one is enough), and the weight of the captions.
  const shown = e => { const r = e.getBoundingClientRect(), st = getComputedStyle(e);
                       return r.width > 0 && r.height > 0 && st.visibility !== 'hidden'; };
  found.searchFields = [...document.querySelectorAll('.search-button-field, .search-button')]
    .filter(shown).length;
  const caption = article.querySelector('figcaption');
  found.captionWeight = caption ? parseInt(getComputedStyle(caption.querySelector('p') || caption).fontWeight) : null;
  // The page's small print: its smallest reading text (code; captions and footnotes are larger).
  const sizes = [...article.querySelectorAll('div.highlight pre, figcaption, aside.footnote, p')]
    .map(e => parseFloat(getComputedStyle(e).fontSize)).filter(v => v > 0);
  found.smallPrint = sizes.length ? Math.min(...sizes) : null;
  return found;
})()""".replace("@@THEMES@@", json.dumps(THEMES))


def browser_tools():
    pytest.importorskip("websockets", reason="the browser tests need websockets (requirements-test.txt)")
    from tools import chromium

    return chromium


@pytest.fixture(scope="module")
def measurements() -> dict[tuple[str, str], dict]:
    """Every page measured at every width, keyed by (width name, page path)."""
    tools = browser_tools()
    executable = tools.find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: install the Debian package chromium, or set CHROMIUM")
    if not (HTML / "index.html").exists():
        pytest.fail("No built site in _build/html: build it first (python3 dev.py book).")
    found = {}
    with tools.serve(HTML) as base, tools.launch(executable) as browser:
        tab = browser.new_tab(base)
        for name, (width, height, ratio, mobile) in VIEWPORTS.items():
            tab.call("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": ratio, "mobile": mobile})
            for page in site_pages(HTML):
                path = page.relative_to(HTML).as_posix()
                tab.open(f"{base}/{path}")
                found[name, path] = tab.evaluate(MEASURE, timeout=120)
    return found


def _report(problems: list[str], what: str) -> str:
    return f"{len(problems)} {what}:\n" + "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("width", VIEWPORTS)
def test_no_page_is_wider_than_the_screen(measurements, width):
    # A phone widens its layout to the widest content, so compare with the screen's width.
    screen = VIEWPORTS[width][0]
    problems = [f"{path}: {m['pageWidth']} px wide on a {screen} px screen"
                for (w, path), m in measurements.items() if w == width
                and m["pageWidth"] > screen]
    assert not problems, _report(problems, f"pages wider than the screen at {width} width")


@pytest.mark.slow
@pytest.mark.parametrize("width", VIEWPORTS)
def test_nothing_reaches_past_the_text_column(measurements, width):
    problems = [f"{path}: {p}" for (w, path), m in measurements.items() if w == width
                for p in m["wide"]]
    assert not problems, _report(problems, f"boxes wider than the text column at {width} width")


@pytest.mark.slow
@pytest.mark.parametrize("width", VIEWPORTS)
def test_nothing_is_cut_off(measurements, width):
    problems = [f"{path}: {p}" for (w, path), m in measurements.items() if w == width
                for p in m["clipped"]]
    assert not problems, _report(problems, f"boxes that cut their content off at {width} width")


@pytest.mark.slow
@pytest.mark.parametrize("width", VIEWPORTS)
def test_every_box_that_scrolls_shows_it(measurements, width):
    problems = [f"{path}: {s['what']} scrolls without a sign of it" for (w, path), m in
                measurements.items() if w == width for s in m["scrollers"] if not s["shown"]]
    assert not problems, _report(problems, f"boxes scrolling unseen at {width} width")


@pytest.mark.slow
def test_tables_fit_the_column_on_a_desktop(measurements):
    problems = [f"{path}: {s['what']}" for (w, path), m in measurements.items()
                if w == "desktop" for s in m["scrollers"] if s["table"]]
    assert not problems, _report(problems, "tables wider than the column at desktop width")


@pytest.mark.slow
@pytest.mark.parametrize("width", VIEWPORTS)
def test_no_equation_number_covers_its_equation(measurements, width):
    problems = [f"{path}: {p}" for (w, path), m in measurements.items() if w == width
                for p in m["numbers"]]
    assert not problems, _report(problems, f"equation numbers over equations at {width} width")


def figure_offences(measurements) -> dict[str, dict[str, list[str]]]:
    """figure id -> 'width theme' (e.g. 'phone dark') -> its texts below the minimum, as 'text: size'."""
    offences: dict[str, dict[str, list[str]]] = defaultdict(dict)
    for (width, path), m in measurements.items():
        for theme in THEMES:
            for figure in m["figures"][theme]:
                small = [f"{s['text'][:40]!r} {s['px']:.1f} px" for s in figure["sizes"]
                         if s["px"] < MIN_TEXT_PX[width] - 0.05]
                small += [f"{s['text'][:40]!r} script {s['least']:.1f} px" for s in figure["sizes"]
                          if s["px"] >= MIN_TEXT_PX[width] - 0.05
                          and s["least"] < MIN_SCRIPT_PX[width] - 0.05]
                if small:
                    offences[f"{path}#{figure['id']}"][f"{width} {theme}"] = small
    return offences


def _figure_key(key: str) -> str:
    return key.split("#", 1)[1]


@pytest.mark.slow
def test_every_figure_text_is_large_enough(measurements):
    for theme in THEMES:
        assert any(m["figures"][theme] for m in measurements.values()), f"no SVG figure found on the {theme} theme"
    problems = []
    for key, widths in sorted(figure_offences(measurements).items()):
        for where, small in widths.items():
            if where in KNOWN_OFFENDERS.get(_figure_key(key), set()):
                continue
            width, theme = where.split()
            problems.append(f"{key} at {width} width, {theme} theme (minimum {MIN_TEXT_PX[width]} px, "
                            f"scripts {MIN_SCRIPT_PX[width]:.1f} px): "
                            f"{len(small)} texts too small, e.g. " + "; ".join(small[:4]))
    assert not problems, _report(problems, "figures with text too small to read")


@pytest.mark.slow
def test_every_known_offender_still_offends(measurements):
    """A fixed figure leaves KNOWN_OFFENDERS, so the list only shrinks."""
    offending = {(_figure_key(k), w) for k, widths in figure_offences(measurements).items()
                 for w in widths}
    stale = sorted((f, w) for f, widths in KNOWN_OFFENDERS.items() for w in widths
                   if (f, w) not in offending)
    assert not stale, f"fixed, remove from KNOWN_OFFENDERS: {stale}"


@pytest.mark.slow
@pytest.mark.parametrize("width", VIEWPORTS)
def test_one_search_field(measurements, width):
    problems = [f"{path}: {m['searchFields']} search fields" for (w, path), m in measurements.items()
                if w == width and m["searchFields"] != 1]
    assert not problems, _report(problems, f"pages without exactly one search field at {width} width")


@pytest.mark.slow
def test_captions_are_not_set_light(measurements):
    light = sorted({f"{path}: {m['captionWeight']}" for (w, path), m in measurements.items()
                    if m["captionWeight"] is not None and m["captionWeight"] < 400})
    assert not light, _report(light, "pages with captions lighter than the text")


@pytest.mark.slow
def test_search_results_show_no_tex():
    """A result's snippet spells its math in plain characters (_static/attnbook-search.js)."""
    tools = browser_tools()
    executable = tools.find_chromium()
    if executable is None:
        pytest.skip("no Chromium found")
    with tools.serve(HTML) as base, tools.launch(executable) as browser:
        tab = browser.new_tab(base)
        tab.open(f"{base}/search.html?q=annotation")
        snippets = tab.evaluate("""(async () => {
          for (let i = 0; i < 150; i++) {
            const found = [...document.querySelectorAll('#search-results li p.context')];
            if (found.length >= 3) return found.map(p => p.textContent);
            await new Promise(r => setTimeout(r, 200));
          }
          return [...document.querySelectorAll('#search-results li p.context')].map(p => p.textContent);
        })()""", timeout=60)
    assert len(snippets) >= 3, f"the search for 'annotation' found too little: {snippets}"
    tex = [s for s in snippets if re.search(r"\\[A-Za-z(\[]", s)]
    assert not tex, "search snippets with TeX:\n" + "\n".join(t[:200] for t in tex)


@pytest.mark.slow
def test_printed_pages_show_no_toggle_hints():
    """Printed, a folded solution is open and says nothing about clicking."""
    tools = browser_tools()
    executable = tools.find_chromium()
    if executable is None:
        pytest.skip("no Chromium found")
    pages = [p for p in site_pages(HTML) if "toggle" in p.read_text(encoding="utf-8")]
    assert pages, "no page with a folded block"
    problems = []
    with tools.serve(HTML) as base, tools.launch(executable) as browser:
        tab = browser.new_tab(base)
        tab.call("Emulation.setEmulatedMedia", {"media": "print"})
        for page in pages:
            path = page.relative_to(HTML).as_posix()
            tab.open(f"{base}/{path}")
            found = tab.evaluate("""(() => {
              const text = document.body.innerText;
              const hidden = [...document.querySelectorAll('.admonition.toggle-hidden .admonition-title ~ *')]
                .filter(e => e.getBoundingClientRect().height === 0 && e.textContent.trim()).length;
              const hints = [...document.querySelectorAll('button.toggle-button')]
                .filter(b => getComputedStyle(b).display !== 'none'
                             && getComputedStyle(b, '::before').content.includes('Click')).length;
              return {click: /Click to (hide|show)/.test(text), hidden, hints};
            })()""")
            if found["click"] or found["hidden"] or found["hints"]:
                problems.append(f"{path}: {found}")
    assert not problems, _report(problems, "printed pages with toggle hints or folded content")


@pytest.mark.slow
def test_every_figure_is_vector(measurements):
    problems = [f"{path}: {p}" for (w, path), m in measurements.items() if w == "desktop"
                for p in m["raster"]]
    assert not problems, _report(problems, "raster figures (style.use() makes notebook figures SVG)")


@pytest.mark.slow
def test_the_small_print_is_what_the_rule_assumes(measurements):
    sizes = {m["smallPrint"] for (w, _), m in measurements.items() if w == "desktop"
             and m["smallPrint"]}
    assert sizes, "no text found to measure the small print"
    assert min(sizes) == SMALL_PRINT_PX, (
        f"the pages' small print is now {min(sizes)} px: update SMALL_PRINT_PX and MIN_TEXT_PX")


@pytest.mark.slow
def test_the_measurement_notices_every_defect(tmp_path):
    """A page built to break every rule is reported on every count."""
    # Two texts drawn as matplotlib draws them (glyph outlines, <use>d in a scaled group): one
    # tiny (5 pt), one large (20 pt) with a small subscript (scale(0.3) of it: 6 pt).
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           'width="460.8pt" height="100pt" viewBox="0 0 460.8 100">'
           '<defs><path id="glyph" d="M0 0 L100 0 L100 100 Z"/></defs>'
           '<g id="text_1"><!-- tiny --><g transform="translate(10 50) scale(0.05 -0.05)">'
           '<use xlink:href="#glyph"/></g></g>'
           '<g id="text_2"><!-- $x_i$ --><g transform="translate(100 50) scale(0.2 -0.2)">'
           '<use xlink:href="#glyph"/><use xlink:href="#glyph" transform="translate(100 20) scale(0.3)"/>'
           '</g></g></svg>')
    (tmp_path / "fig.svg").write_text(svg)
    (tmp_path / "index.html").write_text(
        '<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width">'
        '<style>html[data-theme="dark"] img {padding: 20px; box-sizing: border-box}</style>'
        '</head><body><article class="bd-article" style="width:300px">'
        '<div style="width:600px">too wide</div>'
        '<div class="highlight" style="width:500px"><pre>wider than the column</pre></div>'
        '<div style="overflow:hidden;width:100px"><pre style="width:400px">cut off</pre></div>'
        '<div class="highlight"><pre style="overflow:auto;width:100px">'
        'a line that scrolls without a sign of it, a line that scrolls</pre></div>'
        '<figure id="fig-tiny"><img src="fig.svg" style="width:300px"></figure>'
        '</article></body></html>')
    tools = browser_tools()
    executable = tools.find_chromium()
    if executable is None:
        pytest.skip("no Chromium found")
    with tools.serve(tmp_path) as base, tools.launch(executable) as browser:
        tab = browser.new_tab(base)
        tab.call("Emulation.setDeviceMetricsOverride",
                 {"width": 390, "height": 844, "deviceScaleFactor": 3, "mobile": True})
        tab.open(f"{base}/index.html")
        m = tab.evaluate(MEASURE)
    assert m["pageWidth"] > VIEWPORTS["phone"][0]
    assert any("highlight" in w for w in m["wide"]), m["wide"]
    assert any("hidden by div" in c for c in m["clipped"]), m["clipped"]
    assert [x["shown"] for x in m["scrollers"]] == [False], m["scrollers"]
    (figure,) = m["figures"]["light"]
    assert figure["id"] == "fig-tiny"
    tiny, scripted = figure["sizes"]
    assert tiny["px"] == pytest.approx(5 * 300 / 460.8, rel=0.01)
    # The subscript is measured by its own scale times its group's: 20 pt x 0.3.
    assert scripted["px"] == pytest.approx(20 * 300 / 460.8, rel=0.01)
    assert scripted["least"] == pytest.approx(6 * 300 / 460.8, rel=0.01)
    offences = figure_offences({("phone", "index.html"): m})["index.html#fig-tiny"]
    assert any("'tiny'" in o for o in offences["phone light"]), offences
    assert any("$x_i$" in o and "script" in o for o in offences["phone light"]), offences
    # On the dark theme the page pads the image by 20 px a side: the drawing is 260 px wide.
    (figure,) = m["figures"]["dark"]
    assert figure["sizes"][0]["px"] == pytest.approx(5 * 260 / 460.8, rel=0.01)


def test_no_equation_reference_in_double_parentheses():
    """A reference in parentheses keeps one pair (_ext/attnbook_eqref.py): "(1.1)", not "((1.1))"."""
    doubled = []
    for page in site_pages(HTML):
        text = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
        doubled += [f"{page.relative_to(HTML)}: {m}" for m in re.findall(r"\(\(\d+\.\d+\)\)", text)]
    assert not doubled, "\n".join(doubled)


LANDING = r"""(async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await document.fonts.ready;
  const target = document.getElementById(%s);
  target.scrollIntoView({block: "start"});
  await new Promise(r => setTimeout(r, 300));
  const r = target.getBoundingClientRect();
  // What a reader sees a little below the target's top edge, across its width.
  const xs = [0.25, 0.5, 0.75].map(f => r.left + f * r.width);
  const hits = xs.map(x => document.elementFromPoint(x, r.top + 4));
  return {top: r.top, covered: hits.filter(el => el && !target.contains(el))
                                  .map(el => el.className || el.tagName)};
})()"""


@pytest.mark.parametrize("width", list(VIEWPORTS))
def test_a_link_to_a_figure_lands_with_the_figure_in_view(width):
    """Following a link to a figure shows the figure, not the header or the live-code bar over it."""
    tools = browser_tools()
    executable = tools.find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: install the Debian package chromium, or set CHROMIUM")
    page = HTML / "book" / "01-bottleneck.html"
    figure_id = "fig-ch1-bottleneck"
    assert f'id="{figure_id}"' in page.read_text(encoding="utf-8"), "the test's figure is gone: pick another"
    w, h, ratio, mobile = VIEWPORTS[width]
    with tools.serve(HTML) as base, tools.launch(executable) as browser:
        tab = browser.new_tab(base)
        tab.call("Emulation.setDeviceMetricsOverride",
                 {"width": w, "height": h, "deviceScaleFactor": ratio, "mobile": mobile})
        tab.open(f"{base}/book/01-bottleneck.html")
        landed = tab.evaluate(LANDING % json.dumps(figure_id), timeout=60)
    assert not landed["covered"], (
        f"at {width} width the figure's top is under {landed['covered']}: give link targets a "
        "scroll-margin-top as tall as what sticks to the top of the screen (_ext/live/live.css)")
