"""The book's two licences are stated everywhere a reader or a tool looks for them.

The prose, figures and exercises under CC BY 4.0 (legal code in LICENSE-TEXT.md), the code
under MIT (LICENSE): on the landing page, in the README, in CITATION.cff (the software record
MIT, the book, its preferred citation, CC BY 4.0) and in the footer of every built page.
"""

from __future__ import annotations

import yaml

from conftest import HTML, ROOT

CC_BY = "https://creativecommons.org/licenses/by/4.0/"
MIT = "https://github.com/attention-executed/attention-executed/blob/main/LICENSE"


def test_the_licence_texts_are_beside_each_other():
    cc = (ROOT / "LICENSE-TEXT.md").read_text(encoding="utf-8")
    for phrase in ("Creative Commons Attribution 4.0 International Public License",
                   "Section 1 – Definitions.", "Section 3 – License Conditions.",
                   "Section 8 – Interpretation.", "Creative Commons may be contacted at",
                   "https://creativecommons.org/licenses/by/4.0/legalcode.en"):
        assert phrase in cc, phrase
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_citation_cff_names_both_licences():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["license"] == "MIT"
    assert cff["preferred-citation"]["license"] == "CC-BY-4.0"
    assert cff["preferred-citation"]["license-url"] == CC_BY


def test_landing_page_and_readme_name_both_licences():
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for text in (intro, readme):
        assert "Creative Commons Attribution 4.0 International" in text and CC_BY in text
        assert "MIT licence" in text and "LICENSE-TEXT.md" in text


def test_every_page_footer_names_both_licences():
    pages = sorted((HTML / "book").glob("*.html"))
    assert pages, "no built site in _build/html: build it first (python3 dev.py book)"
    for page in pages:
        html = page.read_text(encoding="utf-8")
        footer = html[html.index('<div class="extra_footer">'):]
        assert f'rel="license" href="{CC_BY}"' in footer, page.name
        assert f'href="{MIT}"' in footer, page.name
