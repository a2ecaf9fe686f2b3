"""The bibliography, the book's citations of it, and how the book itself is to be cited.

- every entry of references.bib links to where the work can be read (url, and doi or arXiv id
  where the work has one), and the keys the book has promised exist;
- every {cite} key used in book/*.md exists in references.bib;
- the reading list of the course notes the book grew from is in references.bib, with the links
  the notes give, and each is cited from the book once the chapters that teach its topic exist;
- CITATION.cff is valid Citation File Format 1.2.0 (checked with jsonschema against the CFF
  1.2.0 schema, copied from the cffconvert 2.0.0 wheel on PyPI into tests/tools/: cffconvert
  itself pins jsonschema<4, which would break the book's own requirements) and agrees with the
  BibTeX entry on the landing page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pybtex.database
import pytest
import yaml

from conftest import ROOT

BIB = ROOT / "references.bib"
BOOK = ROOT / "book"
CFF = ROOT / "CITATION.cff"
CFF_SCHEMA = ROOT / "tests" / "tools" / "citation-file-format-1.2.0.schema.json"

CHAPTERS = [
    "01-bottleneck", "02-alignment-scores", "03-context-vectors", "04-learning-to-align",
    "05-scaled-dot-product", "06-multi-head", "07-positions", "08-transformer", "09-cost",
]

# Every key the chapters were promised (the project's list of bibliography keys).
PROMISED = {
    "eisenstein2019nlp", "olah2015lstm", "bahdanau2015neural", "vaswani2017attention",
    "alammar2018illustrated", "press2022train", "kazemnejad2023impact", "cho2014properties",
    "cho2014learning", "sutskever2014sequence", "luong2015effective", "su2024roformer",
    "milakov2018online", "dao2022flashattention", "ba2016layer", "xiong2020layer", "he2016deep",
    "papineni2002bleu", "szegedy2016rethinking", "kingma2015adam", "loshchilov2019decoupled",
    "pascanu2013difficulty", "graves2014neural", "rabe2021self", "pope2023efficiently",
    "shaw2018self", "zhang2023dive", "rush2018annotated", "okabe2008color",
    "williams1989learning", "wu2016google", "karpathy2020micrograd", "nadaraya1964estimating",
    "watson1964smooth", "attention_lecture_video",
}

# The references of the course notes (/work/shared/seeds), as the notes link them, and the
# chapters whose topic each belongs to: once all of those chapters exist, the work must be cited
# from at least one page of the book.
COURSE = {
    "eisenstein2019nlp": ("https://github.com/jacobeisenstein/gt-nlp-class/blob/master/notes/eisenstein-nlp-notes.pdf",
                          ["01-bottleneck"]),
    "olah2015lstm": ("http://colah.github.io/posts/2015-08-Understanding-LSTMs/", ["01-bottleneck"]),
    "bahdanau2015neural": ("https://arxiv.org/abs/1409.0473",
                           ["02-alignment-scores", "03-context-vectors", "04-learning-to-align"]),
    "vaswani2017attention": ("https://arxiv.org/pdf/1706.03762.pdf",
                             ["05-scaled-dot-product", "06-multi-head", "08-transformer"]),
    "alammar2018illustrated": ("http://jalammar.github.io/illustrated-transformer/", ["08-transformer"]),
    "press2022train": ("https://arxiv.org/abs/2108.12409", ["07-positions"]),
    "kazemnejad2023impact": ("https://arxiv.org/abs/2305.19466", ["07-positions"]),
}

CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]*)`")
ARXIV_ID = re.compile(r"^\d{4}\.\d{4,5}$")
DOI = re.compile(r"^10\.\d{4,9}/\S+$")


@pytest.fixture(scope="module")
def bib() -> pybtex.database.BibliographyData:
    data = pybtex.database.parse_file(str(BIB))
    assert data.entries, f"{BIB} holds no entries: every check over them would check nothing"
    return data


def cited_keys(text: str) -> list[str]:
    """The keys of every {cite}, {cite:p}, {cite:t}, ... role in a MyST page."""
    return [key.strip() for group in CITE.findall(text) for key in group.split(",") if key.strip()]


def citations_in_book() -> dict[str, list[str]]:
    """Page name -> keys it cites, for every page in book/."""
    return {page.stem: cited_keys(page.read_text(encoding="utf-8")) for page in sorted(BOOK.glob("*.md"))}


def where(url: str) -> tuple[str, str]:
    """A link reduced to what identifies it: host and path, scheme and 'pdf' spelling aside."""
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    arxiv = re.match(r"^/(?:abs|pdf)/(\d{4}\.\d{4,5})(?:v\d+)?(?:\.pdf)?$", path)
    if parts.netloc.endswith("arxiv.org") and arxiv:
        return "arxiv.org", arxiv.group(1)
    return parts.netloc.removeprefix("www."), path


def test_cite_roles_are_recognised():
    text = "As {cite:t}`vaswani2017attention` show, and {cite}`a, b` and {cite:p}`c`; not `{cite}`."
    assert cited_keys(text) == ["vaswani2017attention", "a", "b", "c"]


def test_every_promised_key_exists(bib):
    missing = PROMISED - set(bib.entries)
    assert not missing, f"keys the chapters were promised but references.bib lacks: {sorted(missing)}"


def test_every_entry_links_to_the_work(bib):
    problems = []
    for key, entry in bib.entries.items():
        fields = {name.lower(): value for name, value in entry.fields.items()}
        url = fields.get("url")
        if not url:
            problems.append(f"{key}: no url")
        else:
            parts = urlsplit(url)
            if parts.scheme != "https" or not parts.netloc:
                problems.append(f"{key}: url {url!r} is not an https link")
        if "eprint" in fields:
            if fields.get("archiveprefix", "").lower() != "arxiv" or not ARXIV_ID.match(fields["eprint"]):
                problems.append(f"{key}: eprint {fields['eprint']!r} is not an arXiv id with archivePrefix arXiv")
        if "doi" in fields and not DOI.match(fields["doi"]):
            problems.append(f"{key}: doi {fields['doi']!r} is not a bare DOI (10.xxxx/...)")
        if not (entry.persons.get("author") or key == "attention_lecture_video"):
            problems.append(f"{key}: no author")
    assert not problems, "\n".join(problems)


def test_every_arxiv_paper_gives_its_arxiv_id(bib):
    # An entry whose link is an arXiv page must also carry the id (the bibliography prints it).
    arxiv = {key: entry for key, entry in bib.entries.items()
             if where(entry.fields.get("url", ""))[0] == "arxiv.org"}
    assert arxiv, "no entry links to arXiv: is where() still recognising arXiv links?"
    problems = [f"{key}: links {entry.fields['url']} but has no eprint"
                for key, entry in arxiv.items() if "eprint" not in entry.fields]
    assert not problems, "\n".join(problems)


def test_every_cited_key_exists(bib):
    pages = citations_in_book()
    assert any(pages.values()), "no {cite} role found in book/*.md: is the pattern still right?"
    unknown = [f"{page}.md cites {key!r}" for page, keys in pages.items() for key in keys
               if key not in bib.entries]
    assert not unknown, "citations of keys missing from references.bib:\n" + "\n".join(unknown)


def test_the_course_reading_list_is_in_the_bibliography_with_its_links(bib):
    problems = []
    for key, (link, _) in COURSE.items():
        entry = bib.entries.get(key)
        if entry is None:
            problems.append(f"{key}: missing")
            continue
        links = {where(entry.fields["url"])}
        if "eprint" in entry.fields:
            links.add(("arxiv.org", entry.fields["eprint"]))
        if where(link) not in links:
            problems.append(f"{key}: the course links {link}, the entry {sorted(links)}")
    assert not problems, "\n".join(problems)


def test_eisenstein_names_the_sections_and_the_courses_terms(bib):
    note = " ".join(bib.entries["eisenstein2019nlp"].fields["note"].split())
    for section in ("6.1 N-gram language models", "6.2 Smoothing and discounting",
                    "6.3 Recurrent neural network language models", "6.4 Evaluating language models"):
        assert section in note
    assert "Links only; we do not redistribute slides or papers" in note


def test_the_course_reading_list_is_cited_once_its_chapters_exist():
    present = {c for c in CHAPTERS if (BOOK / f"{c}.md").exists()}
    cited = {key for keys in citations_in_book().values() for key in keys}
    due = {key for key, (_, home) in COURSE.items() if set(home) <= present}
    uncited = sorted(due - cited)
    assert not uncited, "course references not cited anywhere in the book although their chapters " \
                        f"exist: {uncited}"
    if len(present) == len(CHAPTERS):
        assert set(COURSE) <= cited
    elif not due:
        waiting = sorted(set(CHAPTERS) - present)
        pytest.skip(f"no course reference is due yet: waiting for chapters {waiting}")


# How to cite the book.

def cff() -> dict:
    return yaml.safe_load(CFF.read_text(encoding="utf-8"))


def cff_errors(data: dict) -> list[str]:
    schema = json.loads(CFF_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(data)]


def test_the_schema_is_citation_file_format_1_2_0():
    schema = json.loads(CFF_SCHEMA.read_text(encoding="utf-8"))
    assert schema["$id"] == "https://citation-file-format.github.io/1.2.0/schema.json"


def test_citation_cff_is_valid():
    data = cff()
    assert data["cff-version"] == "1.2.0"
    assert cff_errors(data) == []


@pytest.mark.parametrize("breakage", ["no authors", "bad version", "bad url"])
def test_the_validator_rejects_a_broken_citation_file(breakage):
    data = cff()
    if breakage == "no authors":
        del data["authors"]
    elif breakage == "bad version":
        data["cff-version"] = "1.1"
    else:
        data["preferred-citation"]["url"] = "not a url"
    assert cff_errors(data), f"a citation file with {breakage} validated"


def landing_page_bibtex() -> pybtex.database.Entry:
    text = (BOOK / "intro.md").read_text(encoding="utf-8")
    block = re.search(r"```bibtex\n(.*?)```", text, re.DOTALL)
    assert block, "book/intro.md has no ```bibtex block under 'How to cite it'"
    entries = pybtex.database.parse_string(block.group(1), "bibtex").entries
    assert len(entries) == 1
    return next(iter(entries.values()))


def test_citation_cff_agrees_with_the_landing_page():
    data, entry = cff(), landing_page_bibtex()
    preferred = data["preferred-citation"]
    authors = [str(p).replace("{", "").replace("}", "") for p in entry.persons["author"]]
    assert entry.fields["title"] == data["title"] == preferred["title"]
    assert authors == [a["name"] for a in data["authors"]] == [a["name"] for a in preferred["authors"]]
    assert int(entry.fields["year"]) == preferred["year"]
    assert entry.fields["url"] == data["url"] == preferred["url"]
    assert entry.fields["note"] == f"Version {data['version']}" == preferred["notes"]
