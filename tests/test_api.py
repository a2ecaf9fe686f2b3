"""The API reference (book/api.md) is complete, and each entry links to the chapter that teaches it.

Two kinds of checks:

* on the sources (no build needed): every public function and class has a See Also section that
  names, as ``Chapter N, *Title*``, a chapter that exists under that exact title and whose page
  actually uses the name (in its code, inline code or a ``literalinclude`` of it);
* on the built site: every public name (tests/api_names.py) has an entry in the reference, and
  every ``Chapter N, *Title*`` of the reference is a link to that chapter
  (``_ext/attnbook_api.py`` makes the links).
"""

from __future__ import annotations

import inspect
import re
from functools import cache
from pathlib import Path

import pytest

from api_names import public_names, resolve

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
HTML = ROOT / "_build" / "html"
CHAPTER_REF = re.compile(r"Chapter (\d+), \*([^*]+)\*")

# Public names no chapter uses: helpers the package needs and a reader can look up, but no page
# teaches. Their See Also points to the public names they serve instead. If a chapter starts using
# one, test_untaught_names_are_really_untaught fails: name that chapter in its See Also.
UNTAUGHT = {
    # the autograd's machinery: the chapters use Tensor, no_grad and gradcheck, and NumPy's own
    # concatenate/stack/where on arrays
    "attnbook.tensor.is_grad_enabled": "the switch no_grad sets",
    "attnbook.tensor.requires_grad": "used inside backward functions",
    "attnbook.tensor.concatenate": "the chapters join arrays with np.concatenate",
    "attnbook.tensor.stack": "the chapters join arrays with np.stack",
    "attnbook.tensor.where": "the chapters mask arrays with np.where",
    "attnbook.softmax.log_softmax": "inside cross_entropy; no chapter calls it",
    "attnbook.ops.is_tensor": "dispatch helper of every function that takes ndarray or Tensor",
    "attnbook.ops.any_tensor": "dispatch helper of every function that takes ndarray or Tensor",
    "attnbook.ops.add_into": "the in-place add of the ndarray path of the attention functions",
    "attnbook.ops.exp": "dispatch primitive (the chapters call np.exp)",
    "attnbook.ops.log": "dispatch primitive (the chapters call np.log)",
    "attnbook.ops.tanh": "dispatch primitive (the chapters call np.tanh)",
    "attnbook.ops.sqrt": "dispatch primitive (the chapters call np.sqrt)",
    "attnbook.ops.concatenate": "dispatch primitive behind attnbook.concatenate",
    "attnbook.ops.stack": "dispatch primitive behind attnbook.stack",
    "attnbook.ops.softmax": "dispatch primitive behind attnbook.softmax",
    "attnbook.ops.log_softmax": "dispatch primitive behind attnbook.log_softmax",
    # what the layers and models are built from: chapters build models through configs and
    # book_recipes, not by hand
    "attnbook.init.uniform": "initialiser inside the layers",
    "attnbook.init.fan_in_uniform": "initialiser inside the layers",
    "attnbook.init.xavier_uniform": "initialiser inside the layers",
    "attnbook.init.normal": "initialiser inside the layers",
    "attnbook.init.zeros": "initialiser inside the layers",
    "attnbook.init.ones": "initialiser inside the layers",
    "attnbook.gru.gru_layer": "inside GRUCell (Chapter 1 shows its step, _step_forward)",
    "attnbook.gru.gru_cell": "inside Seq2Seq's decoder",
    "attnbook.gru.BiGRUEncoder": "inside Seq2Seq",
    "attnbook.seq2seq.Seq2SeqState": "passed between decoding steps by attnbook.decoding",
    "attnbook.transformer.TransformerState": "passed between decoding steps by attnbook.decoding",
    "attnbook.decoding.Decoded": "what greedy_decode and beam_search return",
    "attnbook.losses.accuracy": "used by book_recipes' training loops",
    # training, caching and timing: the chapters call book_recipes and cached, not these
    "attnbook.optim.SGD": "the chapters train with Adam and AdamW",
    "attnbook.optim.Schedule": "what the schedule functions return",
    "attnbook.optim.clip_grad_norm": "inside fit",
    "attnbook.optim.constant": "a schedule book_recipes may choose",
    "attnbook.optim.warmup_cosine": "a schedule book_recipes may choose",
    "attnbook.train.History": "what fit returns",
    "attnbook.cache.cache_key": "inside cached",
    "attnbook.cache.cache_dir": "inside cached",
    "attnbook.runtime.blas_threads": "inside timing",
    "attnbook.runtime.Timing": "what timing returns",
    # data: the chapters call the task builders, not the containers
    "attnbook.batching.Batch": "what make_batch returns",
    "attnbook.tasks.vocab.Vocab": "the tasks' vocabularies are instances",
    "attnbook.tasks.translation.TranslationData": "what make_dataset returns",
    "attnbook.tasks.sequences.SequenceData": "what sequence_task returns",
    "attnbook.tasks.sequences.symbol_vocab": "inside sequence_task",
    "attnbook.diagrams.tint": "a colour helper of the diagrams",
}
# Diagrams written for the chapters and not yet inserted in them (wave 2 inserts them): their
# See Also names the chapter they are for; the check that the page uses them applies as soon as
# it does. Remove a name from here once its chapter shows it.
NOT_YET_SHOWN = {f"attnbook.diagrams.{n}" for n in (
    "encoder_decoder", "bahdanau_step", "scaled_dot_product_attention", "multi_head_attention",
    "transformer_blocks", "flash_tiling")}


@cache
def chapters() -> dict[int, Path]:
    found = {int(p.name[:2]): p for p in sorted(BOOK.glob("[0-9][0-9]-*.md"))}
    assert len(found) >= 9, f"only {len(found)} chapters under {BOOK}"
    return found


def chapter_title(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    raise AssertionError(f"{path} has no title")


@cache
def code_of(path: Path) -> str:
    """What a page shows as code: fenced blocks and code cells, inline code, literalincludes."""
    text = path.read_text(encoding="utf-8")
    fenced = re.findall(r"^(`{3,}|~{3,})[^\n]*\n(.*?)^\1[ \t]*$", text, flags=re.M | re.S)
    inline = [f"inline {span}" for span in re.findall(r"`([^`\n]+)`", text)]
    # A literalinclude of src/<package>/<module>.py with :pyobject: name, written as
    # "literalinclude <package>.<module>.<name>".
    included = [f"literalinclude {'.'.join(Path(f).with_suffix('').parts[-2:])}.{name}"
                for f, name in re.findall(r"^`{3,}\{literalinclude\}\s*\S*?code/src/(\S+?\.py)\s*\n"
                                          r"(?::\w+:[^\n]*\n)*?:pyobject:\s*(\w+)", text, flags=re.M)]
    return "\n".join([body for _, body in fenced] + inline + included)


def functions_and_classes() -> list[str]:
    return [path for path in public_names()
            if inspect.isfunction(resolve(path)) or inspect.isclass(resolve(path))]


def see_also(path: str) -> str:
    doc = inspect.getdoc(resolve(path)) or ""
    head, found, rest = doc.partition("See Also\n--------\n")
    assert found, f"{path} has no See Also section"
    return re.split(r"\n\n[A-Z][a-z]+( [A-Za-z]+)*\n-+\n", rest)[0]


def mentions(path: str, code: str) -> bool:
    """Whether a page's code uses the public name ``path``: qualified by a module that exports it
    (``nn.Linear``, ``attnbook.tasks.make_dataset``), imported from one, or shown with a
    ``literalinclude`` of its source (``:pyobject: name``); ``import attnbook as ab`` makes
    ``ab.`` a qualifier. Prose names it with inline code of the name alone (below). A bare ``softmax(x)`` says nothing by itself: the
    name may be NumPy's, a local variable's or another module's."""
    name = path.rpartition(".")[2]
    exporters = public_names()[path]
    aliases = {a for m in exporters for a in re.findall(rf"\bimport\s+{re.escape(m)}\s+as\s+(\w+)", code)}
    qualifiers = sorted({q for m in exporters for q in (m, m.rpartition(".")[2])} | aliases,
                        key=len, reverse=True)
    qualified = rf"\b(?:{'|'.join(map(re.escape, qualifiers))})\.{re.escape(name)}\b"
    imported = (rf"\bfrom\s+(?:{'|'.join(map(re.escape, exporters))})\s+import\s+"
                rf"(?:\([^)]*|[^\n]*)\b{re.escape(name)}\b")
    included = rf"^literalinclude {re.escape(path)}$"
    patterns = [qualified, imported, included]
    # Prose that names it in inline code, `GRUCell` or `padding_mask(lengths, T)`, when no other
    # public name is spelt the same.
    if sum(p.rpartition(".")[2] == name for p in public_names()) == 1:
        patterns.append(rf"^inline {re.escape(name)}(\(.*\))?$")
    return any(re.search(pattern, code, flags=re.M) for pattern in patterns)


@pytest.mark.parametrize("path", functions_and_classes())
def test_see_also_names_a_chapter_that_uses_it(path):
    refs = CHAPTER_REF.findall(see_also(path))
    if path in UNTAUGHT:
        assert not refs, f"{path} names a chapter: remove it from UNTAUGHT"
        return
    assert refs, f"{path}: its See Also names no chapter (`Chapter N, *Title*`)"
    for number, title in refs:
        number = int(number)
        assert number in chapters(), f"{path} names Chapter {number}, which does not exist"
        page = chapters()[number]
        assert title == chapter_title(page), (
            f"{path} names Chapter {number} *{title}*; its title is *{chapter_title(page)}*")
        if path in NOT_YET_SHOWN and not mentions(path, code_of(page)):
            continue
        assert mentions(path, code_of(page)), (
            f"{path} names Chapter {number}, *{title}*, whose page never uses it; pages that do: "
            f"{[p.name for p in chapters().values() if mentions(path, code_of(p))]}")


@pytest.mark.parametrize("path", sorted(UNTAUGHT))
def test_untaught_names_are_really_untaught(path):
    assert path in public_names(), f"{path} is not a public name any more: remove it from UNTAUGHT"
    users = [p.name for p in chapters().values() if mentions(path, code_of(p))]
    assert not users, f"{path} is used in {users}: name the chapter in its See Also, not UNTAUGHT"


def test_the_mention_check_can_tell():
    # The check above is only as good as `mentions`: it sees a use and misses an absent one.
    assert mentions("attnbook.masks.padding_mask", "from attnbook.masks import causal_mask, padding_mask")
    assert mentions("attnbook.nn.Linear", "layer = nn.Linear(4, 8, rng=rng)")
    assert mentions("attnbook.init.ones", "from attnbook.init import (\n    normal, ones)\nw = ones((3,))")
    assert mentions("attnbook.scores.dot_score", "import attnbook as ab\nab.dot_score(q, k)")
    assert not mentions("attnbook.scores.dot_score", "import numpy as ab\nab.dot_score(q, k)")
    assert mentions("attnbook.softmax.softmax", "literalinclude attnbook.softmax.softmax")
    assert not mentions("attnbook.ops.softmax", "literalinclude attnbook._kernels.softmax")
    assert not mentions("attnbook.init.ones", "w = np.ones((3,))")
    assert not mentions("attnbook.ops.softmax", "from attnbook import softmax\nsoftmax(x)")
    assert mentions("attnbook.softmax.softmax", "from attnbook import softmax\nsoftmax(x)")
    assert not mentions("attnbook.masks.padding_mask", "the padding mask hides padding")
    assert mentions("attnbook.gru.GRUCell", "inline GRUCell")
    assert not mentions("attnbook.softmax.softmax", "inline softmax")  # also ops.softmax
    assert not mentions("attnbook.gru.GRUCell", "inline GRUCell.weights")


# ------------------------------------------------------------------------- the built reference

@pytest.fixture(scope="module")
def api_html() -> str:
    page = HTML / "book" / "api.html"
    if not page.exists():
        pytest.fail(f"No {page}: build the book first (python3 dev.py book)")
    return page.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def inventory() -> dict[str, str]:
    from sphinx.util.inventory import InventoryFile

    with open(HTML / "objects.inv", "rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    return {name: uri for domain, entries in inv.items() if domain.startswith("py:")
            for name, (_, _, uri, _) in entries.items()}


def test_every_public_name_has_an_entry_in_the_reference(api_html, inventory):
    names = public_names()
    assert len(names) > 130, f"only {len(names)} public names found: is api_names right?"
    missing = [p for p in names if f'id="{p}"' not in api_html]
    assert not missing, f"public names without an entry in book/api.md: {missing}"
    elsewhere = [p for p in names if not inventory.get(p, "").startswith("book/api.html")]
    assert not elsewhere, f"public names not documented in book/api.html: {elsewhere}"


def test_every_chapter_named_in_the_reference_is_a_link(api_html):
    unlinked = re.findall(r"Chapter \d+, <em>[^<]*</em>", api_html)
    assert not unlinked, f"chapters named but not linked in the reference: {unlinked[:5]}"
    links = re.findall(r'<a class="reference internal" href="(\d\d-[\w-]+)\.html">'
                       r'<span class="doc">Chapter (\d+), ([^<]+)</span></a>', api_html)
    assert len(links) > 80, f"only {len(links)} chapter links in the reference"
    for page, number, title in links:
        assert page.startswith(f"{int(number):02d}-"), f"Chapter {number} links to {page}"
        assert title.strip() == chapter_title(BOOK / f"{page}.md"), (page, title)
